// Package server serves the CRI v1 gRPC API. Its handlers are thin: they
// validate and translate requests and delegate to the packages that own the
// work (image, and later sandbox and container); errors are turned into gRPC
// status codes in one place, the interceptor.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/config"
)

// Server is crid's CRI endpoint.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg        config.Config
	images     imageService
	pods       sandboxService
	containers containerService
	streaming  streamingService
	stats      statsService
	events     eventSource
	metrics    rpcObserver
	nriErr     error
	log        *slog.Logger
	version    string

	grpcs []*grpc.Server

	// OnListening, if set, is called once every socket listens (crid
	// tells systemd it is ready).
	OnListening func()
}

// Services are the packages the handlers delegate to.
type Services struct {
	Images     imageService
	Pods       sandboxService
	Containers containerService
	Streaming  streamingService // nil: Exec, Attach and PortForward are Unimplemented
	Stats      statsService     // nil: the stats and metrics calls are Unimplemented
	Events     eventSource      // nil: GetContainerEvents is Unimplemented
	// NRIUnavailable says why NRI, enabled, is not served (Status
	// reports it); nil when it is served or disabled.
	NRIUnavailable error
	Metrics        rpcObserver // nil: calls are not measured
}

// New returns a server over the given services.
func New(cfg config.Config, svc Services, version string, log *slog.Logger) *Server {
	return &Server{
		cfg: cfg, images: svc.Images, pods: svc.Pods, containers: svc.Containers, streaming: svc.Streaming,
		stats: svc.Stats, events: svc.Events, metrics: svc.Metrics, nriErr: svc.NRIUnavailable, log: log, version: version,
	}
}

// maxMsgSize matches the kubelet's client limit.
const maxMsgSize = 16 << 20

func (s *Server) newGRPC() *grpc.Server {
	return grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		grpc.UnknownServiceHandler(unknownService),
	)
}

// unknownService answers calls to services crid does not serve, such as the
// retired runtime.v1alpha2 API, with a message that says what is served.
func unknownService(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	return status.Errorf(codes.Unimplemented,
		"crid serves the CRI v1 API (runtime.v1.RuntimeService, runtime.v1.ImageService); %s is not served", method)
}

// Serve listens on the configured endpoints and serves until ctx ends, then
// stops gracefully: in-flight calls get up to grace to finish.
func (s *Server) Serve(ctx context.Context, grace time.Duration) error {
	type endpoint struct {
		addr          string
		runtime, imgs bool
	}
	endpoints := []endpoint{{s.cfg.Listen, true, true}}
	if s.cfg.ImageListen != "" && s.cfg.ImageListen != s.cfg.Listen {
		endpoints = append(endpoints, endpoint{s.cfg.ImageListen, false, true})
	}
	errc := make(chan error, len(endpoints))
	for _, ep := range endpoints {
		lis, err := listenUnix(ep.addr)
		if err != nil {
			s.stop(0)
			return err
		}
		g := s.newGRPC()
		if ep.runtime {
			runtimeapi.RegisterRuntimeServiceServer(g, s)
		}
		if ep.imgs {
			runtimeapi.RegisterImageServiceServer(g, s)
		}
		s.grpcs = append(s.grpcs, g)
		s.log.Info("serving CRI", "address", lis.Addr().String(), "runtime", ep.runtime, "image", ep.imgs)
		go func() { errc <- g.Serve(lis) }()
	}
	if s.OnListening != nil {
		// Connections queue on the sockets from here on: callers may be
		// told that crid serves.
		s.OnListening()
	}
	select {
	case <-ctx.Done():
		s.stop(grace)
		return nil
	case err := <-errc:
		s.stop(0)
		return fmt.Errorf("serve: %w", err)
	}
}

func (s *Server) stop(grace time.Duration) {
	for _, g := range s.grpcs {
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			g.Stop()
		}
	}
}

// listenUnix creates the socket (and its parent dirs) with mode 0660,
// replacing a stale socket file left by a crashed crid.
func listenUnix(addr string) (net.Listener, error) {
	path := strings.TrimPrefix(addr, "unix://")
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("listen address %q: want unix:///absolute/path", addr)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return lis, nil
}
