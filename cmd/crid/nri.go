package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-project/crid/internal/config"
	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/nri"
	"github.com/crid-project/crid/internal/sandbox"
)

// startNRI serves NRI on the configured socket and hands the plugins to
// the pod and container managers. A socket another process serves (a
// second runtime on the node) is left to it: crid then runs without NRI.
func startNRI(cfg config.Config, pods *sandbox.Manager, containers *container.Manager, log *slog.Logger) (*nri.Service, error) {
	if conn, err := net.DialTimeout("unix", cfg.NRI.SocketPath, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("NRI socket %s is served by another process", cfg.NRI.SocketPath)
	}
	svc, err := nri.New(nri.Config{
		SocketPath:          cfg.NRI.SocketPath,
		PluginPath:          cfg.NRI.PluginPath,
		PluginConfigPath:    cfg.NRI.PluginConfigPath,
		RegistrationTimeout: time.Duration(cfg.NRI.PluginRegistrationTimeout),
		RequestTimeout:      time.Duration(cfg.NRI.PluginRequestTimeout),
		RuntimeVersion:      version,
	}, nriState{pods, containers}, log)
	if err != nil {
		return nil, err
	}
	// Set before plugins can connect: their sync reads the managers.
	pods.Plugins, containers.Plugins = svc, svc
	if err := svc.Start(); err != nil {
		pods.Plugins, containers.Plugins = nil, nil
		return nil, err
	}
	return svc, nil
}

// nriState is what NRI reads of crid's pods and containers, and where it
// applies the container updates plugins ask for.
type nriState struct {
	pods       *sandbox.Manager
	containers *container.Manager
}

func (s nriState) Pods() []sandbox.Sandbox                    { return s.pods.List() }
func (s nriState) Containers() []container.Container          { return s.containers.List() }
func (s nriState) Spec(id string) (*specs.Spec, error)        { return s.containers.Spec(id) }
func (s nriState) FitResources(r *specs.LinuxResources) error { return s.containers.FitResources(r) }
func (s nriState) InjectCDI(sp *specs.Spec, devices []string) error {
	return s.containers.InjectCDI(sp, devices)
}
func (s nriState) UpdateContainer(ctx context.Context, id string, r *specs.LinuxResources) error {
	return s.containers.UpdateOCIResources(ctx, id, r)
}
