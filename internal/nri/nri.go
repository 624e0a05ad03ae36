// Package nri serves the Node Resource Interface: plugins connect to its
// socket (or are started from the plugin dir), are told of every pod and
// container lifecycle event, and may adjust a container as it is created
// and update the resources of running ones. The protocol, the plugin
// registry and the merging of several plugins' adjustments are the
// upstream library's (github.com/containerd/nri/pkg/adaptation); this
// package turns crid's records into NRI's objects, applies what plugins
// return to OCI specs and containers, and lists what exists for a plugin
// that connects.
package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/sandbox"
)

// Config configures the service.
type Config struct {
	SocketPath          string
	PluginPath          string
	PluginConfigPath    string
	RegistrationTimeout time.Duration
	RequestTimeout      time.Duration
	// RuntimeVersion is what plugins are told of crid.
	RuntimeVersion string
}

// State is what a connecting plugin is synchronised with, and where the
// updates plugins ask for are applied: the pod and container managers.
type State interface {
	Pods() []sandbox.Sandbox
	Containers() []container.Container
	// Spec is a container's OCI spec as it was created.
	Spec(id string) (*specs.Spec, error)
	// UpdateContainer applies new resources to a container (without
	// telling the plugins, who asked for them).
	UpdateContainer(ctx context.Context, id string, res *specs.LinuxResources) error
	// FitResources adjusts resources to the host as creation does (drops
	// the limits the host's cgroups cannot take).
	FitResources(res *specs.LinuxResources) error
	// InjectCDI applies CDI devices to a spec.
	InjectCDI(s *specs.Spec, devices []string) error
}

// Service is crid's side of NRI.
type Service struct {
	cfg     Config
	state   State
	log     *slog.Logger
	a       *adaptation.Adaptation
	plugins pluginCount
}

var libraryOnce sync.Once

// New makes the service; Start serves it.
func New(cfg Config, state State, log *slog.Logger) (*Service, error) {
	s := &Service{cfg: cfg, state: state, log: log}
	// The library keeps its logger and timeouts per process, unguarded:
	// they are set once, by the first service (crid makes one).
	libraryOnce.Do(func() {
		nrilog.Set(logger{log})
		adaptation.SetPluginRegistrationTimeout(cfg.RegistrationTimeout)
		adaptation.SetPluginRequestTimeout(cfg.RequestTimeout)
	})
	a, err := adaptation.New("crid", cfg.RuntimeVersion, s.sync, s.apply,
		adaptation.WithSocketPath(cfg.SocketPath),
		adaptation.WithPluginPath(cfg.PluginPath),
		adaptation.WithPluginConfigPath(cfg.PluginConfigPath),
		adaptation.WithMetrics(&s.plugins),
	)
	if err != nil {
		return nil, fmt.Errorf("NRI: %w", err)
	}
	s.a = a
	return s, nil
}

// Start starts the plugins in the plugin dir and serves the socket.
func (s *Service) Start() error {
	// The library counts the plugins it starts only at its first event:
	// until then, any file in the plugin dir may be one.
	if entries, _ := os.ReadDir(s.cfg.PluginPath); len(entries) > 0 {
		s.plugins.n.Store(-1)
	}
	if err := s.a.Start(); err != nil {
		return fmt.Errorf("NRI: %w", err)
	}
	return nil
}

// pluginCount is the number of plugins connected, as the library reports
// it (-1: unknown yet). Events are built and sent only when it is not 0:
// most nodes run no plugin, and describing a container reads its spec.
type pluginCount struct{ n atomic.Int64 }

func (c *pluginCount) none() bool                                        { return c.n.Load() == 0 }
func (c *pluginCount) UpdatePluginCount(count int)                       { c.n.Store(int64(count)) }
func (c *pluginCount) RecordPluginInvocation(string, string, error)      {}
func (c *pluginCount) RecordPluginLatency(string, string, time.Duration) {}
func (c *pluginCount) RecordPluginAdjustments(string, string, *api.ContainerAdjustment, int, int) {
}

// Stop closes every plugin connection and the socket.
func (s *Service) Stop() { s.a.Stop() }

