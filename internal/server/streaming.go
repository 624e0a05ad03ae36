package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamingService hands out the single-use URLs of exec, attach and
// port-forward sessions (k8s.io/cri-streaming's Server has this shape).
type streamingService interface {
	GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}

func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if s.streaming == nil {
		return s.UnimplementedRuntimeServiceServer.Exec(ctx, req)
	}
	return s.streaming.GetExec(req)
}

func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if s.streaming == nil {
		return s.UnimplementedRuntimeServiceServer.Attach(ctx, req)
	}
	return s.streaming.GetAttach(req)
}

func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if s.streaming == nil {
		return s.UnimplementedRuntimeServiceServer.PortForward(ctx, req)
	}
	return s.streaming.GetPortForward(req)
}
