package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/checkpoint"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
)

// CheckpointPod writes one consistent checkpoint of containers ids, all
// running in pod podID, into out, an existing empty directory
// (internal/checkpoint has the layout). Every container is paused before
// any is dumped and stays paused until all are dumped and their files
// written; all are resumed before the manifest is summed and before it
// returns, also on an error or once ctx (the caller's deadline) is done.
// On an error out is emptied again.
// options must be empty: crid has none.
func (m *Manager) CheckpointPod(ctx context.Context, podID, out string, ids []string, options map[string]string) (retErr error) {
	if m.cfg.CheckpointOff != nil {
		return fmt.Errorf("checkpoint pod %s: %w: %w", podID, m.cfg.CheckpointOff, errdefs.ErrFailedPrecondition)
	}
	for k := range options {
		return fmt.Errorf("checkpoint option %q: crid has no checkpoint options: %w", k, errdefs.ErrInvalidArgument)
	}
	if err := checkOutputDir(out); err != nil {
		return err
	}
	sb, err := m.sandboxes.Get(podID)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("container_ids: required: %w", errdefs.ErrInvalidArgument)
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	if slices.Contains(sorted, "") {
		return fmt.Errorf("container_ids: an ID is empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
		return fmt.Errorf("container_ids: an ID is repeated: %w", errdefs.ErrInvalidArgument)
	}
	var ctrs []Container
	for _, id := range sorted {
		c, err := m.Get(id)
		if err != nil {
			return err
		}
		if c.SandboxID != sb.ID {
			return fmt.Errorf("container %s is in pod %s, not %s: %w", c.ID, c.SandboxID, sb.ID, errdefs.ErrInvalidArgument)
		}
		if err := m.checkRecovered(c.ID); err != nil {
			return err
		}
		ctrs = append(ctrs, c)
	}
	// Held for the whole checkpoint, in ID order: a stop or removal waits.
	for _, c := range ctrs {
		unlock := m.recs.Lock(c.ID)
		defer unlock()
	}
	handlers := map[string]oci.Handler{}
	for i, c := range ctrs {
		if ctrs[i], _ = m.recs.Get(c.ID); ctrs[i].State != StateRunning || ctrs[i].Removing {
			return fmt.Errorf("checkpoint pod %s: container %s is %s, not running: %w", sb.ID, c.ID, ctrs[i].State, errdefs.ErrFailedPrecondition)
		}
		if handlers[c.ID], err = m.handler(c.Handler); err != nil {
			return err
		}
		if _, err := checkpoint.ContainerArchive(c.ContainerConfig().GetMetadata().GetName()); err != nil {
			return fmt.Errorf("checkpoint pod %s: %w: %w", sb.ID, err, errdefs.ErrInvalidArgument)
		}
	}
	log := m.log.With("pod", sb.ID)
	start := time.Now()
	defer func() {
		if retErr != nil {
			// out was empty: what is in it now is this call's.
			entries, _ := os.ReadDir(out)
			for _, e := range entries {
				os.RemoveAll(filepath.Join(out, e.Name()))
			}
		}
	}()

	manifest := checkpoint.PodManifest{
		Crid: m.cfg.Version, PodID: sb.ID, Handler: handlers[ctrs[0].ID].Name, CheckpointedAt: time.Now(),
	}
	if manifest.Containers, err = m.dumpFrozen(ctx, sb, ctrs, handlers, out); err != nil {
		return fmt.Errorf("checkpoint pod %s: %w", sb.ID, err)
	}
	log.Info("pod containers resumed", "frozen", time.Since(start))
	podCfg, err := protojson.Marshal(sb.PodConfig())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, checkpoint.PodConfigFile), podCfg, 0o600); err != nil {
		return err
	}
	if err := checkpoint.WritePodManifest(ctx, out, manifest); err != nil {
		return err
	}
	log.Info("pod checkpointed", "output", out, "containers", len(ctrs), "took", time.Since(start))
	m.stage("checkpoint_pod", time.Since(start))
	return nil
}

