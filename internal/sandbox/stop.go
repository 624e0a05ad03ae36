package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/namespaces"
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
	unlock := m.lock(sb.ID)
	defer unlock()
	if m.Containers != nil {
		if err := m.Containers.StopPod(ctx, sb.ID); err != nil {
			return fmt.Errorf("stop containers of pod %s: %w", sb.ID, err)
		}
	}
	if err := m.teardown(ctx, &sb); err != nil {
		return err
	}
	if sb.State != StateNotReady {
		sb.State = StateNotReady
		if err := m.save(&sb); err != nil {
			return err
		}
		m.event(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, sb.ID)
		m.log.Info("pod sandbox stopped", "pod", sb.ID)
	}
	return nil
}

// Remove removes the pod, its containers and everything crid made for it.
// Removing an unknown sandbox succeeds.
func (m *Manager) Remove(ctx context.Context, id string) error {
	sb, err := m.Get(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.Stop(ctx, sb.ID); err != nil {
		return err
	}
	unlock := m.lock(sb.ID)
	defer unlock()
	if m.Containers != nil {
		if err := m.Containers.RemovePod(ctx, sb.ID); err != nil {
			return fmt.Errorf("remove containers of pod %s: %w", sb.ID, err)
		}
	}
	sb, err = m.Get(sb.ID)
	if err != nil {
		return err
	}
	if err := m.teardown(ctx, &sb); err != nil {
		return err
	}
	if err := os.RemoveAll(sb.Dir); err != nil {
		return fmt.Errorf("remove sandbox dir: %w", err)
	}
	if err := m.delete(&sb); err != nil {
		return err
	}
	m.locks.Forget(sb.ID)
	m.event(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, sb.ID)
	m.log.Info("pod sandbox removed", "pod", sb.ID)
	return nil
}

// teardown undoes, in reverse order, whatever sb's record says was made.
// Every step is idempotent and recorded, so it can be repeated after a crash.
func (m *Manager) teardown(ctx context.Context, sb *Sandbox) error {
	if sb.InfraID != "" && m.Infra != nil {
		if err := m.Infra.StopInfra(ctx, sb); err != nil {
			return fmt.Errorf("stop infra process of pod %s: %w", sb.ID, err)
		}
		sb.InfraID, sb.InfraPID = "", 0
		if err := m.save(sb); err != nil {
			return err
		}
	}
	if sb.Network {
		if err := m.net.Teardown(ctx, podNetwork(sb)); err != nil {
			return fmt.Errorf("tear down pod network: %w", err)
		}
		sb.Network = false
		sb.IPs = nil
		if err := m.save(sb); err != nil {
			return err
		}
	}
	if len(sb.Namespaces) > 0 {
		if err := namespaces.Remove(sb.nsDir()); err != nil {
			return fmt.Errorf("remove pod namespaces: %w", err)
		}
		sb.Namespaces = nil
		if err := m.save(sb); err != nil {
			return err
		}
	}
	if sb.ShmMounted {
		if err := unix.Unmount(sb.shmDir(), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount pod /dev/shm: %w", err)
		}
		sb.ShmMounted = false
		if err := m.save(sb); err != nil {
			return err
		}
	}
	return nil
}
