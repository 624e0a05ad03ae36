package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// Recover reconciles the records with what is really there, at start-up,
// before crid serves: running containers are adopted (their conmon kept
// running while crid was down), exits that happened meanwhile are recorded
// with their real code and time, interrupted creates are rolled back, and
// directories no record owns are removed.
func (m *Manager) Recover(ctx context.Context) error {
	var errs []error
	for _, c := range m.allRecords() {
		switch c.State {
		case StateCreating:
			m.log.Info("rolling back interrupted container create", "container", c.ID, "pod", c.SandboxID)
			if err := m.cleanup(ctx, &c); err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, m.delete(&c))
		case StateCreated, StateRunning:
			m.recordExit(c.ID)
			if cur, err := m.getAny(c.ID); err != nil || cur.State == StateExited {
				continue
			}
			h, err := m.handler(c.Handler)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			st, err := m.rt.State(ctx, c.ID, h)
			switch {
			case errdefs.IsNotFound(err) || (err == nil && st.Status == "stopped"):
				// Gone without an exit file: the node rebooted or the
				// monitor died with it.
				unlock := m.lock(c.ID)
				errs = append(errs, m.markExitedAt(c.ID, 255, "Error", "container was lost while crid was down", c.CreatedAt))
				unlock()
			case err != nil:
				errs = append(errs, err)
			default:
				m.log.Info("adopted container", "container", c.ID, "pod", c.SandboxID, "state", st.Status, "pid", st.Pid)
			}
		}
	}
	errs = append(errs, m.sweep())
	return errors.Join(errs...)
}

func (m *Manager) allRecords() []Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Container, 0, len(m.containers))
	for _, c := range m.containers {
		out = append(out, *c)
	}
	return out
}

// sweep removes container dirs that no record owns: what a crash left between
// making a directory and recording it.
func (m *Manager) sweep() error {
	known := map[string]bool{}
	for _, c := range m.allRecords() {
		known[c.ID] = true
	}
	var errs []error
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
			if known[e.Name()] {
				continue
			}
			path := filepath.Join(dir, e.Name())
			m.log.Info("removing unowned container dir", "path", path)
			errs = append(errs, unmount(filepath.Join(path, "rootfs")), os.RemoveAll(path))
		}
	}
	return errors.Join(errs...)
}
