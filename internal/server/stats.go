package server

import (
	"context"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/stats"
)

// statsService is what the CRI stats and metrics handlers need.
type statsService interface {
	ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error)
	ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error)
	PodSandboxStats(ctx context.Context, id string) (*runtimeapi.PodSandboxStats, error)
	ListPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error)
	ListPodSandboxMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error)
	ContainerFs() (mountpoint string, u stats.DirUsage, err error)
}

func (s *Server) statsOrErr() (statsService, error) {
	if s.stats == nil {
		return nil, errdefs.ErrNotImplemented
	}
	return s.stats, nil
}

func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container_id", "required")
	}
	st, err := s.statsOrErr()
	if err != nil {
		return nil, err
	}
	// Resolve a unique prefix the way every other container call does.
	c, err := s.containers.Get(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	cs, err := st.ContainerStats(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: cs}, nil
}

func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	st, err := s.statsOrErr()
	if err != nil {
		return nil, err
	}
	out, err := st.ListContainerStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	st, err := s.statsOrErr()
	if err != nil {
		return err
	}
	out, err := st.ListContainerStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendBatches(out, func(b []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: b})
	})
}

func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id", "required")
	}
	st, err := s.statsOrErr()
	if err != nil {
		return nil, err
	}
	sb, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	ps, err := st.PodSandboxStats(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: ps}, nil
}

func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	st, err := s.statsOrErr()
	if err != nil {
		return nil, err
	}
	out, err := st.ListPodSandboxStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}

func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	st, err := s.statsOrErr()
	if err != nil {
		return err
	}
	out, err := st.ListPodSandboxStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendBatches(out, func(b []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: b})
	})
}

func (s *Server) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	if _, err := s.statsOrErr(); err != nil {
		return nil, err
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: stats.MetricDescriptors()}, nil
}

func (s *Server) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	st, err := s.statsOrErr()
	if err != nil {
		return nil, err
	}
	out, err := st.ListPodSandboxMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

func (s *Server) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	st, err := s.statsOrErr()
	if err != nil {
		return err
	}
	out, err := st.ListPodSandboxMetrics(stream.Context())
	if err != nil {
		return err
	}
	return sendBatches(out, func(b []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: b})
	})
}
