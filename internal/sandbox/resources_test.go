package sandbox

import (
	"context"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
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

func TestPodResources(t *testing.T) {
	for _, tc := range []struct {
		name          string
		overhead, pod *runtimeapi.LinuxContainerResources
		want          cgroups.Resources
		invalid       bool
	}{{
		name:     "limits and shares add up",
		overhead: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20, CpuQuota: 10000, CpuShares: 10},
		pod:      &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512, CpusetCpus: "0"},
		want:     cgroups.Resources{Memory: 144 << 20, CpuQuota: 60000, CpuPeriod: 100000, CpuShares: 522, CpusetCpus: "0"},
	}, {
		name:     "no pod limit stays none",
		overhead: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20, CpuQuota: 10000},
		pod:      &runtimeapi.LinuxContainerResources{CpuShares: 2},
		want:     cgroups.Resources{CpuShares: 2},
	}, {
		name:     "hugepages add up per size",
		overhead: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 2 << 20}}},
		pod:      &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}},
		want:     cgroups.Resources{HugetlbLimit: []*cgroups.HugepageLimit{{Pagesize: "2MB", Limit: 6 << 20}}},
	}, {
		name:    "negative",
		pod:     &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5},
		invalid: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := podResources(tc.overhead, tc.pod)
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("%v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}
