package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/container/spec"
	"github.com/crid-project/crid/internal/ids"
	"github.com/crid-project/crid/internal/image"
	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
	"github.com/crid-project/crid/internal/steps"
)

// Create creates a container in pod podID and returns its ID. A retry of a
// create that is in flight or finished after its caller gave up returns the
// same ID.
func (m *Manager) Create(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (string, error) {
	return m.createFrom(ctx, podID, cfg, cfg.GetImage().GetImage())
}

// createFrom creates a container from source: an image reference, or the
// absolute path of a checkpoint archive to restore (see restore.go).
func (m *Manager) createFrom(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig, source string) (string, error) {
	switch {
	case podID == "":
		return "", fmt.Errorf("pod_sandbox_id: required: %w", errdefs.ErrInvalidArgument)
	case cfg.GetMetadata().GetName() == "":
		return "", fmt.Errorf("config.metadata.name: required: %w", errdefs.ErrInvalidArgument)
	case cfg.GetImage().GetImage() == "":
		return "", fmt.Errorf("config.image.image: required: %w", errdefs.ErrInvalidArgument)
	}
	if p := cfg.GetLogPath(); p != "" && (filepath.IsAbs(p) || hasDotDot(p)) {
		return "", fmt.Errorf("config.log_path %q: must be relative to the pod's log directory, without '..': %w", p, errdefs.ErrInvalidArgument)
	}
	if s := cfg.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		if _, ok := spec.SignalNumber(s); !ok {
			return "", fmt.Errorf("config.stop_signal: %d is no signal: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	// The pod is held until the container is recorded whole (or rolled
	// back): a RemovePodSandbox meanwhile waits, and never orphans it.
	sb, release, err := m.sandboxes.Use(podID)
	if err != nil {
		return "", err
	}
	defer release()
	md := sb.PodConfig().GetMetadata()
	name := strings.Join([]string{cfg.GetMetadata().GetName(), md.GetName(), md.GetNamespace(), md.GetUid(), fmt.Sprint(cfg.GetMetadata().GetAttempt())}, "_")
	id := ids.New()
	res, existing, err := m.recs.Reserve(ctx, name, id)
	if err != nil {
		return "", err
	}
	if existing != "" {
		return existing, nil
	}
	restore, err := m.restoreSourceOf(ctx, source)
	if err != nil {
		res.Done(err, false)
		return "", err
	}
	if restore != nil {
		restore.namesImage = source == cfg.GetImage().GetImage()
	}
	err = m.create(ctx, id, name, &sb, cfg, false, restore)
	res.Done(err, ctx.Err() != nil)
	if err != nil {
		return "", err
	}
	return id, nil
}

// stopSignal is the signal StopContainer sends first: the config's
// stop_signal (KEP-4960), else the image's StopSignal, else SIGTERM.
func stopSignal(cfg *runtimeapi.ContainerConfig, img ocispec.ImageConfig) syscall.Signal {
	if sig, ok := spec.SignalNumber(cfg.GetStopSignal()); ok {
		return sig
	}
	return spec.StopSignal(img)
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// create makes the container; restore, if set, is the checkpoint it is
// made from (see restore.go).
func (m *Manager) create(ctx context.Context, id, name string, sb *sandbox.Sandbox, cfg *runtimeapi.ContainerConfig, infra bool, restore *restoreSource) (retErr error) {
	start := time.Now()
	imageRef := cfg.GetImage().GetImage()
	if restore != nil {
		imageRef = restore.imageRef()
	}
	img, err := m.images.Get(imageRef)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("image %q is not present: pull it first: %w", imageRef, errdefs.ErrNotFound)
		}
		return err
	}
	rawImg, err := m.images.Config(img)
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	var imgCfg ocispec.Image
	if err := json.Unmarshal(rawImg, &imgCfg); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	h, err := m.handler(sb.RuntimeHandler)
	if err != nil {
		return err
	}
	raw, err := proto.Marshal(cfg)
	if err != nil {
		return err
	}
	c := Container{
		ID:         id,
		SandboxID:  sb.ID,
		Name:       name,
		Config:     raw,
		ImageID:    img.ID,
		ImageName:  cfg.GetImage().GetImage(),
		Handler:    h.Name,
		State:      StateCreating,
		CreatedAt:  time.Now(),
		StopSignal: int(stopSignal(cfg, imgCfg.Config)),
		Infra:      infra,
		config:     cfg,
	}
	if usn := cfg.GetImage().GetUserSpecifiedImage(); usn != "" {
		c.ImageName = usn
	}
	if restore != nil {
		if restore.config.OCIRuntime != "" && restore.config.OCIRuntime != h.Name {
			return fmt.Errorf("the checkpoint in %s was taken with runtime handler %q, the pod runs %q: %w",
				restore.origin, restore.config.OCIRuntime, h.Name, errdefs.ErrFailedPrecondition)
		}
		if !m.criuCaps(h.Name).restore {
			return fmt.Errorf("runtime handler %q cannot restore a checkpoint: its runtime has no 'restore --manage-cgroups-mode ignore' (runc 1.2 or later): %w",
				h.Name, errdefs.ErrFailedPrecondition)
		}
		if restore.namesImage {
			c.ImageName = restore.config.RootfsImageName
		}
		c.Restore = m.restoreDir(id)
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		c.Resources, _ = proto.Marshal(r)
	}
	if dir := sb.PodConfig().GetLogDirectory(); dir != "" && cfg.GetLogPath() != "" {
		c.LogPath = filepath.Join(dir, cfg.GetLogPath())
	}
	nsPaths, target, err := m.namespacePaths(sb, cfg)
	if err != nil {
		return err
	}
	userns, err := userNSOf(sb)
	if err != nil {
		return err
	}
	if userns != nil && restore != nil {
		return fmt.Errorf("restoring a checkpoint into a pod with a user namespace: %w", errdefs.ErrNotImplemented)
	}
	imgMounts, err := spec.ImageMounts(cfg)
	if err != nil {
		return err
	}
	var volImgs []image.Image
	if c.ImageVolumes, volImgs, err = m.imageVolumes(imgMounts); err != nil {
		return err
	}
	unlock := m.recs.Lock(id)
	defer unlock()
	if err := m.recs.Insert(c); err != nil {
		return err
	}
	m.stopOnce.Store(id, new(sync.Once))
	defer func() {
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := m.destroy(cctx, id); err != nil {
				m.log.Error("roll back container", "container", id, "pod", sb.ID, "error", err)
			}
		}
	}()
	// A RemoveImage between the lookups above and the insert saw no
	// container using the images; InUse sees this record from now on.
	if err := m.imagesPresent(c); err != nil {
		return err
	}

	plan := []steps.Step[Container]{{
		Name: stepDirs,
		Make: func(context.Context, Container) error {
			for _, d := range []string{m.rootfsDir(id), filepath.Join(m.layerDir(id), "upper"), filepath.Join(m.layerDir(id), "work")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return fmt.Errorf("create container dirs: %w", err)
				}
			}
			if m.OnLayerMade != nil {
				m.OnLayerMade(m.layerDir(id))
			}
			if c.LogPath != "" {
				if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o755); err != nil {
					return fmt.Errorf("create log dir: %w", err)
				}
			}
			return nil
		},
	}, {
		Name: stepRootfs,
		Make: func(context.Context, Container) error { return m.mountRootfs(id, img.Layers, userns) },
	}}
	if restore != nil {
		plan = append(plan, steps.Step[Container]{
			Name: stepRestoreFiles,
			Make: func(ctx context.Context, _ Container) error { return m.restoreFiles(ctx, id, restore) },
		})
	}
	var volumeSrcs map[int]string
	if len(imgMounts) > 0 {
		plan = append(plan, steps.Step[Container]{
			Name: stepImageVolumes,
			Make: func(context.Context, Container) error {
				var err error
				volumeSrcs, err = m.mountImageVolumes(id, imgMounts, volImgs, userns)
				return err
			},
		})
	}
	if target != nil {
		plan = append(plan, steps.Step[Container]{
			Name: stepPIDNS,
			Make: func(context.Context, Container) error {
				// Pinned through a pidfd: a target that exited is an
				// error, never another process's namespace.
				p, err := namespaces.PinProcess(m.nsDir(id), namespaces.PID, target.Pid)
				if err != nil {
					return fmt.Errorf("join the PID namespace of target container %s: %w", target.ID, err)
				}
				nsPaths.PID = p
				return nil
			},
		})
	}
	var user *runtimeapi.ContainerUser
	var specStart, specDone, created time.Time
	unblockSync := func() {}
	defer func() { unblockSync() }()
	runtimeStep := steps.Step[Container]{
		Name: stepRuntime,
		// conmon's own cgroup is recorded with the intent: the undo
		// removes it once conmon is gone.
		Intent: func(v *Container) { v.MonitorCgroup = m.cgroups.Monitor(sb.CgroupParent, id) },
		Make: func(ctx context.Context, rec Container) error {
			specStart = time.Now()
			s, u, err := spec.Build(spec.Input{
				ID:                 id,
				SandboxID:          sb.ID,
				ImageName:          c.ImageName,
				SupportsRRO:        m.SupportsRRO(h.Name),
				Config:             cfg,
				Sandbox:            sb.PodConfig(),
				Image:              imgCfg.Config,
				RootFS:             m.rootfsDir(id),
				Namespaces:         nsPaths,
				CgroupsPath:        m.cgroups.Container(sb.CgroupParent, id),
				HostCapabilities:   m.host.capabilities,
				MinOOMScoreAdj:     m.host.minOOMScoreAdj,
				SwapLimitSupported: m.host.swapLimit,
				HugetlbSupported:   m.host.hugetlb,
				AppArmor:           m.host.apparmor,
				SELinuxEnabled:     m.cfg.SELinuxEnabled,
				ShmPath:            sb.Shm(),
				ResolvConfPath:     sb.ResolvConf(),
				HostsPath:          sb.Hosts(),
				HostnamePath:       sb.Hostname(),
				ImageVolumes:       volumeSrcs,
				CDI:                m.cdi,
			})
			if err != nil {
				return err
			}
			user = u
			if m.Plugins != nil && !infra {
				// Held until the container is committed (or rolled
				// back): a plugin connecting meanwhile lists it.
				unblockSync = sync.OnceFunc(m.Plugins.BlockSync())
				if err := m.Plugins.CreateContainer(ctx, sb, &c, s); err != nil {
					return fmt.Errorf("NRI: %w", err)
				}
			}
			if err := writeSpec(m.bundleDir(id), s); err != nil {
				return err
			}
			m.processes.Store(id, s.Process)
			specDone = time.Now()
			if restore != nil {
				// StartContainer restores it (restoreStep).
				created = specDone
				return nil
			}
			pid, err := m.rt.Create(ctx, oci.CreateOptions{
				ID:           id,
				Handler:      h,
				Bundle:       m.bundleDir(id),
				LogPath:      c.LogPath,
				Terminal:     cfg.GetTty(),
				CgroupParent: rec.MonitorCgroup,
				Stdin:        cfg.GetStdin(),
				StdinOnce:    cfg.GetStdinOnce(),
			})
			if err != nil {
				return fmt.Errorf("create container: %w", err)
			}
			c.Pid, created = pid, time.Now()
			return nil
		},
	}
	if restore != nil {
		runtimeStep.Name, runtimeStep.Intent = stepSpec, nil
	}
	plan = append(plan, runtimeStep)
	rec, took, err := m.steps.RunAll(ctx, id, plan, func(v *Container) {
		v.Pid, v.State = c.Pid, StateCreated
		if user != nil {
			v.User, _ = proto.Marshal(user)
		}
	})
	unblockSync()
	if err != nil {
		return err
	}
	m.tell(ctx, "PostCreateContainer", &rec, func(ctx context.Context, p Plugins, sb *sandbox.Sandbox, c *Container) error {
		return p.PostCreateContainer(ctx, sb, c)
	})
	m.stage("rootfs", took[stepDirs]+took[stepRootfs]+took[stepImageVolumes])
	m.stage("spec", specDone.Sub(specStart))
	m.stage("runtime", created.Sub(specDone))
	m.event(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, &rec)
	m.log.Info("container created", "container", id, "pod", sb.ID, "name", cfg.GetMetadata().GetName(),
		"image_volumes", len(imgMounts), "runtime", took[stepRuntime], "total", time.Since(start))
	return nil
}

