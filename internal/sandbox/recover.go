package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Recover reconciles the records with the machine at start-up, before crid
// serves: interrupted creates are rolled back (CNI DEL from the cache,
// namespaces unpinned, dirs removed), ready pods whose namespaces are gone
// (the node rebooted) are torn down and marked not ready, and sandbox dirs
// no record owns are removed.
func (m *Manager) Recover(ctx context.Context) error {
	var errs []error
	for _, sb := range m.allRecords() {
		switch {
		case sb.State == StateCreating:
			m.log.Info("rolling back interrupted pod sandbox create", "pod", sb.ID)
			if err := m.teardown(ctx, &sb); err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, os.RemoveAll(sb.Dir), m.delete(&sb))
		case sb.State == StateReady && !sb.namespacesAlive():
			m.log.Warn("pod namespaces are gone: marking the pod not ready", "pod", sb.ID)
			if err := m.teardown(ctx, &sb); err != nil {
				errs = append(errs, err)
				continue
			}
			sb.State = StateNotReady
			errs = append(errs, m.save(&sb))
		}
	}
	errs = append(errs, m.sweep())
	return errors.Join(errs...)
}

func (m *Manager) allRecords() []Sandbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Sandbox, 0, len(m.sandboxes))
	for _, sb := range m.sandboxes {
		out = append(out, *sb)
	}
	return out
}

// namespacesAlive reports whether every pinned namespace is still mounted.
func (s *Sandbox) namespacesAlive() bool {
	for _, path := range s.Namespaces {
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil || st.Type != unix.NSFS_MAGIC {
			return false
		}
	}
	return true
}

func (m *Manager) sweep() error {
	known := map[string]bool{}
	for _, sb := range m.allRecords() {
		known[sb.ID] = true
	}
	dir := filepath.Join(m.cfg.StateDir, "sandboxes")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if known[e.Name()] {
			continue
		}
		path := filepath.Join(dir, e.Name())
		m.log.Info("removing unowned pod sandbox dir", "path", path)
		// Namespace pins and the shm tmpfs may still be mounted there.
		for _, sub := range []string{"ns/net", "ns/ipc", "ns/uts", "shm"} {
			_ = unix.Unmount(filepath.Join(path, sub), unix.MNT_DETACH)
		}
		errs = append(errs, os.RemoveAll(path))
	}
	return errors.Join(errs...)
}
