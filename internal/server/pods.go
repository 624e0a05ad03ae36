package server

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/checkpoint"
	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
)

// sandboxService is what the CRI pod handlers need.
type sandboxService interface {
	Run(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error)
	Stop(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	Get(id string) (sandbox.Sandbox, error)
	List() []sandbox.Sandbox
	NetworkReady() (ok bool, reason, message string)
	SetPodCIDR(cidr string)
	Recovering() int
	UpdateResources(ctx context.Context, id string, overhead, resources *runtimeapi.LinuxContainerResources) error
}

// containerService is what the CRI container handlers need.
type containerService interface {
	Create(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (string, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Remove(ctx context.Context, id string) error
	Get(id string) (container.Container, error)
	List() []container.Container
	// PodStatuses are the statuses of the pod's containers.
	PodStatuses(podID string) []*runtimeapi.ContainerStatus
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (oci.ExecResult, error)
	UpdateResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error
	ReopenLog(ctx context.Context, id string) error
	Checkpoint(ctx context.Context, id, location string) error
	CheckpointPod(ctx context.Context, podID, out string, ids []string, options map[string]string) error
	CreateRestored(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig, archive string, want checkpoint.PodContainer) (string, error)
	// CheckpointOff says why containers cannot be checkpointed; nil: they can.
	CheckpointOff() error
	SupportsRRO(handler string) bool
	SupportsUserNS(handler string) bool
	Recovering() int
	RuntimeReady() (ok bool, reason, message string)
	HandlerNames() []string
	DefaultHandler() string
}

func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	if req.GetConfig() == nil {
		return nil, invalid("config", "required")
	}
	id, err := s.pods.Run(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id", "required")
	}
	return &runtimeapi.StopPodSandboxResponse{}, s.pods.Stop(ctx, req.GetPodSandboxId())
}

func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id", "required")
	}
	return &runtimeapi.RemovePodSandboxResponse{}, s.pods.Remove(ctx, req.GetPodSandboxId())
}

func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id", "required")
	}
	// Taken first: the statuses are at least as new as the timestamp the
	// kubelet's evented PLEG files them under.
	now := time.Now()
	sb, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{
		Status:             sb.CRIStatus(),
		ContainersStatuses: s.containers.PodStatuses(sb.ID),
		Timestamp:          now.UnixNano(),
	}
	if req.GetVerbose() {
		resp.Info = sb.Info()
	}
	return resp, nil
}

func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: s.listPods(req.GetFilter())}, nil
}

func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	return sendBatches(s.listPods(req.GetFilter()), func(b []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: b})
	})
}

func (s *Server) listPods(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	var out []*runtimeapi.PodSandbox
	for _, sb := range sandbox.Sorted(s.pods.List()) {
		if sb.Match(f) {
			out = append(out, sb.CRI())
		}
	}
	return out
}

// sendBatches streams items in messages far below the 16 MiB limit.
func sendBatches[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), streamBatch)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		s.pods.SetPodCIDR(cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