// namespacePaths are the pod namespaces the container joins, and the
// target container whose PID namespace it joins in TARGET mode.
func (m *Manager) namespacePaths(sb *sandbox.Sandbox, cfg *runtimeapi.ContainerConfig) (spec.NamespacePaths, *Container, error) {
	p := spec.NamespacePaths{
		Net:  sb.Namespaces[namespaces.Net],
		IPC:  sb.Namespaces[namespaces.IPC],
		UTS:  sb.Namespaces[namespaces.UTS],
		User: sb.Namespaces[namespaces.User],
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch nsOpts.GetPid() {
	case runtimeapi.NamespaceMode_POD:
		p.PID = sb.Namespaces[namespaces.PID]
	case runtimeapi.NamespaceMode_TARGET:
		const field = "config.linux.security_context.namespace_options.target_id"
		if nsOpts.GetTargetId() == "" {
			return p, nil, fmt.Errorf("%s: required with pid mode TARGET: %w", field, errdefs.ErrInvalidArgument)
		}
		t, err := m.Get(nsOpts.GetTargetId())
		if err != nil {
			return p, nil, fmt.Errorf("%s: %w", field, err)
		}
		if t.SandboxID != sb.ID {
			return p, nil, fmt.Errorf("%s: container %s is in another pod: %w", field, t.ID, errdefs.ErrInvalidArgument)
		}
		if t.State != StateRunning || t.Pid <= 0 {
			return p, nil, fmt.Errorf("%s: container %s is %s, not running: %w", field, t.ID, t.State, errdefs.ErrFailedPrecondition)
		}
		return p, &t, nil
	}
	return p, nil, nil
}

// imagesPresent checks that the images c is made of are still there.
func (m *Manager) imagesPresent(c Container) error {
	ids := []digest.Digest{c.ImageID}
	for _, v := range c.ImageVolumes {
		ids = append(ids, v.ImageID)
	}
	for _, d := range ids {
		if _, err := m.images.Get(d.String()); err != nil {
			return fmt.Errorf("image %s was removed meanwhile: %w", d, err)
		}
	}
	return nil
}

func writeSpec(bundle string, s any) error {
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode OCI spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("write OCI spec: %w", err)
	}
	return nil
}

