package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
)

// Containers is what the streaming server needs of the container manager.
type Containers interface {
	CheckRunning(id string) (container.Container, error)
	Exec(ctx context.Context, id string, cmd []string, opts oci.ExecOptions) (int32, error)
	Attach(ctx context.Context, id string, opts oci.AttachOptions) error
}

// Pods is what the streaming server needs of the sandbox manager.
type Pods interface {
	Get(id string) (sandbox.Sandbox, error)
}

// Config configures a Server.
type Config struct {
	// Addr is host:port to listen on; port 0 picks a free one.
	Addr string
	// TLSCert and TLSKey, both set, serve HTTPS.
	TLSCert, TLSKey string
	// IdleTimeout ends a session without traffic for this long; 0 never.
	IdleTimeout time.Duration
	Log         *slog.Logger
}

// Server is the streaming server. Its Get* methods have the shape of
// k8s.io/cri-streaming's Server, with the checks that must fail the CRI
// call itself (not the later stream) in front.
type Server struct {
	containers Containers
	pods       Pods
	lib        streaming.Server
	ln         net.Listener
	http       *http.Server
	baseURL    *url.URL
	log        *slog.Logger
}

// New listens on cfg.Addr and returns a server ready to Serve.
func New(cfg Config, containers Containers, pods Pods) (_ *Server, retErr error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("streaming TLS key pair: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	// We listen ourselves, before any URL is handed out: the library's
	// Start would learn a random port only once it serves.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	defer func() {
		if retErr != nil {
			ln.Close()
		}
	}()
	base := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	if tlsConfig != nil {
		base.Scheme = "https"
	}
	lc := streaming.DefaultConfig
	lc.Addr = ln.Addr().String()
	lc.BaseURL = base
	lc.StreamIdleTimeout = cfg.IdleTimeout
	lc.TLSConfig = tlsConfig
	s := &Server{containers: containers, pods: pods, ln: ln, baseURL: base, log: log}
	s.lib, err = streaming.NewServer(lc, &sessions{containers: containers, pods: pods, log: log})
	if err != nil {
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	s.http = &http.Server{
		Handler:           s.lib,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// URL is the base of the URLs the server hands out.
func (s *Server) URL() string { return s.baseURL.String() }

// Serve serves until Close.
func (s *Server) Serve() error {
	var err error
	if s.http.TLSConfig != nil {
		err = s.http.ServeTLS(s.ln, "", "")
	} else {
		err = s.http.Serve(s.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server and ends open sessions (their processes are
// killed as when the client leaves).
func (s *Server) Close() error {
	return s.http.Close()
}

// GetExec implements the CRI Exec call.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if err := checkStdio(req.GetContainerId(), req.GetTty(), req.GetStdin(), req.GetStdout(), req.GetStderr()); err != nil {
		return nil, err
	}
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("cmd: required: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := s.containers.CheckRunning(req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.lib.GetExec(req)
}

// GetAttach implements the CRI Attach call.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if err := checkStdio(req.GetContainerId(), req.GetTty(), req.GetStdin(), req.GetStdout(), req.GetStderr()); err != nil {
		return nil, err
	}
	if _, err := s.containers.CheckRunning(req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.lib.GetAttach(req)
}

// GetPortForward implements the CRI PortForward call.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("pod_sandbox_id: required: %w", errdefs.ErrInvalidArgument)
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("port %d: not a TCP port: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	sb, err := s.pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb.State != sandbox.StateReady {
		return nil, fmt.Errorf("pod sandbox %s is %s, not ready: %w", sb.ID, sb.State, errdefs.ErrFailedPrecondition)
	}
	return s.lib.GetPortForward(req)
}

// checkStdio applies the CRI's rules for exec and attach streams.
func checkStdio(id string, tty, stdin, stdout, stderr bool) error {
	switch {
	case id == "":
		return fmt.Errorf("container_id: required: %w", errdefs.ErrInvalidArgument)
	case tty && stderr:
		// A terminal merges stderr into stdout.
		return fmt.Errorf("tty and stderr cannot both be set: a terminal has no separate stderr: %w", errdefs.ErrInvalidArgument)
	case !stdin && !stdout && !stderr:
		return fmt.Errorf("one of stdin, stdout and stderr must be set: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}