// BlockSync holds back the synchronisation of connecting plugins until
// unblock is called: a pod or container committed meanwhile is either in
// the sync's lists or announced to the plugin after it, never neither.
func (s *Service) BlockSync() (unblock func()) { return s.a.BlockPluginSync().Unblock }

// sync lists every pod and container for a plugin that connects. It takes
// no lock of any record: a create holding one may be waiting for this
// sync to end (BlockSync).
func (s *Service) sync(ctx context.Context, cb adaptation.SyncCB) error {
	var pods []*adaptation.PodSandbox
	for _, sb := range s.state.Pods() {
		pods = append(pods, podOf(&sb))
	}
	var ctrs []*adaptation.Container
	for _, c := range s.state.Containers() {
		ctrs = append(ctrs, s.containerOf(&c, nil))
	}
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, updates)
	return err
}

// apply makes the updates plugins ask for (in a response, or on their
// own) and returns the ones that failed; a failure a plugin did not allow
// for (IgnoreFailure) is an error too.
func (s *Service) apply(ctx context.Context, updates []*adaptation.ContainerUpdate) ([]*adaptation.ContainerUpdate, error) {
	var failed []*adaptation.ContainerUpdate
	var errs []error
	for _, u := range updates {
		res := u.GetLinux().GetResources().ToOCI()
		if res == nil {
			continue
		}
		err := s.state.FitResources(res)
		if err == nil {
			err = s.state.UpdateContainer(ctx, u.GetContainerId(), res)
		}
		if err != nil {
			failed = append(failed, u)
			s.log.Warn("NRI plugin's container update failed", "container", u.GetContainerId(), "error", err)
			if !u.GetIgnoreFailure() {
				errs = append(errs, fmt.Errorf("update container %s as an NRI plugin asked: %w", u.GetContainerId(), err))
			}
		}
	}
	return failed, errors.Join(errs...)
}

// RunPodSandbox tells the plugins of a new pod; an error fails its
// creation.
func (s *Service) RunPodSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	if s.plugins.none() {
		return nil
	}
	return s.a.RunPodSandbox(ctx, &adaptation.RunPodSandboxRequest{Pod: podOf(sb)})
}

// StopPodSandbox tells them of a pod that is being stopped.
func (s *Service) StopPodSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	if s.plugins.none() {
		return nil
	}
	return s.a.StopPodSandbox(ctx, &adaptation.StopPodSandboxRequest{Pod: podOf(sb)})
}

// RemovePodSandbox tells them of a pod that is being removed.
func (s *Service) RemovePodSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	if s.plugins.none() {
		return nil
	}
	return s.a.RemovePodSandbox(ctx, &adaptation.RemovePodSandboxRequest{Pod: podOf(sb)})
}

// UpdatePodSandbox tells them of new pod-level resources before they are
// applied (an error refuses them); PostUpdatePodSandbox after.
func (s *Service) UpdatePodSandbox(ctx context.Context, sb *sandbox.Sandbox, overhead, resources *runtimeapi.LinuxContainerResources) error {
	if s.plugins.none() {
		return nil
	}
	_, err := s.a.UpdatePodSandbox(ctx, &adaptation.UpdatePodSandboxRequest{
		Pod:                    podOf(sb),
		OverheadLinuxResources: resourcesOf(overhead),
		LinuxResources:         resourcesOf(resources),
	})
	return err
}

func (s *Service) PostUpdatePodSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	if s.plugins.none() {
		return nil
	}
	return s.a.PostUpdatePodSandbox(ctx, &adaptation.PostUpdatePodSandboxRequest{Pod: podOf(sb)})
}

// CreateContainer asks the plugins about a container about to be created
// from spec, applies their adjustments to spec and the updates they ask
// for other containers. An error fails the creation.
func (s *Service) CreateContainer(ctx context.Context, sb *sandbox.Sandbox, c *container.Container, spec *specs.Spec) error {
	if s.plugins.none() {
		return nil
	}
	rpl, err := s.a.CreateContainer(ctx, &adaptation.CreateContainerRequest{Pod: podOf(sb), Container: s.containerOf(c, spec)})
	if err != nil {
		return err
	}
	if err := s.adjust(spec, rpl.GetAdjust()); err != nil {
		return fmt.Errorf("apply NRI plugins' adjustment: %w", err)
	}
	_, err = s.apply(ctx, rpl.GetUpdate())
	return err
}

