package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/sandbox"
)

// repairTimeout bounds the repair of one container: a runtime that hangs
// holds up that container only, and only this long.
const repairTimeout = time.Minute

// Recover is the start-up pass of the reconciler. crid serves while it
// runs: each container answers reads with its record as it was, and
// Unavailable to changes until it has been repaired. Running containers
// are adopted (their monitors kept them while crid was down), exits that
// happened meanwhile are recorded with their real code and time, and
// interrupted creates, starts and removes are finished.
func (m *Manager) Recover(ctx context.Context) {
	for _, c := range m.recs.List(nil) {
		m.Repair(ctx, c.ID, true)
		m.recs.Recovered(c.ID)
	}
	if err := m.sweep(ctx); err != nil {
		m.log.Error("sweep container dirs", "error", err)
	}
}

// Reconcile is the periodic pass: it repairs every container no request
// is working on and removes what no record owns.
func (m *Manager) Reconcile(ctx context.Context) {
	for _, c := range m.recs.List(nil) {
		m.Repair(ctx, c.ID, false)
	}
	if err := m.sweep(ctx); err != nil {
		m.log.Error("sweep container dirs", "error", err)
	}
}

// Repair brings one container back to a state the kubelet can act on. A
// container a request is working on is left to that request.
func (m *Manager) Repair(ctx context.Context, id string, adopt bool) {
	c, unlock, ok := m.recs.TryLockGet(id)
	if !ok {
		return
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, repairTimeout)
	defer cancel()
	var err error
	switch {
	case c.State == StateCreating:
		m.log.Info("rolling back interrupted create of container", "container", id, "pod", c.SandboxID)
		err = m.destroy(ctx, id)
	case c.Removing:
		m.log.Info("finishing interrupted remove of container", "container", id, "pod", c.SandboxID)
		err = m.destroyAndTell(ctx, c)
	case !m.podExists(c.SandboxID):
		m.log.Warn("removing container of a removed pod", "container", id, "pod", c.SandboxID)
		if err = m.stop(ctx, c, 0); err == nil {
			err = m.destroyAndTell(ctx, c)
		}
	case live(&c) && adopt:
		err = m.adopt(ctx, c)
	case live(&c):
		m.checkMonitor(ctx, id)
	}
	if err != nil {
		m.log.Error("repair container", "container", id, "pod", c.SandboxID, "error", err)
	}
}

// destroyAndTell destroys a container the kubelet has seen, and tells it.
func (m *Manager) destroyAndTell(ctx context.Context, c Container) error {
	if err := m.destroy(ctx, c.ID); err != nil {
		return err
	}
	m.event(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, &c)
	return nil
}

// adopt takes a live container over at start-up.
func (m *Manager) adopt(ctx context.Context, c Container) error {
	if c.Steps.Has(stepStart) && !c.Steps.Done(stepStart) {
		if err := m.settleStart(ctx, c); err != nil {
			return err
		}
	}
	if restoreCut(&c) {
		if err := m.settleRestore(ctx, c); err != nil {
			return err
		}
		c, _ = m.recs.Get(c.ID)
	}
	if restorePending(&c) {
		return nil
	}
	if m.recordExit(c.ID) {
		return nil
	}
	h, err := m.handler(c.Handler)
	if err != nil {
		return err
	}
	st, err := m.rt.State(ctx, c.ID, h)
	switch {
	case errdefs.IsNotFound(err) || err == nil && st.Status == "stopped" && !m.rt.MonitorAlive(c.ID):
		// Gone without an exit file: the node rebooted, or the monitor
		// died with the container.
		if !m.recordExit(c.ID) {
			m.markExited(c.ID, 255, "Error", "container was lost while crid was down", c.CreatedAt)
		}
		return nil
	case err != nil:
		return err
	}
	if err := m.rt.WatchMonitor(c.ID); err != nil && !errdefs.IsNotFound(err) {
		m.log.Warn("cannot watch the container's monitor", "container", c.ID, "error", err)
	}
	m.checkMonitor(ctx, c.ID)
	m.log.Info("adopted container", "container", c.ID, "pod", c.SandboxID, "state", st.Status, "pid", st.Pid)
	return nil
}

// InfraExited reports whether the pod's infra container is gone or exited.
func (m *Manager) InfraExited(sb *sandbox.Sandbox) bool {
	c, ok := m.recs.Get(sb.InfraID)
	return !ok || c.State == StateExited
}

// sweep removes container dirs that no record owns: what a crash left
// between making a directory and recording it, or after deleting the
// record. The dirs are listed before the records are read, and a
// container is recorded before its dirs are made, so a create in flight
// is never swept.
func (m *Manager) sweep(ctx context.Context) error {
	var errs []error
	// Runtime state no record owns (its cgroup with it) is deleted through
	// the runtime: a crash between deleting a record's steps and the
	// record cannot leave it, but an older crid or an operator can.
	roots := map[string]bool{}
	for _, h := range m.handlers().byName {
		if h.Root == "" || roots[h.Root] {
			continue
		}
		roots[h.Root] = true
		entries, err := os.ReadDir(h.Root)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if _, ok := m.recs.Get(e.Name()); ok || !e.IsDir() {
				continue
			}
			m.log.Info("deleting runtime state no container record owns", "container", e.Name(), "handler", h.Name)
			dctx, cancel := context.WithTimeout(ctx, repairTimeout)
			errs = append(errs, m.rt.Delete(dctx, e.Name(), h))
			cancel()
		}
	}
	for _, dir := range []string{filepath.Join(m.cfg.StateDir, "containers"), filepath.Join(m.cfg.RootDir, "containers")} {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if _, ok := m.recs.Get(e.Name()); ok {
				continue
			}
			path := filepath.Join(dir, e.Name())
			m.log.Info("removing unowned container dir", "path", path)
			if err := errors.Join(unmount(filepath.Join(path, "rootfs")), unmount(filepath.Join(path, "ns", "pid")), removeImageVolumes(path), removeIDMapped(path)); err != nil {
				// Never remove a dir with something still mounted in it.
				errs = append(errs, err)
				continue
			}
			errs = append(errs, os.RemoveAll(path))
		}
	}
	return errors.Join(errs...)
}

// podExists reports whether the pod has a record, in any state.
func (m *Manager) podExists(id string) bool {
	_, ok := m.sandboxes.Lookup(id)
	return ok
}
