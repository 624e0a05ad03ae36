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
	if len(cmd) == 0 {
		return oci.ExecResult{}, fmt.Errorf("cmd: required: %w", errdefs.ErrInvalidArgument)
	}
	c, h, err := m.running(id)
	if err != nil {
		return oci.ExecResult{}, err
	}
	s, err := m.readSpec(c.ID)
	if err != nil {
		return oci.ExecResult{}, err
	}
	p := *s.Process
	p.Args = cmd
	p.Terminal = false
	return m.rt.ExecSync(ctx, c.ID, h, &p, timeout)
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

// UpdateResources changes the container's cgroup limits.
func (m *Manager) UpdateResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	unlock := m.lock(c.ID)
	defer unlock()
	res, err := spec.Resources(r, m.host.swapLimit)
	if err != nil {
		return err
	}
	if c.State == StateRunning || c.State == StateCreated {
		h, err := m.handler(c.Handler)
		if err != nil {
			return err
		}
		if err := m.rt.UpdateResources(ctx, c.ID, h, res); err != nil {
			return fmt.Errorf("update resources of %s: %w", c.ID, err)
		}
	}
	if c, err = m.Get(c.ID); err != nil {
		return err
	}
	c.Resources, _ = proto.Marshal(r)
	return m.save(&c)
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
