package main

import (
	"context"
	"net"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/streaming"
)

// streamingServer is what the CRI server needs of the streaming server.
type streamingServer interface {
	GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}

// setupStreaming starts the server that carries exec, attach and
// port-forward sessions, and stops it when ctx ends.
func setupStreaming(ctx context.Context, d deps) (streamingServer, error) {
	c := d.cfg.Streaming
	srv, err := streaming.New(streaming.Config{
		Addr:        net.JoinHostPort(c.Address, strconv.Itoa(c.Port)),
		TLSCert:     c.TLSCert,
		TLSKey:      c.TLSKey,
		IdleTimeout: time.Duration(c.IdleTimeout),
		Log:         d.log,
	}, d.containers, d.pods)
	if err != nil {
		return nil, err
	}
	go func() {
		if err := srv.Serve(); err != nil {
			d.log.Error("streaming server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	d.log.Info("streaming server listening", "url", srv.URL())
	return srv, nil
}
