package server

import (
	"context"
	"math"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CheckpointContainer dumps a running container with CRIU into an archive
// at location, leaving it running. timeout (seconds), if set, bounds the
// call as the kubelet's checkpoint request asks.
func (s *Server) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container_id", "required")
	}
	if req.GetLocation() == "" {
		return nil, invalid("location", "required")
	}
	if req.GetTimeout() < 0 {
		return nil, invalid("timeout", "must not be negative")
	}
	// A timeout too long to count in nanoseconds is no bound at all.
	if t := req.GetTimeout(); t > 0 && t < int64(math.MaxInt64/time.Second) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	if err := s.containers.Checkpoint(ctx, req.GetContainerId(), req.GetLocation()); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointContainerResponse{}, nil
}
