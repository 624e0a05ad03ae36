package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/cgroup"
	"github.com/crid-project/crid/internal/checkpoint"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/steps"
)

// maxArchiveBytes bounds what a checkpoint archive may unpack to: CRIU's
// images hold the container's memory, so this is about the largest
// container memory a node restores.
const maxArchiveBytes = 64 << 30

// restoreSource is the checkpoint a container is restored from.
type restoreSource struct {
	origin string // the archive's path, or the checkpoint image's reference
	// open reads the archive (a checkpoint image's layer as a tar).
	open   func(ctx context.Context) (io.ReadCloser, error)
	config metadata.ContainerConfig
	// namesImage: the source stood in the config for the image, so the
	// container's image is the checkpointed container's.
	namesImage bool
}

// imageRef is the image the checkpointed container was made from.
func (r *restoreSource) imageRef() string {
	if r.config.RootfsImageRef != "" {
		return r.config.RootfsImageRef
	}
	return r.config.RootfsImageName
}

// checkpointImageAnnotations mark a checkpoint image (an OCI image whose
// one layer is a checkpoint archive unpacked) in its manifest: CRI-O's
// name, which the Kubernetes documentation's buildah recipe sets, and
// checkpointctl's.
var checkpointImageAnnotations = []string{"io.kubernetes.cri-o.annotations.checkpoint.name", metadata.CheckpointAnnotationName}