// UpdateContainer asks the plugins about new resources for a container and
// returns them as the plugins adjusted them; updates they ask for other
// containers are applied.
func (s *Service) UpdateContainer(ctx context.Context, sb *sandbox.Sandbox, c *container.Container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	if s.plugins.none() {
		return res, nil
	}
	rpl, err := s.a.UpdateContainer(ctx, &adaptation.UpdateContainerRequest{
		Pod:            podOf(sb),
		Container:      s.containerOf(c, nil),
		LinuxResources: api.FromOCILinuxResources(res, nil),
	})
	if err != nil {
		return nil, err
	}
	var others []*adaptation.ContainerUpdate
	for _, u := range rpl.GetUpdate() {
		if u.GetContainerId() != c.ID {
			others = append(others, u)
			continue
		}
		// The library merges every plugin's change to the target into
		// one update of it.
		if r := u.GetLinux().GetResources().ToOCI(); r != nil {
			res = r
			if err := s.state.FitResources(res); err != nil {
				return nil, err
			}
		}
	}
	if _, err := s.apply(ctx, others); err != nil {
		return nil, err
	}
	return res, nil
}

// StopContainer tells the plugins of a container that stopped, and
// applies the updates they ask for other containers.
func (s *Service) StopContainer(ctx context.Context, sb *sandbox.Sandbox, c *container.Container) error {
	if s.plugins.none() {
		return nil
	}
	rpl, err := s.a.StopContainer(ctx, &adaptation.StopContainerRequest{Pod: podOf(sb), Container: s.containerOf(c, nil)})
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, rpl.GetUpdate())
	return err
}

// The events below only inform the plugins.

func (s *Service) PostCreateContainer(ctx context.Context, sb *sandbox.Sandbox, c *container.Container) error {
	if s.plugins.none() {
		return nil
	}
	return s.a.PostCreateContainer(ctx, &adaptation.PostCreateContainerRequest{Pod: podOf(sb), Container: s.containerOf(c, nil)})
}

func (s *Service) StartContainer(ctx context.Context, sb *sandbox.Sandbox, c *container.Container) error {
	if s.plugins.none() {
		return nil
	}
	return s.a.StartContainer(ctx, &adaptation.StartContainerRequest{Pod: podOf(sb), Container: s.containerOf(c, nil)})
}

func (s *Service) PostStartContainer(ctx context.Context, sb *sandbox.Sandbox, c *container.Container) error {
	if s.plugins.none() {
		return nil
	}
	return s.a.PostStartContainer(ctx, &adaptation.PostStartContainerRequest{Pod: podOf(sb), Container: s.containerOf(c, nil)})
}

func (s *Service) PostUpdateContainer(ctx context.Context, sb *sandbox.Sandbox, c *container.Container) error {
	if s.plugins.none() {
		return nil
	}
	return s.a.PostUpdateContainer(ctx, &adaptation.PostUpdateContainerRequest{Pod: podOf(sb), Container: s.containerOf(c, nil)})
}

func (s *Service) RemoveContainer(ctx context.Context, sb *sandbox.Sandbox, c *container.Container) error {
	if s.plugins.none() {
		return nil
	}
	return s.a.RemoveContainer(ctx, &adaptation.RemoveContainerRequest{Pod: podOf(sb), Container: s.containerOf(c, nil)})
}

// logger sends the library's log to crid's.
type logger struct{ l *slog.Logger }

func (g logger) Debugf(ctx context.Context, f string, a ...any) {
	g.l.DebugContext(ctx, fmt.Sprintf(f, a...))
}
func (g logger) Infof(ctx context.Context, f string, a ...any) {
	g.l.InfoContext(ctx, fmt.Sprintf(f, a...))
}
func (g logger) Warnf(ctx context.Context, f string, a ...any) {
	g.l.WarnContext(ctx, fmt.Sprintf(f, a...))
}
func (g logger) Errorf(ctx context.Context, f string, a ...any) {
	g.l.ErrorContext(ctx, fmt.Sprintf(f, a...))
}
