package container

import (
	"context"
	"fmt"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-project/crid/internal/sandbox"
)

// Plugins are told of the lifecycle of the kubelet's containers, and may
// adjust a container as it is created and its resources as they are
// updated (NRI, internal/nri). Infra containers are never theirs.
type Plugins interface {
	// BlockSync holds back the synchronisation of a connecting plugin
	// until unblock: a create announced to the plugins is committed
	// before a new plugin lists what exists.
	BlockSync() (unblock func())
	// CreateContainer adjusts the spec as the plugins ask; an error
	// fails the create.
	CreateContainer(ctx context.Context, sb *sandbox.Sandbox, c *Container, s *specs.Spec) error
	PostCreateContainer(ctx context.Context, sb *sandbox.Sandbox, c *Container) error
	// StartContainer comes before the start; an error fails it.
	StartContainer(ctx context.Context, sb *sandbox.Sandbox, c *Container) error
	PostStartContainer(ctx context.Context, sb *sandbox.Sandbox, c *Container) error
	// UpdateContainer returns the resources as the plugins adjusted them;
	// an error refuses the update.
	UpdateContainer(ctx context.Context, sb *sandbox.Sandbox, c *Container, res *specs.LinuxResources) (*specs.LinuxResources, error)
	PostUpdateContainer(ctx context.Context, sb *sandbox.Sandbox, c *Container) error
	StopContainer(ctx context.Context, sb *sandbox.Sandbox, c *Container) error
	RemoveContainer(ctx context.Context, sb *sandbox.Sandbox, c *Container) error
}

// plugins returns the plugins to tell of c and its pod, if any are and c
// is the kubelet's.
func (m *Manager) plugins(c *Container) (Plugins, *sandbox.Sandbox) {
	if m.Plugins == nil || c.Infra {
		return nil, nil
	}
	sb, ok := m.sandboxes.Lookup(c.SandboxID)
	if !ok {
		// A pod record is removed after its containers: only a
		// container left over from a crash has none.
		sb = sandbox.Sandbox{ID: c.SandboxID}
	}
	return m.Plugins, &sb
}

// tell sends an event that only informs the plugins: a plugin's error
// cannot undo what happened, so it is logged.
func (m *Manager) tell(ctx context.Context, event string, c *Container, send func(context.Context, Plugins, *sandbox.Sandbox, *Container) error) {
	p, sb := m.plugins(c)
	if p == nil {
		return
	}
	if err := send(ctx, p, sb, c); err != nil {
		m.log.Warn("NRI plugin failed on "+event, "container", c.ID, "pod", c.SandboxID, "error", err)
	}
}

// tellStopped sends StopContainer unless it was sent (the removal waits
// for one under way); at the exit of a container whose record is gone
// (removed meanwhile) it sends nothing.
func (m *Manager) tellStopped(ctx context.Context, c *Container, removing bool) {
	if m.Plugins == nil || c.Infra {
		return
	}
	var v any
	if removing {
		v, _ = m.stopOnce.LoadOrStore(c.ID, new(sync.Once))
	} else if v, _ = m.stopOnce.Load(c.ID); v == nil {
		return
	}
	v.(*sync.Once).Do(func() {
		m.tell(ctx, "StopContainer", c, func(ctx context.Context, p Plugins, sb *sandbox.Sandbox, c *Container) error {
			return p.StopContainer(ctx, sb, c)
		})
	})
}

// tellRemoved tells the plugins of a container being removed (its stop
// first, if they have not heard of it).
func (m *Manager) tellRemoved(ctx context.Context, c *Container) {
	if !c.Steps.Has(stepRuntime) {
		// Never announced to the plugins: its spec was not made.
		m.stopOnce.Delete(c.ID)
		return
	}
	m.tellStopped(ctx, c, true)
	m.tell(ctx, "RemoveContainer", c, func(ctx context.Context, p Plugins, sb *sandbox.Sandbox, c *Container) error {
		return p.RemoveContainer(ctx, sb, c)
	})
	m.stopOnce.Delete(c.ID)
}

// Spec is the container's OCI spec as it was created (NRI describes
// containers by it).
func (m *Manager) Spec(id string) (*specs.Spec, error) { return m.readSpec(id) }

// InjectCDI applies CDI devices an NRI plugin asks for.
func (m *Manager) InjectCDI(s *specs.Spec, devices []string) error {
	if _, err := m.cdi.InjectDevices(s, devices...); err != nil {
		return fmt.Errorf("CDI devices %v: %w", devices, err)
	}
	return nil
}
