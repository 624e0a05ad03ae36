package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crid-project/crid/internal/cgroup"
	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/steps"
)

// The side effects a container is made of, in the order they are made;
// removal undoes them in reverse.
const (
	stepDirs         = "dirs"         // bundle and writable-layer dirs
	stepRootfs       = "rootfs"       // the overlay mount
	stepImageVolumes = "imagevolumes" // the read-only mounts of image volumes
	stepPIDNS        = "pidns"        // pin of a target container's PID namespace
	stepRestoreFiles = "restorefiles" // a checkpoint unpacked, its writable layer put back
	stepSpec         = "spec"         // the bundle's spec alone (a container to restore)
	stepRuntime      = "runtime"      // conmon and runc state
	stepStart        = "start"        // runc start (undone by the runtime's delete)
)

func (m *Manager) undoers() steps.Undoers[Container] {
	return steps.Undoers[Container]{
		stepStart: {Do: func(context.Context, Container) error { return nil }},
		stepRuntime: {Do: func(ctx context.Context, c Container) error {
			// The runtime's delete removes the container's state dir,
			// which holds the rootfs mount point: unmount it first.
			if err := unmount(m.rootfsDir(c.ID)); err != nil {
				return err
			}
			h, err := m.handler(c.Handler)
			if err != nil {
				return err
			}
			if err := m.rt.Delete(ctx, c.ID, h); err != nil {
				return fmt.Errorf("delete container %s from the runtime: %w", c.ID, err)
			}
			// The monitor is gone with the delete: its cgroup is empty.
			if c.MonitorCgroup != "" {
				if err := cgroup.Remove(c.MonitorCgroup); err != nil {
					return fmt.Errorf("remove the monitor cgroup of container %s: %w", c.ID, err)
				}
			}
			return nil
		}},
		stepSpec: {Do: func(context.Context, Container) error { return nil }},
		stepRestoreFiles: {Do: func(_ context.Context, c Container) error {
			return os.RemoveAll(m.restoreDir(c.ID))
		}},
		stepPIDNS: {Do: func(_ context.Context, c Container) error {
			return namespaces.Remove(m.nsDir(c.ID))
		}},
		stepImageVolumes: {Do: func(_ context.Context, c Container) error { return removeImageVolumes(m.layerDir(c.ID)) }},
		stepRootfs: {Do: func(_ context.Context, c Container) error {
			if err := unmount(m.rootfsDir(c.ID)); err != nil {
				return err
			}
			return removeIDMapped(m.layerDir(c.ID))
		}},
		stepDirs: {Do: func(_ context.Context, c Container) error {
			if err := unmount(m.rootfsDir(c.ID)); err != nil {
				return err
			}
			if err := removeImageVolumes(m.layerDir(c.ID)); err != nil {
				return err
			}
			if err := removeIDMapped(m.layerDir(c.ID)); err != nil {
				return err
			}
			if err := namespaces.Remove(m.nsDir(c.ID)); err != nil {
				return err
			}
			if err := os.RemoveAll(m.bundleDir(c.ID)); err != nil {
				return err
			}
			return os.RemoveAll(m.layerDir(c.ID))
		}},
	}
}

// nsDir holds the container's namespace pins (outside the bundle, which
// the runtime's delete removes).
func (m *Manager) nsDir(id string) string { return filepath.Join(m.layerDir(id), "ns") }

// legacy holds the fields with which records written before steps said
// what was made; migrate turns them into steps.
type legacy struct {
	LegacyRootfsMounted bool `json:"rootfsMounted,omitempty"`
	LegacyOCICreated    bool `json:"ociCreated,omitempty"`
}

// migrate gives a record from an older crid its steps.
func (m *Manager) migrate(c Container) error {
	if c.Steps != nil {
		return nil
	}
	l := steps.Log{{Name: stepDirs, Done: true}}
	if c.LegacyRootfsMounted {
		l = append(l, steps.Entry{Name: stepRootfs, Done: true})
	}
	if c.LegacyOCICreated {
		l = append(l, steps.Entry{Name: stepRuntime, Done: true})
	}
	if c.State == StateRunning || c.State == StateExited && !c.StartedAt.IsZero() {
		l = append(l, steps.Entry{Name: stepStart, Done: true})
	}
	_, err := m.recs.Update(c.ID, func(v *Container) error {
		v.Steps, v.legacy = l, legacy{}
		return nil
	})
	return err
}
