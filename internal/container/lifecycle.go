package container

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Start starts a created container.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, err := m.getAny(id)
	if err != nil {
		return err
	}
	unlock := m.lock(c.ID)
	defer unlock()
	if c, err = m.getAny(c.ID); err != nil {
		return err
	}
	if c.State != StateCreated {
		return fmt.Errorf("container %s is %s, not created: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	h, err := m.handler(c.Handler)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := m.rt.Start(ctx, c.ID, h); err != nil {
		// The process may have died between create and start: record what
		// conmon saw instead of leaving a created container that can never run.
		m.recordExitLocked(c.ID)
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	c.State = StateRunning
	c.StartedAt = time.Now()
	if err := m.save(&c); err != nil {
		return err
	}
	m.stage("start", time.Since(start))
	m.event(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, &c)
	// An exit that raced with the state change above is recorded now.
	m.recordExitLocked(c.ID)
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
	if c.State != StateRunning && c.State != StateCreated {
		return nil
	}
	h, err := m.handler(c.Handler)
	if err != nil {
		return err
	}
	exited := m.exitChan(c.ID)
	if timeout > 0 && c.State == StateRunning {
		sig := syscall.Signal(c.StopSignal)
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		if err := m.rt.Kill(ctx, c.ID, h, sig, false); err != nil && !errdefs.IsNotFound(err) {
			m.log.Warn("stop signal", "container", c.ID, "signal", sig, "error", err)
		}
		select {
		case <-exited:
			return nil
		case <-time.After(timeout):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := m.rt.Kill(ctx, c.ID, h, syscall.SIGKILL, true); err != nil && !errdefs.IsNotFound(err) {
		m.log.Warn("kill", "container", c.ID, "error", err)
	}
	if c.State == StateCreated {
		// A never-started container has no conmon exit to wait for.
		unlock := m.lock(c.ID)
		defer unlock()
		return m.markExitedAt(c.ID, 137, "Error", "killed before it started", time.Now())
	}
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("container %s did not exit after SIGKILL: %w", c.ID, errdefs.ErrUnavailable)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Remove stops the container if needed and removes it with everything crid
// made for it. Removing an unknown container succeeds.
func (m *Manager) Remove(ctx context.Context, id string) error {
	c, err := m.Get(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return m.removeAny(ctx, c.ID)
}

// removeAny is Remove for any container, infra ones included.
func (m *Manager) removeAny(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	if err := m.Stop(ctx, id, 0); err != nil {
		return err
	}
	unlock := m.lock(id)
	defer unlock()
	c, err := m.getAny(id)
	if err != nil {
		return nil
	}
	if err := m.cleanup(ctx, &c); err != nil {
		return err
	}
	if err := m.delete(&c); err != nil {
		return err
	}
	m.event(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, &c)
	m.log.Info("container removed", "container", c.ID, "pod", c.SandboxID)
	return nil
}

// cleanup undoes what c's record says was made: runtime state, rootfs mount,
// bundle and writable layer. Idempotent.
func (m *Manager) cleanup(ctx context.Context, c *Container) error {
	// The rootfs is unmounted first: the runtime's Delete removes the
	// container's state dir, which holds the mount point.
	if c.RootfsMounted {
		if err := unmount(m.rootfsDir(c.ID)); err != nil {
			return err
		}
		c.RootfsMounted = false
	}
	if c.OCICreated {
		h, err := m.handler(c.Handler)
		if err != nil {
			return err
		}
		if err := m.rt.Delete(ctx, c.ID, h); err != nil {
			return fmt.Errorf("delete container %s from the runtime: %w", c.ID, err)
		}
		c.OCICreated = false
	}
	if err := os.RemoveAll(m.bundleDir(c.ID)); err != nil {
		return err
	}
	return os.RemoveAll(m.layerDir(c.ID))
}

// StopPod stops every container of a pod (the sandbox manager calls it), in
// parallel, each with the grace period the kubelet gave its pod (the
// io.kubernetes.pod.terminationGracePeriod annotation; none means kill).
func (m *Manager) StopPod(ctx context.Context, podID string) error {
	var g errgroup.Group
	for _, c := range m.List() {
		if c.SandboxID != podID || (c.State != StateRunning && c.State != StateCreated) {
			continue
		}
		grace := gracePeriod(c.ContainerConfig().GetAnnotations())
		g.Go(func() error { return m.Stop(ctx, c.ID, grace) })
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

// RemovePod removes every container of a pod.
func (m *Manager) RemovePod(ctx context.Context, podID string) error {
	for _, c := range m.List() {
		if c.SandboxID == podID {
			if err := m.Remove(ctx, c.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Manager) exitChan(id string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch, ok := m.exited[id]
	if !ok {
		ch = make(chan struct{})
		close(ch)
	}
	return ch
}

// WatchExits records exits as conmon reports them, until ctx ends.
func (m *Manager) WatchExits(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-m.rt.Exits():
			// One goroutine per exit: recording waits for the container's
			// lock, which a slow Remove of another container must not hold up.
			go m.recordExit(id)
		}
	}
}

// recordExit stores the exit conmon wrote for id, if it has.
func (m *Manager) recordExit(id string) {
	unlock := m.lock(id)
	defer unlock()
	m.recordExitLocked(id)
}

// recordExitLocked is recordExit for a caller holding the container's lock:
// state changes of one container are serialised by that lock.
func (m *Manager) recordExitLocked(id string) {
	exit, ok := m.rt.ExitStatus(id)
	if !ok {
		return
	}
	reason := "Completed"
	switch {
	case exit.OOMKilled:
		reason = "OOMKilled"
	case exit.Code != 0:
		reason = "Error"
	}
	m.markExitedAt(id, exit.Code, reason, "", exit.At)
}

func (m *Manager) markExitedAt(id string, code int32, reason, message string, at time.Time) error {
	m.mu.Lock()
	c, ok := m.containers[id]
	if !ok || c.State == StateExited || c.State == StateCreating {
		m.mu.Unlock()
		return nil
	}
	cp := *c
	m.mu.Unlock()
	cp.State = StateExited
	cp.ExitCode = code
	cp.Reason = reason
	cp.Message = message
	cp.FinishedAt = at
	if cp.StartedAt.IsZero() {
		cp.StartedAt = at
	}
	cp.Pid = 0
	if err := m.save(&cp); err != nil {
		m.log.Error("record container exit", "container", id, "error", err)
		return err
	}
	m.mu.Lock()
	if ch, ok := m.exited[id]; ok {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	m.mu.Unlock()
	m.event(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, &cp)
	m.log.Info("container exited", "container", id, "pod", cp.SandboxID, "code", code, "reason", reason)
	return nil
}