// restoreSourceOf reads the checkpoint a CreateContainer names in place of
// an image: the absolute path of an archive (as CRI-O takes it), or a
// checkpoint image. The container is then made from the checkpointed
// container's image, its writable layer put back, and StartContainer
// restores its processes instead of starting it. nil: ref is an image to
// run.
func (m *Manager) restoreSourceOf(ctx context.Context, ref string) (*restoreSource, error) {
	src := &restoreSource{origin: ref}
	off := func() error {
		return fmt.Errorf("restore from %s: %w: %w", ref, m.cfg.CheckpointOff, errdefs.ErrFailedPrecondition)
	}
	if filepath.IsAbs(ref) {
		if m.cfg.CheckpointOff != nil {
			return nil, off()
		}
		fi, err := os.Stat(ref)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("checkpoint archive %s: %w", ref, errdefs.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint archive %s: %w", ref, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("checkpoint archive %s is not a regular file: %w", ref, errdefs.ErrInvalidArgument)
		}
		src.open = func(context.Context) (io.ReadCloser, error) { return os.Open(ref) }
	} else {
		img, err := m.images.Get(ref)
		if err != nil || !slices.ContainsFunc(checkpointImageAnnotations, func(a string) bool { return img.Annotations[a] != "" }) {
			return nil, nil // an image to run, or one the create reports missing
		}
		if len(img.Layers) != 1 {
			return nil, fmt.Errorf("checkpoint image %s has %d layers, not one: %w", ref, len(img.Layers), errdefs.ErrInvalidArgument)
		}
		if m.cfg.CheckpointOff != nil {
			return nil, off()
		}
		dir := m.images.LayerDir(img.Layers[0])
		src.open = func(ctx context.Context) (io.ReadCloser, error) { return checkpoint.DirReader(ctx, dir), nil }
	}
	r, err := src.open(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if src.config, err = checkpoint.ReadConfig(r); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return src, nil
}

// restoreDir holds a restored container's unpacked checkpoint.
func (m *Manager) restoreDir(id string) string { return filepath.Join(m.layerDir(id), "checkpoint") }

// restoreFiles unpacks the archive beside the container's writable layer
// and puts the checkpointed container's changes back into its rootfs.
func (m *Manager) restoreFiles(ctx context.Context, id string, src *restoreSource) error {
	dir := m.restoreDir(id)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	r, err := src.open(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	a, err := checkpoint.Open(ctx, r, dir, maxArchiveBytes)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w: %w", src.origin, err, errdefs.ErrInvalidArgument)
	}
	if a.Config.ID != src.config.ID {
		return fmt.Errorf("checkpoint %s changed while it was read: %w", src.origin, errdefs.ErrInvalidArgument)
	}
	return a.ApplyRootfsDiff(ctx, m.rootfsDir(id))
}

// restoreStep is the start of a container made from a checkpoint: the
// monitor runs `runtime restore`, and the container runs once it returns.
func (m *Manager) restoreStep(c Container, h oci.Handler, monitorCgroup string) steps.Step[Container] {
	var pid int
	cfg := c.ContainerConfig()
	return steps.Step[Container]{
		Name:   stepRuntime,
		Intent: func(v *Container) { v.MonitorCgroup = monitorCgroup },
		Make: func(ctx context.Context, rec Container) error {
			var err error
			pid, err = m.rt.Create(ctx, oci.CreateOptions{
				ID: c.ID, Handler: h, Bundle: m.bundleDir(c.ID), LogPath: c.LogPath,
				Terminal: cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
				CgroupParent: rec.MonitorCgroup,
				Restore: &oci.RestoreOptions{
					ImageDir: filepath.Join(c.Restore, metadata.CheckpointDirectory), CRIUDir: m.cfg.CRIUDir,
				},
			})
			return err
		},
		Made: func(v *Container) {
			v.Pid = pid
			started(v)
		},
	}
}

// settleRestore finishes a restore that was begun but not confirmed (it
// failed, or crid stopped during it), from what the runtime says: running
// (confirm it), gone (forget it, so a retry can restore), or anything else
// (the container is recorded exited; its removal deletes what is left).
func (m *Manager) settleRestore(ctx context.Context, c Container) error {
	h, err := m.handler(c.Handler)
	if err != nil {
		return err
	}
	st, err := m.rt.State(ctx, c.ID, h)
	switch {
	case errdefs.IsNotFound(err):
		_, err := m.steps.Undo(ctx, c.ID, c, steps.Undoers[Container]{stepRuntime: {
			Do: func(context.Context, Container) error {
				if c.MonitorCgroup == "" {
					return nil
				}
				return cgroup.Remove(c.MonitorCgroup)
			},
			Forget: func(v *Container) { v.MonitorCgroup = "" },
		}})
		return err
	case err != nil:
		return err
	case st.Status == "running":
		_, err := m.steps.Confirm(c.ID, stepRuntime, func(v *Container) {
			v.Pid = st.Pid
			started(v)
		})
		return err
	}
	if _, err := m.steps.Confirm(c.ID, stepRuntime, nil); err != nil {
		return err
	}
	m.markExited(c.ID, 255, "Error", "the restore from a checkpoint did not complete", c.CreatedAt)
	return nil
}

// restoreCut: a restore was begun and not confirmed (settleRestore).
func restoreCut(c *Container) bool {
	return c.Restore != "" && c.Steps.Has(stepRuntime) && !c.Steps.Done(stepRuntime)
}

// restorePending: a container made from a checkpoint that was not started
// yet has no monitor and no runtime state to look after.
func restorePending(c *Container) bool { return c.Restore != "" && !c.Steps.Has(stepRuntime) }

// CreateRestored creates, in pod podID, a container to restore from the
// archive of a pod checkpoint (RestorePod); want is what the checkpoint
// recorded of the container. cfg, the restore-time configuration, must
// describe the same process: the same image, command, arguments, working
// directory and user; a mismatch is InvalidArgument and creates nothing.
func (m *Manager) CreateRestored(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig, archive string, want checkpoint.PodContainer) (string, error) {
	img, err := m.images.Get(cfg.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return "", fmt.Errorf("image %q is not present: pull it first: %w", cfg.GetImage().GetImage(), errdefs.ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	got := checkpoint.PodContainer{
		Name: want.Name, ID: want.ID, Image: img.ID.String(),
		Command: cfg.GetCommand(), Args: cfg.GetArgs(), WorkingDir: cfg.GetWorkingDir(), User: configUser(cfg),
	}
	for _, d := range []struct {
		what      string
		got, want any
		same      bool
	}{
		{"image", got.Image, want.Image, got.Image == want.Image},
		{"command", got.Command, want.Command, slices.Equal(got.Command, want.Command)},
		{"args", got.Args, want.Args, slices.Equal(got.Args, want.Args)},
		{"working directory", got.WorkingDir, want.WorkingDir, got.WorkingDir == want.WorkingDir},
		{"user (uid:gid:name)", got.User, want.User, got.User == want.User},
	} {
		if !d.same {
			return "", fmt.Errorf("container %q: the %s %q is not the checkpointed %q: %w", want.Name, d.what, d.got, d.want, errdefs.ErrInvalidArgument)
		}
	}
	return m.createFrom(ctx, podID, cfg, archive)
}
