package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"

	"golang.org/x/sys/unix"

	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/steps"
)

// The side effects a pod is made of, in the order RunPodSandbox makes
// them; teardown undoes them in reverse.
const (
	stepDir        = "dir"        // the pod's state dir and files
	stepNamespaces = "namespaces" // pinned net, IPC, UTS namespaces
	stepShm        = "shm"        // the pod's /dev/shm tmpfs
	stepNetwork    = "network"    // CNI ADD (DEL is owed once begun)
	stepInfra      = "infra"      // pause container of a shared PID namespace
	stepPlugins    = "nri"        // NRI plugins told of the pod (RunPodSandbox)
)

// stopUndoers undo what a stopped pod no longer needs; its dir and files
// stay until it is removed (its containers' logs and status are read
// after the stop).
func (m *Manager) stopUndoers() steps.Undoers[Sandbox] {
	return steps.Undoers[Sandbox]{
		stepInfra: {
			Do: func(ctx context.Context, sb Sandbox) error {
				if err := namespaces.Unpin(sb.nsDir(), namespaces.PID); err != nil {
					return err
				}
				if sb.InfraID == "" || m.Infra == nil {
					return nil
				}
				return m.Infra.StopInfra(ctx, &sb)
			},
			Forget: func(sb *Sandbox) {
				sb.InfraID, sb.InfraPID = "", 0
				if _, ok := sb.Namespaces[namespaces.PID]; ok {
					sb.Namespaces = maps.Clone(sb.Namespaces)
					delete(sb.Namespaces, namespaces.PID)
				}
			},
		},
		stepNetwork: {
			Do:     func(ctx context.Context, sb Sandbox) error { return m.net.Teardown(ctx, podNetwork(&sb)) },
			Forget: func(sb *Sandbox) { sb.IPs = nil },
		},
		stepShm: {
			Do: func(_ context.Context, sb Sandbox) error {
				err := unix.Unmount(sb.shmDir(), unix.MNT_DETACH)
				if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
					return fmt.Errorf("unmount pod /dev/shm: %w", err)
				}
				return nil
			},
		},
		stepNamespaces: {
			Do:     func(_ context.Context, sb Sandbox) error { return namespaces.Remove(sb.nsDir()) },
			Forget: func(sb *Sandbox) { sb.Namespaces = nil },
		},
	}
}

// removeUndoers undo everything.
func (m *Manager) removeUndoers() steps.Undoers[Sandbox] {
	u := m.stopUndoers()
	u[stepPlugins] = steps.Undo[Sandbox]{
		Do: func(ctx context.Context, sb Sandbox) error {
			// A plugin cannot refuse a removal: its error is logged.
			if m.Plugins != nil {
				if err := m.Plugins.RemovePodSandbox(ctx, &sb); err != nil {
					m.log.Warn("NRI plugin failed on RemovePodSandbox", "pod", sb.ID, "error", err)
				}
			}
			return nil
		},
	}
	u[stepDir] = steps.Undo[Sandbox]{
		Do: func(_ context.Context, sb Sandbox) error {
			// The pins and the tmpfs are undone before, and sweep has
			// the same belt and braces for dirs no record owns.
			if err := os.RemoveAll(sb.Dir); err != nil {
				return fmt.Errorf("remove sandbox dir: %w", err)
			}
			return nil
		},
	}
	return u
}

// legacy holds the fields with which records written before steps said
// what was made; migrate turns them into steps.
type legacy struct {
	LegacyNetwork    bool `json:"network,omitempty"`
	LegacyShmMounted bool `json:"shmMounted,omitempty"`
}

// migrate gives a record from an older crid its steps.
func (m *Manager) migrate(sb Sandbox) error {
	if sb.Steps != nil {
		return nil
	}
	var l steps.Log
	add := func(name string, ok bool) {
		if ok {
			l = append(l, steps.Entry{Name: name, Done: true})
		}
	}
	add(stepDir, sb.Dir != "")
	add(stepNamespaces, len(sb.Namespaces) > 0)
	add(stepShm, sb.LegacyShmMounted)
	add(stepNetwork, sb.LegacyNetwork)
	add(stepInfra, sb.InfraID != "")
	_, err := m.recs.Update(sb.ID, func(v *Sandbox) error {
		v.Steps, v.legacy = l, legacy{}
		return nil
	})
	return err
}
