package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unaryInterceptor logs every call and maps errors to gRPC codes. It is the
// only place that does either, so handlers just return wrapped errors.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer s.finish(ctx, info.FullMethod, req, time.Now(), &err)
	return handler(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer s.finish(ss.Context(), info.FullMethod, nil, time.Now(), &err)
	return handler(srv, ss)
}

// finish runs deferred after a handler: it turns a panic into Internal (bad
// input must never take the node's runtime down), maps the error and logs.
func (s *Server) finish(ctx context.Context, method string, req any, start time.Time, errp *error) {
	if r := recover(); r != nil {
		s.log.Error("panic in handler", "method", method, "panic", r, "stack", string(debug.Stack()))
		*errp = status.Errorf(codes.Internal, "internal error in %s: %v", method, r)
	}
	*errp = toStatus(ctx, *errp)
	if s.metrics != nil {
		s.metrics.ObserveRPC(method, status.Code(*errp), time.Since(start))
	}
	s.logCall(ctx, method, req, start, *errp)
}

// rpcObserver records per-call metrics: latency and result code per
// method, and the bytes and time of image pulls.
type rpcObserver interface {
	ObserveRPC(method string, code codes.Code, d time.Duration)
	ObservePull(bytes int64, d time.Duration)
}

// toStatus converts err to a gRPC status. A call whose deadline passed
// reports DeadlineExceeded whatever the handler's error said.
func toStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if ctx.Err() == context.DeadlineExceeded {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codeOf(err), err.Error())
}

// codeOf maps crid's error kinds (containerd's errdefs sentinels, wrapped
// with %w anywhere in the chain) to gRPC codes. errgrpc.ToGRPC does this
// too, but also serialises error chains as details, which crid does not
// need and which panics on some joined errors.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errdefs.IsInvalidArgument(err):
		return codes.InvalidArgument
	case errdefs.IsNotFound(err):
		return codes.NotFound
	case errdefs.IsAlreadyExists(err):
		return codes.AlreadyExists
	case errdefs.IsFailedPrecondition(err), errdefs.IsConflict(err):
		return codes.FailedPrecondition
	case errdefs.IsUnavailable(err):
		return codes.Unavailable
	case errdefs.IsUnauthorized(err):
		return codes.Unauthenticated
	case errdefs.IsPermissionDenied(err):
		return codes.PermissionDenied
	case errdefs.IsResourceExhausted(err):
		return codes.ResourceExhausted
	case errdefs.IsNotImplemented(err):
		return codes.Unimplemented
	}
	return codes.Unknown
}

// readOnly methods are logged at debug level: the kubelet polls them.
func readOnly(method string) bool {
	m := method[strings.LastIndexByte(method, '/')+1:]
	for _, p := range []string{"List", "Stream", "Version", "Status", "ImageStatus", "ImageFsInfo", "RuntimeConfig", "ContainerStats", "PodSandboxStats", "PodSandboxStatus", "ContainerStatus"} {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return false
}

func (s *Server) logCall(ctx context.Context, method string, req any, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelInfo
	switch {
	case err != nil && (code == codes.Internal || code == codes.Unknown || code == codes.DataLoss):
		level = slog.LevelError
	case err != nil:
		level = slog.LevelWarn
	case readOnly(method):
		level = slog.LevelDebug
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.Duration("duration", time.Since(start)),
		slog.String("code", code.String()),
	}
	attrs = append(attrs, idAttrs(req)...)
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	s.log.LogAttrs(ctx, level, "CRI call", attrs...)
}

// idAttrs pulls the pod, container or image a request is about.
func idAttrs(req any) []slog.Attr {
	var out []slog.Attr
	if r, ok := req.(interface{ GetPodSandboxId() string }); ok && r.GetPodSandboxId() != "" {
		out = append(out, slog.String("pod", r.GetPodSandboxId()))
	}
	if r, ok := req.(interface{ GetContainerId() string }); ok && r.GetContainerId() != "" {
		out = append(out, slog.String("container", r.GetContainerId()))
	}
	if r, ok := req.(interface{ GetImage() imageSpec }); ok && r.GetImage() != nil {
		out = append(out, slog.String("image", r.GetImage().GetImage()))
	}
	return out
}

// invalid reports a missing or malformed request field by name.
func invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}