// mountRootfs mounts the image layers (read-only lower dirs, top first) with
// the container's own upper dir; for a pod in a user namespace, the layers
// idmapped and the upper dir its root's (see userns.go).
func (m *Manager) mountRootfs(id string, layers []digest.Digest, userns *podUserNS) error {
	upper, work := filepath.Join(m.layerDir(id), "upper"), filepath.Join(m.layerDir(id), "work")
	lowers := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		lowers = append(lowers, m.images.LayerDir(layers[i]))
	}
	if len(lowers) == 0 {
		// An image without layers: overlayfs wants at least one lower dir.
		empty := filepath.Join(m.layerDir(id), "empty")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return err
		}
		lowers = append(lowers, empty)
	}
	if userns != nil {
		if err := os.Chown(upper, int(userns.uid), int(userns.gid)); err != nil {
			return fmt.Errorf("give the upper dir to the pod's root: %w", err)
		}
	}
	if err := m.mountOverlay(id, m.rootfsDir(id), lowers, ",upperdir="+upper+",workdir="+work, 0, userns, "rootfs-"); err != nil {
		return fmt.Errorf("mount container rootfs: %w", err)
	}
	return nil
}

// mountOverlay mounts an overlay of lowers (top first) at target, with
// more options after them and mount flags. In a pod with a user namespace
// the lowers are idmapped by it first, named with prefix under the idmap
// dir, and those mounts are removed again once the overlay holds its own
// references (see userns.go).
func (m *Manager) mountOverlay(id, target string, lowers []string, more string, flags uintptr, userns *podUserNS, prefix string) (retErr error) {
	if userns != nil {
		defer func() {
			if err := removeIDMapped(m.layerDir(id)); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("remove idmapped layers: %w", err))
			}
		}()
		var err error
		if lowers, err = m.idmapLayers(id, prefix, lowers, userns); err != nil {
			return err
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + more
	if len(opts) >= unix.Getpagesize() {
		return fmt.Errorf("image has too many layers (%d) for one overlay mount: %w", len(lowers), errdefs.ErrNotImplemented)
	}
	return unix.Mount("overlay", target, "overlay", flags, opts)
}

func unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}
