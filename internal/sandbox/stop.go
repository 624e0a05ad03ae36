package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Stop stops the pod's containers and tears down its network and namespaces.
// Stopping an unknown or stopped sandbox succeeds: the kubelet retries.
func (m *Manager) Stop(ctx context.Context, id string) error {
	sb, err := m.Get(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.checkRecovered(sb.ID); err != nil {
		return err
	}
	unlock := m.recs.Lock(sb.ID)
	defer unlock()
	return m.stopLocked(ctx, sb.ID, "")
}

// stopLocked stops the pod with id for a caller holding its lock; reason,
// if set, says why crid stopped it on its own.
func (m *Manager) stopLocked(ctx context.Context, id, reason string) error {
	// The record is read again under the lock: a Remove that went first
	// has deleted it, and nothing may bring it back.
	sb, ok := m.recs.Get(id)
	if !ok || sb.Removing {
		return nil
	}
	if m.Containers != nil {
		if err := m.Containers.StopPod(ctx, sb.ID); err != nil {
			return fmt.Errorf("stop containers of pod %s: %w", sb.ID, err)
		}
	}
	if sb.State == StateReady && m.Plugins != nil && sb.Steps.Done(stepPlugins) {
		// Told once, with the containers stopped and the pod's network
		// still up; a plugin cannot refuse a stop: its error is logged.
		if err := m.Plugins.StopPodSandbox(ctx, &sb); err != nil {
			m.log.Warn("NRI plugin failed on StopPodSandbox", "pod", sb.ID, "error", err)
		}
	}
	sb, err := m.steps.Undo(ctx, sb.ID, sb, m.stopUndoers())
	if err != nil {
		return err
	}
	if sb.State == StateReady {
		if _, err := m.recs.Update(sb.ID, func(sb *Sandbox) error {
			sb.State, sb.Reason = StateNotReady, reason
			return nil
		}); err != nil {
			return err
		}
		m.event(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, sb.ID)
		m.log.Info("pod sandbox stopped", "pod", sb.ID, "reason", reason)
	}
	return nil
}

// Remove removes the pod, its containers and everything crid made for it.
// Removing an unknown sandbox succeeds.
func (m *Manager) Remove(ctx context.Context, id string) error {
	// A pod whose removal a crash interrupted is found too, to finish it.
	sb, err := m.recs.Find(id, func(sb *Sandbox) bool { return sb.State != StateCreating })
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.checkRecovered(sb.ID); err != nil {
		return err
	}
	unlock := m.recs.Lock(sb.ID)
	defer unlock()
	if err := m.stopLocked(ctx, sb.ID, ""); err != nil {
		return err
	}
	if err := m.destroy(ctx, sb.ID); err != nil {
		return err
	}
	m.event(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, sb.ID)
	m.log.Info("pod sandbox removed", "pod", sb.ID)
	return nil
}

// destroy removes the pod's containers, undoes every step its record
// holds and deletes the record, for a caller holding its lock. The record
// is marked removing first, so a crash halfway is finished by the next
// start instead of leaving half a pod in the kubelet's lists.
func (m *Manager) destroy(ctx context.Context, id string) error {
	sb, err := m.recs.Update(id, func(sb *Sandbox) error {
		sb.Removing = true
		return nil
	})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if m.Containers != nil {
		if err := m.Containers.RemovePod(ctx, sb.ID); err != nil {
			return fmt.Errorf("remove containers of pod %s: %w", sb.ID, err)
		}
	}
	sb, err = m.steps.Undo(ctx, sb.ID, sb, m.removeUndoers())
	if err != nil {
		return err
	}
	if len(sb.Steps) > 0 {
		return fmt.Errorf("pod sandbox %s: steps %v have no undo in this crid: %w", sb.ID, sb.Steps, errdefs.ErrFailedPrecondition)
	}
	return m.recs.Delete(sb.ID)
}
