package server

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/config"
	"github.com/crid-project/crid/internal/sandbox"
)

// onePod serves a single pod; any other sandboxService method panics.
type onePod struct {
	sandboxService
	sb sandbox.Sandbox
}

func (p onePod) Get(id string) (sandbox.Sandbox, error) {
	if id != p.sb.ID {
		return sandbox.Sandbox{}, fmt.Errorf("pod sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	return p.sb, nil
}

// podContainers serves the container statuses of pods; any other
// containerService method panics.
type podContainers struct {
	containerService
	statuses map[string][]*runtimeapi.ContainerStatus
}

func (c podContainers) PodStatuses(podID string) []*runtimeapi.ContainerStatus {
	return c.statuses[podID]
}

// PodSandboxStatus carries the pod's container statuses and when they
// were taken, for the kubelet's evented PLEG.
func TestPodSandboxStatusHasContainers(t *testing.T) {
	cfg, _ := proto.Marshal(&runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}})
	sb := sandbox.Sandbox{ID: "pod1", Config: cfg, State: sandbox.StateReady, CreatedAt: time.Now()}
	ctrs := []*runtimeapi.ContainerStatus{{Id: "c2"}, {Id: "c1"}}
	s := New(config.Default(), Services{
		Pods:       onePod{sb: sb},
		Containers: podContainers{statuses: map[string][]*runtimeapi.ContainerStatus{"pod1": ctrs, "pod2": {{Id: "x"}}}},
	}, "test", slog.New(slog.DiscardHandler))

	before := time.Now().UnixNano()
	resp, err := s.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "pod1"})
	after := time.Now().UnixNano()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetId() != "pod1" || resp.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("status %v", resp.GetStatus())
	}
	if got := resp.GetContainersStatuses(); len(got) != 2 || got[0].GetId() != "c2" || got[1].GetId() != "c1" {
		t.Errorf("containers_statuses %v", got)
	}
	if ts := resp.GetTimestamp(); ts < before || ts > after {
		t.Errorf("timestamp %d not within the call (%d..%d)", ts, before, after)
	}
	if resp.GetInfo() != nil {
		t.Errorf("info without verbose: %v", resp.GetInfo())
	}
	if _, err := s.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "pod2"}); !errdefs.IsNotFound(err) {
		t.Errorf("unknown pod: %v", err)
	}
}
