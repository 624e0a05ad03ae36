package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/namespaces"
)

// repairTimeout bounds the repair of one pod: a CNI plugin or runtime
// that hangs holds up that pod only, and only this long.
const repairTimeout = 2 * time.Minute

// Recover is the start-up pass of the reconciler. crid serves while it
// runs: each pod answers reads with its record as it was, and Unavailable
// to changes until it has been repaired.
func (m *Manager) Recover(ctx context.Context) {
	for _, sb := range m.recs.List(nil) {
		m.Repair(ctx, sb.ID)
		m.recs.Recovered(sb.ID)
	}
	if err := m.sweep(); err != nil {
		m.log.Error("sweep pod sandbox dirs", "error", err)
	}
}

// Reconcile is the periodic pass: it repairs every pod no request is
// working on and removes what no record owns.
func (m *Manager) Reconcile(ctx context.Context) {
	for _, sb := range m.recs.List(nil) {
		m.Repair(ctx, sb.ID)
	}
	if err := m.sweep(); err != nil {
		m.log.Error("sweep pod sandbox dirs", "error", err)
	}
}

// Repair brings one pod back to a state the kubelet can act on: an
// interrupted create or remove is finished (the pod is removed), and a
// ready pod whose namespaces or infra process are gone is stopped, so the
// kubelet sees it not ready and makes a new one. A pod that a request is
// working on is left to that request.
func (m *Manager) Repair(ctx context.Context, id string) {
	sb, unlock, ok := m.recs.TryLockGet(id)
	if !ok {
		return
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, repairTimeout)
	defer cancel()
	var err error
	switch {
	case sb.State == StateCreating:
		m.log.Info("rolling back interrupted create of pod sandbox", "pod", id)
		err = m.destroy(ctx, id)
	case sb.Removing:
		m.log.Info("finishing interrupted remove of pod sandbox", "pod", id)
		if err = m.destroy(ctx, id); err == nil {
			m.event(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, id)
		}
	case sb.State != StateReady:
		// Stopped: finish a stop a crash interrupted.
		if sb.Steps.Has(stepInfra) || sb.Steps.Has(stepNetwork) || sb.Steps.Has(stepShm) || sb.Steps.Has(stepNamespaces) {
			err = m.stopLocked(ctx, id, sb.Reason)
		}
	case !namespaces.Alive(nsPaths(sb)...):
		m.log.Warn("pod namespaces are gone: stopping the pod", "pod", id)
		err = m.stopLocked(ctx, id, "namespaces lost (node rebooted?)")
	case sb.InfraID != "" && m.Infra != nil && m.Infra.InfraExited(&sb):
		m.log.Warn("pod infra process died: stopping the pod", "pod", id, "infra", sb.InfraID)
		err = m.stopLocked(ctx, id, "infra process died")
	}
	if err != nil {
		m.log.Error("repair pod sandbox", "pod", id, "error", err)
	}
}

func nsPaths(sb Sandbox) []string {
	out := make([]string, 0, len(sb.Namespaces))
	for _, p := range sb.Namespaces {
		out = append(out, p)
	}
	return out
}

func (m *Manager) sweep() error {
	dir := filepath.Join(m.cfg.StateDir, "sandboxes")
	// Listed before the records are read: a pod is recorded before its dir
	// is made, so a dir listed here is never a create's in flight.
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if _, ok := m.recs.Get(e.Name()); ok {
			continue
		}
		path := filepath.Join(dir, e.Name())
		m.log.Info("removing unowned pod sandbox dir", "path", path)
		// Namespace pins and the shm tmpfs may still be mounted there.
		errs = append(errs, namespaces.Remove(filepath.Join(path, "ns")))
		_ = unix.Unmount(filepath.Join(path, "shm"), unix.MNT_DETACH)
		errs = append(errs, os.RemoveAll(path))
	}
	return errors.Join(errs...)
}
