package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/container/spec"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
)

// running returns the container if it runs, or FailedPrecondition.
func (m *Manager) running(id string) (Container, oci.Handler, error) {
	c, err := m.Get(id)
	if err != nil {
		return c, oci.Handler{}, err
	}
	if c.State != StateRunning {
		return c, oci.Handler{}, fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	h, err := m.handler(c.Handler)
	return c, h, err
}

// ExecSync runs cmd in the container as its own process runs (user, env,
// working dir, capabilities, seccomp, no_new_privs) and returns its output.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (oci.ExecResult, error) {
	c, h, p, err := m.execProcess(id, cmd)
	if err != nil {
		return oci.ExecResult{}, err
	}
	return m.rt.ExecSync(ctx, c.ID, h, p, timeout)
}

// Exec runs cmd in the container like ExecSync, with the given streams,
// and returns its exit code.
func (m *Manager) Exec(ctx context.Context, id string, cmd []string, opts oci.ExecOptions) (int32, error) {
	c, h, p, err := m.execProcess(id, cmd)
	if err != nil {
		return 0, err
	}
	m.log.Debug("exec", "container", c.ID, "cmd", cmd[0], "tty", opts.Tty)
	return m.rt.Exec(ctx, c.ID, h, p, opts)
}

// CheckRunning returns the container if it exists and runs: NotFound or
// FailedPrecondition otherwise. Streaming calls check before they hand
// out a URL.
func (m *Manager) CheckRunning(id string) (Container, error) {
	c, _, err := m.running(id)
	return c, err
}

// Attach connects to the running container's own stdio. Its terminal
// setting comes from the container's config.
func (m *Manager) Attach(ctx context.Context, id string, opts oci.AttachOptions) error {
	c, _, err := m.running(id)
	if err != nil {
		return err
	}
	cfg := c.ContainerConfig()
	opts.Tty = cfg.GetTty()
	if !cfg.GetStdin() {
		// conmon has no stdin to write to; don't pretend.
		opts.Stdin = nil
	}
	if err := m.rt.Attach(ctx, c.ID, opts); err != nil {
		return fmt.Errorf("attach to container %s: %w", c.ID, err)
	}
	return nil
}

// execProcess is the container's process spec with cmd as its args.
func (m *Manager) execProcess(id string, cmd []string) (Container, oci.Handler, *specs.Process, error) {
	if len(cmd) == 0 {
		return Container{}, oci.Handler{}, nil, fmt.Errorf("cmd: required: %w", errdefs.ErrInvalidArgument)
	}
	c, h, err := m.running(id)
	if err != nil {
		return c, h, nil, err
	}
	proc, err := m.process(c.ID)
	if err != nil {
		return c, h, nil, err
	}
	p := *proc
	p.Args = cmd
	p.Terminal = false
	return c, h, &p, nil
}

// process is the container's OCI process spec, read from its bundle once
// and kept: exec probes run it every few seconds per container, and the
// spec (with its seccomp profile) is tens of kilobytes of JSON.
func (m *Manager) process(id string) (*specs.Process, error) {
	if p, ok := m.processes.Load(id); ok {
		return p.(*specs.Process), nil
	}
	s, err := m.readSpec(id)
	if err != nil {
		return nil, err
	}
	m.processes.Store(id, s.Process)
	return s.Process, nil
}

func (m *Manager) readSpec(id string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(m.bundleDir(id), "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read OCI spec of %s: %w", id, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode OCI spec of %s: %w", id, err)
	}
	if s.Process == nil {
		return nil, fmt.Errorf("OCI spec of %s has no process", id)
	}
	return &s, nil
}

// UpdateResources changes the container's cgroup limits, as the NRI
// plugins adjust them.
func (m *Manager) UpdateResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	if err := m.checkRecovered(c.ID); err != nil {
		return err
	}
	unlock := m.recs.Lock(c.ID)
	defer unlock()
	if c, err = m.Get(c.ID); err != nil {
		return err
	}
	res, err := spec.Resources(r, m.host.swapLimit, m.host.hugetlb)
	if err != nil {
		return err
	}
	p, sb := m.plugins(&c)
	if p != nil {
		if res, err = p.UpdateContainer(ctx, sb, &c, res); err != nil {
			return fmt.Errorf("update resources of %s: NRI: %w", c.ID, err)
		}
	}
	if err := m.applyResources(ctx, c, res); err != nil {
		return err
	}
	raw, _ := proto.Marshal(r)
	if c, err = m.recs.Update(c.ID, func(c *Container) error {
		c.Resources = raw
		return nil
	}); err != nil {
		return err
	}
	m.tell(ctx, "PostUpdateContainer", &c, func(ctx context.Context, p Plugins, sb *sandbox.Sandbox, c *Container) error {
		return p.PostUpdateContainer(ctx, sb, c)
	})
	return nil
}

// UpdateOCIResources changes the container's cgroup limits as an NRI
// plugin asks, without telling the plugins.
func (m *Manager) UpdateOCIResources(ctx context.Context, id string, res *specs.LinuxResources) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	unlock := m.recs.Lock(c.ID)
	defer unlock()
	if c, err = m.Get(c.ID); err != nil {
		return err
	}
	return m.applyResources(ctx, c, res)
}

// FitResources drops the limits this host's cgroups cannot take, as
// creation does.
func (m *Manager) FitResources(res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	if !m.host.swapLimit && res.Memory != nil {
		res.Memory.Swap = nil
	}
	spec.DropUnsupportedLimits(res, m.host.hugetlb)
	return nil
}

// applyResources writes res to a live container's cgroup.
func (m *Manager) applyResources(ctx context.Context, c Container, res *specs.LinuxResources) error {
	if c.State != StateRunning && c.State != StateCreated {
		return nil
	}
	h, err := m.handler(c.Handler)
	if err != nil {
		return err
	}
	if err := m.rt.UpdateResources(ctx, c.ID, h, res); err != nil {
		return fmt.Errorf("update resources of %s: %w", c.ID, err)
	}
	return nil
}

// ReopenLog asks the container's monitor to reopen its log file (after the
// kubelet rotated it).
func (m *Manager) ReopenLog(ctx context.Context, id string) error {
	c, _, err := m.running(id)
	if err != nil {
		return err
	}
	return m.rt.ReopenLog(ctx, c.ID)
}