// dumpFrozen pauses every container, then dumps each and writes its
// archive into out, and the pod's /dev/shm, while all stay paused: one cut
// of the pod's memory and files. It resumes them all before it returns,
// whatever happened, past ctx's deadline too: a pod is never left frozen.
func (m *Manager) dumpFrozen(ctx context.Context, sb sandbox.Sandbox, ctrs []Container, handlers map[string]oci.Handler, out string) (dumped []checkpoint.PodContainer, retErr error) {
	var paused []Container
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, c := range paused {
			// A failed dump may have thawed its container already.
			if st, err := m.rt.State(rctx, c.ID, handlers[c.ID]); err == nil && st.Status != "paused" {
				continue
			}
			if err := m.rt.Resume(rctx, c.ID, handlers[c.ID]); err != nil {
				m.log.Error("could not resume a container after the pod checkpoint", "pod", sb.ID, "container", c.ID, "err", err)
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	for _, c := range ctrs {
		if err := m.rt.Pause(ctx, c.ID, handlers[c.ID]); err != nil {
			return nil, err
		}
		paused = append(paused, c)
	}
	for _, c := range ctrs {
		rel, _ := checkpoint.ContainerArchive(c.ContainerConfig().GetMetadata().GetName())
		path := filepath.Join(out, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := m.dump(ctx, c, handlers[c.ID], path); err != nil {
			return nil, err
		}
		dumped = append(dumped, podContainer(c))
	}
	if shm := sb.Shm(); shm != "/dev/shm" {
		if err := checkpoint.WriteShm(ctx, shm, filepath.Join(out, checkpoint.PodShmTar)); err != nil {
			return nil, fmt.Errorf("/dev/shm: %w", err)
		}
	}
	return dumped, nil
}

// podContainer is what a pod checkpoint records of c for its restore.
func podContainer(c Container) checkpoint.PodContainer {
	cfg := c.ContainerConfig()
	return checkpoint.PodContainer{
		Name: cfg.GetMetadata().GetName(), ID: c.ID, Image: c.ImageID.String(),
		Command: cfg.GetCommand(), Args: cfg.GetArgs(), WorkingDir: cfg.GetWorkingDir(), User: configUser(cfg),
	}
}

// configUser is the process user a container config asks for, as
// "uid:gid:name" ("" parts: unset).
func configUser(cfg *runtimeapi.ContainerConfig) string {
	sc := cfg.GetLinux().GetSecurityContext()
	part := func(v *runtimeapi.Int64Value) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v.GetValue())
	}
	return strings.Join([]string{part(sc.GetRunAsUser()), part(sc.GetRunAsGroup()), sc.GetRunAsUsername()}, ":")
}

// dump checkpoints c with CRIU, leaving it as it was (paused), and writes
// its archive at path.
func (m *Manager) dump(ctx context.Context, c Container, h oci.Handler, path string) error {
	dir := filepath.Join(m.cfg.StateDir, "checkpoints")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	work, err := os.MkdirTemp(dir, c.ID+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	images := filepath.Join(work, metadata.CheckpointDirectory)
	if err := os.Mkdir(images, 0o700); err != nil {
		return err
	}
	if err := m.rt.Checkpoint(ctx, c.ID, h, oci.CheckpointOptions{
		ImageDir: images, WorkDir: work, LeaveRunning: true, CRIUDir: m.cfg.CRIUDir,
		SkipInFlight: m.criuCaps(h.Name).skipInFlight,
	}); err != nil {
		return err
	}
	err = checkpoint.WriteArchive(ctx, path, work, checkpoint.Container{
		Config: metadata.ContainerConfig{
			ID:              c.ID,
			Name:            c.ContainerConfig().GetMetadata().GetName(),
			RootfsImage:     c.ImageName,
			RootfsImageRef:  c.ImageID.String(),
			RootfsImageName: c.ImageName,
			OCIRuntime:      h.Name,
			CreatedTime:     c.CreatedAt,
			CheckpointedAt:  time.Now(),
		},
		SpecFile: filepath.Join(m.bundleDir(c.ID), "config.json"),
		ImageDir: images,
		UpperDir: filepath.Join(m.layerDir(c.ID), "upper"),
		LogFile:  c.LogPath,
	})
	if err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	return nil
}

// checkOutputDir accepts an absolute, clean path of an existing, empty
// directory (not a symlink to one): a pod checkpoint is written there.
func checkOutputDir(dir string) error {
	if err := checkCleanPath("output_path", dir); err != nil {
		return err
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return badPath("output_path", dir, "is not an existing directory")
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
		return badPath("output_path", dir, "is not empty")
	}
	return nil
}
