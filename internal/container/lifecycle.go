package container

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/sandbox"
	"github.com/crid-project/crid/internal/steps"
)

// exitGrace bounds the wait for an exit after SIGKILL; a container that
// takes longer is stuck in the kernel (D state) or its monitor is gone.
const exitGrace = 30 * time.Second

// Start starts a created container.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, err := m.getAny(id)
	if err != nil {
		return err
	}
	if err := m.checkRecovered(c.ID); err != nil {
		return err
	}
	unlock := m.recs.Lock(c.ID)
	defer unlock()
	return m.startLocked(ctx, c.ID)
}

func (m *Manager) startLocked(ctx context.Context, id string) error {
	c, ok := m.recs.Get(id)
	if !ok || c.Removing {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if c.Steps.Has(stepStart) && !c.Steps.Done(stepStart) {
		// A start that failed or was cut by a crash: settle it first.
		if err := m.settleStart(ctx, c); err != nil {
			return err
		}
		c, _ = m.recs.Get(id)
	}
	if restoreCut(&c) {
		// The same for a restore.
		if err := m.settleRestore(ctx, c); err != nil {
			return err
		}
		c, _ = m.recs.Get(id)
	}
	if c.State != StateCreated {
		return fmt.Errorf("container %s is %s, not created: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	h, err := m.handler(c.Handler)
	if err != nil {
		return err
	}
	if p, sb := m.plugins(&c); p != nil {
		if err := p.StartContainer(ctx, sb, &c); err != nil {
			return fmt.Errorf("start container %s: NRI: %w", c.ID, err)
		}
	}
	start := time.Now()
	step := steps.Step[Container]{
		Name: stepStart,
		Make: func(ctx context.Context, c Container) error { return m.rt.Start(ctx, c.ID, h) },
		Made: started,
	}
	if restorePending(&c) {
		sb, ok := m.sandboxes.Lookup(c.SandboxID)
		if !ok {
			return fmt.Errorf("start container %s: pod %s: %w", c.ID, c.SandboxID, errdefs.ErrNotFound)
		}
		step = m.restoreStep(c, h, m.cgroups.Monitor(sb.CgroupParent, c.ID))
	}
	err = m.steps.Run(ctx, c.ID, step)
	// The process may have died at once, or between create and start:
	// record what the monitor saw instead of leaving a container that can
	// never run, or one reported running after its exit.
	m.recordExit(c.ID)
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	c, _ = m.recs.Get(c.ID)
	m.stage("start", time.Since(start))
	m.event(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, &c)
	m.tell(ctx, "PostStartContainer", &c, func(ctx context.Context, p Plugins, sb *sandbox.Sandbox, c *Container) error {
		return p.PostStartContainer(ctx, sb, c)
	})
	return nil
}

// started is the record of a start: an exit recorded meanwhile stays.
func started(c *Container) {
	if c.State == StateCreated {
		c.State = StateRunning
		c.StartedAt = time.Now()
	}
}

// settleStart finishes a start step that was begun but not confirmed,
// from what the runtime says: started (confirm it) or not (forget it, so
// the kubelet's retry can start the container).
func (m *Manager) settleStart(ctx context.Context, c Container) error {
	h, err := m.handler(c.Handler)
	if err != nil {
		return err
	}
	st, err := m.rt.State(ctx, c.ID, h)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err == nil && st.Status == "created" {
		_, err := m.steps.Undo(ctx, c.ID, c, steps.Undoers[Container]{stepStart: {Do: func(context.Context, Container) error { return nil }}})
		return err
	}
	// Running, or already gone: it was started.
	if _, err := m.steps.Confirm(c.ID, stepStart, started); err != nil {
		return err
	}
	m.recordExit(c.ID)
	return nil
}

// Stop sends the container its stop signal, then SIGKILL once timeout has
// passed. Stopping an unknown or exited container succeeds.
func (m *Manager) Stop(ctx context.Context, id string, timeout time.Duration) error {
	c, err := m.getAny(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.checkRecovered(c.ID); err != nil {
		return err
	}
	return m.stop(ctx, c, timeout)
}

func (m *Manager) stop(ctx context.Context, c Container, timeout time.Duration) error {
	if c.State != StateRunning && c.State != StateCreated {
		return nil
	}
	h, err := m.handler(c.Handler)
	if err != nil {
		return err
	}
	if timeout > 0 && c.State == StateRunning {
		sig := syscall.Signal(c.StopSignal)
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		if err := m.rt.Kill(ctx, c.ID, h, sig, false); err != nil && !errdefs.IsNotFound(err) {
			m.log.Warn("stop signal", "container", c.ID, "signal", sig, "error", err)
		}
		if exited, err := m.waitExit(ctx, c.ID, timeout); exited || err != nil {
			return err
		}
	}
	if err := m.rt.Kill(ctx, c.ID, h, syscall.SIGKILL, true); err != nil && !errdefs.IsNotFound(err) {
		m.log.Warn("kill", "container", c.ID, "error", err)
	}
	if cur, ok := m.recs.Get(c.ID); ok && cur.State == StateCreated {
		// A never-started container has no exit of its own to wait for.
		m.markExited(c.ID, 137, "Error", "killed before it started", time.Now())
	}
	exited, err := m.waitExit(ctx, c.ID, exitGrace)
	if err != nil {
		return err
	}
	if !exited {
		return fmt.Errorf("container %s did not exit %s after SIGKILL: %w", c.ID, exitGrace, errdefs.ErrUnavailable)
	}
	return nil
}

// waitExit waits until the container's record says it exited (or is
// gone), for at most limit. It checks the monitor as it waits: one that
// died cannot report the exit, and the check records it instead.
func (m *Manager) waitExit(ctx context.Context, id string, limit time.Duration) (bool, error) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := m.recs.Changed(id)
		c, ok := m.recs.Get(id)
		if !ok || c.State == StateExited {
			return true, nil
		}
		select {
		case <-changed:
		case <-tick.C:
			m.checkMonitor(ctx, id)
		case <-deadline.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// Remove stops the container if needed and removes it with everything crid
// made for it. Removing an unknown container succeeds; removing one whose
// removal a crash interrupted finishes it.
func (m *Manager) Remove(ctx context.Context, id string) error {
	c, err := m.recs.Find(id, func(c *Container) bool { return c.State != StateCreating && !c.Infra })
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.checkRecovered(c.ID); err != nil {
		return err
	}
	return m.removeAny(ctx, c.ID)
}

// removeAny is Remove for any container, infra ones included.
func (m *Manager) removeAny(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	c, ok := m.recs.Get(id)
	if !ok {
		return nil
	}
	if err := m.stop(ctx, c, 0); err != nil {
		return err
	}
	unlock := m.recs.Lock(id)
	defer unlock()
	if c, ok = m.recs.Get(id); !ok {
		return nil
	}
	if err := m.destroyAndTell(ctx, c); err != nil {
		return err
	}
	m.log.Info("container removed", "container", c.ID, "pod", c.SandboxID)
	return nil
}

// destroy undoes every step of the container's record and deletes it, for
// a caller holding its lock. The record is marked removing first, so a
// crash halfway is finished by the next start.
func (m *Manager) destroy(ctx context.Context, id string) error {
	c, err := m.recs.Update(id, func(c *Container) error {
		c.Removing = true
		return nil
	})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	m.tellRemoved(ctx, &c)
	c, err = m.steps.Undo(ctx, id, c, m.undoers())
	if err != nil {
		return err
	}
	if len(c.Steps) > 0 {
		return fmt.Errorf("container %s: steps %v have no undo in this crid: %w", id, c.Steps, errdefs.ErrFailedPrecondition)
	}
	m.processes.Delete(id)
	return m.recs.Delete(id)
}

// StopPod stops every container of a pod (the sandbox manager calls it), in
// parallel, each with the grace period the kubelet gave its pod (the
// io.kubernetes.pod.terminationGracePeriod annotation; none means kill).
func (m *Manager) StopPod(ctx context.Context, podID string) error {
	var g errgroup.Group
	for _, c := range m.recs.List(func(c *Container) bool { return c.SandboxID == podID && !c.Infra }) {
		grace := gracePeriod(c.ContainerConfig().GetAnnotations())
		g.Go(func() error { return m.stop(ctx, c, grace) })
	}
	return g.Wait()
}

func gracePeriod(annotations map[string]string) time.Duration {
	secs, err := strconv.ParseInt(annotations["io.kubernetes.pod.terminationGracePeriod"], 10, 64)
	if err != nil || secs < 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// RemovePod removes every container of a pod: also half-made and
// half-removed ones, which no create holds any more (a create holds the
// pod, and the caller holds it exclusively).
func (m *Manager) RemovePod(ctx context.Context, podID string) error {
	for _, c := range m.recs.List(func(c *Container) bool { return c.SandboxID == podID && !c.Infra }) {
		if err := m.removeAny(ctx, c.ID); err != nil {
			return err
		}
	}
	return nil
}
