package sandbox

import (
	"context"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An in-place resize lands in the pod's recorded config, survives a
// restart, and is refused for a pod that is not ready.
func TestUpdateResources(t *testing.T) {
	m, _, _ := newTestManager(t)
	ctx := context.Background()
	id, err := m.Run(ctx, podConfig("resize"), "")
	if err != nil {
		t.Fatal(err)
	}
	res := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20, CpuShares: 1024}
	if err := m.UpdateResources(ctx, id, nil, res); err != nil {
		t.Fatal(err)
	}
	over := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 8 << 20}
	if err := m.UpdateResources(ctx, id, over, nil); err != nil {
		t.Fatal(err)
	}
	m = restart(t, m)
	m.Recover(ctx)
	sb, err := m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	l := sb.PodConfig().GetLinux()
	if l.GetResources().GetMemoryLimitInBytes() != 256<<20 || l.GetResources().GetCpuShares() != 1024 || l.GetOverhead().GetMemoryLimitInBytes() != 8<<20 {
		t.Fatalf("recorded: resources %v, overhead %v", l.GetResources(), l.GetOverhead())
	}
	if l.GetSecurityContext().GetNamespaceOptions().GetPid() != runtimeapi.NamespaceMode_CONTAINER {
		t.Fatal("the rest of the config was lost")
	}
	if err := m.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateResources(ctx, id, nil, res); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("stopped pod: %v, want FailedPrecondition", err)
	}
	if err := m.UpdateResources(ctx, "nope", nil, res); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown pod: %v, want NotFound", err)
	}
}
