package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crierrors "k8s.io/cri-api/pkg/errors"
)

// defaultMounts are the filesystems every container gets (containerd's and
// runc's defaults, without /run: images own it).
func defaultMounts(privileged bool) []specs.Mount {
	// Privileged containers may write to /sys and to their cgroups.
	mode := "ro"
	if privileged {
		mode = "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", mode}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", mode}},
	}
}

// podFileMounts are the pod-level files the caller prepared; a CRI mount with
// the same destination wins over them.
func podFileMounts(in Input) []*runtimeapi.Mount {
	ro := in.Config.GetLinux().GetSecurityContext().GetReadonlyRootfs()
	var out []*runtimeapi.Mount
	for _, f := range []struct {
		src, dst string
		ro       bool
	}{
		// Files the image owns are read-only when the rootfs is, like
		// containerd does; /dev/shm stays writable.
		{in.HostnamePath, "/etc/hostname", ro},
		{in.HostsPath, "/etc/hosts", ro},
		{in.ResolvConfPath, "/etc/resolv.conf", ro},
		{in.ShmPath, "/dev/shm", false},
	} {
		if f.src != "" {
			out = append(out, &runtimeapi.Mount{HostPath: f.src, ContainerPath: f.dst, Readonly: f.ro,
				Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE})
		}
	}
	return out
}

// cleanContainerPath validates a mount destination: absolute, not "/", and
// without ".." components, which could point a bind mount outside the rootfs
// or confuse the order of mounts.
func cleanContainerPath(field, p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", invalid(field, "container path %q is not absolute", p)
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return "", invalid(field, "container path %q contains \"..\"", p)
	}
	p = filepath.Clean(p)
	if p == "/" {
		return "", invalid(field, "cannot mount over the container's root")
	}
	return p, nil
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

// setMounts merges the default, pod-file and CRI mounts: a CRI mount replaces
// a default or pod-file one with the same destination (a CRI /dev replaces
// everything under /dev too), and all are ordered by depth so that a parent
// is mounted before what is mounted inside it.
func setMounts(s *specs.Spec, in Input, privileged bool) error {
	cri := in.Config.GetMounts()
	dsts := map[string]bool{}
	var mounts []specs.Mount
	var lookup mountLookup
	userns, err := PodUserNS(in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return err
	}
	for i, m := range cri {
		field := fmt.Sprintf("mounts[%d]", i)
		if m == nil {
			return invalid(field, "null mount")
		}
		dst, err := cleanContainerPath(field+".container_path", m.GetContainerPath())
		if err != nil {
			return err
		}
		if dsts[dst] {
			return invalid(field+".container_path", "duplicate mount point %q", dst)
		}
		dsts[dst] = true
		var imageSrc string
		_, isImage, err := checkImageMount(field, m)
		if err != nil {
			return err
		} else if isImage {
			if imageSrc, err = imageSource(field, i, in); err != nil {
				return err
			}
		}
		bm, err := bindMount(field, m, dst, imageSrc, in.SupportsRRO, &lookup)
		if err != nil {
			return err
		}
		uids, gids, err := mountIDMappings(field, m, userns)
		if err != nil {
			return err
		}
		// An image volume is crid's overlay, which cannot be idmapped:
		// in a pod with a user namespace its layers are idmapped under it
		// instead (the caller's ImageVolumes), as the rootfs's are.
		if !isImage {
			bm.UIDMappings, bm.GIDMappings = uids, gids
		}
		if bm.Options != nil && slices.Contains(bm.Options, "rshared") {
			s.Linux.RootfsPropagation = "rshared"
		} else if slices.Contains(bm.Options, "rslave") && s.Linux.RootfsPropagation != "rshared" {
			s.Linux.RootfsPropagation = "rslave"
		}
		mounts = append(mounts, bm)
	}
	for _, m := range podFileMounts(in) {
		if dsts[m.GetContainerPath()] || dsts["/dev"] && strings.HasPrefix(m.GetContainerPath(), "/dev/") {
			continue
		}
		bm, err := bindMount("pod file "+m.GetContainerPath(), m, m.GetContainerPath(), "", false, &lookup)
		if err != nil {
			return err
		}
		dsts[m.GetContainerPath()] = true
		mounts = append(mounts, bm)
	}
	var out []specs.Mount
	for _, m := range defaultMounts(privileged) {
		if dsts[m.Destination] || dsts["/dev"] && strings.HasPrefix(m.Destination, "/dev/") {
			continue
		}
		out = append(out, m)
	}
	out = append(out, mounts...)
	slices.SortStableFunc(out, func(a, b specs.Mount) int { return depth(a.Destination) - depth(b.Destination) })
	s.Mounts = out
	return nil
}

// bindMount translates one CRI mount: of its host path, or, for a mount of
// an image, of imageSrc (the image the caller mounted, checked by
// checkImageMount).
func bindMount(field string, m *runtimeapi.Mount, dst, imageSrc string, rroSupported bool, lookup *mountLookup) (specs.Mount, error) {
	src := imageSrc
	if src == "" {
		var err error
		if src, err = hostSource(field, m); err != nil {
			return specs.Mount{}, err
		}
	}

	// Checked before propagation so the error names the real conflict.
	switch {
	case m.GetRecursiveReadOnly() && !m.GetReadonly():
		return specs.Mount{}, invalid(field+".recursive_read_only", "requires readonly")
	case m.GetRecursiveReadOnly() && m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		// A read-only attribute cannot be applied to mounts that appear later
		// through propagation.
		return specs.Mount{}, invalid(field+".recursive_read_only", "requires private propagation, got %s", m.GetPropagation())
	case m.GetRecursiveReadOnly() && !rroSupported:
		return specs.Mount{}, fmt.Errorf("%w: %w: %s.recursive_read_only: the OCI runtime does not support recursive read-only mounts (host_path %q)",
			crierrors.ErrRROUnsupported, errdefs.ErrFailedPrecondition, field, m.GetHostPath())
	}

	opts := []string{"rbind"}
	switch p := m.GetPropagation(); p {
	case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		opts = append(opts, "rprivate")
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		// Host mounts can only reach the container if the source mount
		// receives propagation itself.
		if err := lookup.requirePropagation(src, false); err != nil {
			return specs.Mount{}, fmt.Errorf("%w: %s.propagation: %w", errdefs.ErrFailedPrecondition, field, err)
		}
		opts = append(opts, "rslave")
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		if err := lookup.requirePropagation(src, true); err != nil {
			return specs.Mount{}, fmt.Errorf("%w: %s.propagation: %w", errdefs.ErrFailedPrecondition, field, err)
		}
		opts = append(opts, "rshared")
	default:
		return specs.Mount{}, invalid(field+".propagation", "unknown propagation %d", p)
	}

	switch {
	case m.GetRecursiveReadOnly():
		opts = append(opts, "rro")
	case m.GetReadonly():
		opts = append(opts, "ro")
	default:
		opts = append(opts, "rw")
	}
	opts, err := addBindOptions(field+".mount_options", opts, m.GetMountOptions())
	if err != nil {
		return specs.Mount{}, err
	}
	// selinux_relabel is ignored: this host has no SELinux.
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}, nil
}

// mountIDMappings are the maps of an idmapped mount: the kubelet asks for
// one (uid_mappings and gid_mappings) for each volume of a pod in a user
// namespace, with the pod's maps, so that files the host's root owns
// belong to the pod's root. Only the pod's own maps are taken: the runtime
// idmaps a mount by the container's user namespace.
func mountIDMappings(field string, m *runtimeapi.Mount, pod *UserNS) (uids, gids []specs.LinuxIDMapping, _ error) {
	if len(m.GetUidMappings()) == 0 && len(m.GetGidMappings()) == 0 {
		return nil, nil, nil
	}
	if pod == nil {
		return nil, nil, invalid(field, "uid_mappings and gid_mappings need a pod with a user namespace (userns_options mode POD)")
	}
	uids, err := idMapping(field+".uid_mappings", m.GetUidMappings())
	if err != nil {
		return nil, nil, err
	}
	gids, err = idMapping(field+".gid_mappings", m.GetGidMappings())
	if err != nil {
		return nil, nil, err
	}
	if uids[0] != pod.UIDs[0] || gids[0] != pod.GIDs[0] {
		return nil, nil, invalid(field, "uid_mappings and gid_mappings differ from the pod's user namespace")
	}
	return uids, gids, nil
}

// hostSource is the host path of a CRI mount, which must exist.
func hostSource(field string, m *runtimeapi.Mount) (string, error) {
	if m.GetHostPath() == "" {
		return "", invalid(field+".host_path", "empty")
	}
	if !filepath.IsAbs(m.GetHostPath()) {
		return "", invalid(field+".host_path", "%q is not absolute", m.GetHostPath())
	}
	// The kubelet creates DirectoryOrCreate volumes itself; a missing path is
	// a caller error, not something to create behind its back. Symlinks are
	// resolved so runc binds what the host path points to.
	src, err := filepath.EvalSymlinks(m.GetHostPath())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", invalid(field+".host_path", "%q does not exist", m.GetHostPath())
		}
		return "", fmt.Errorf("%w: %s.host_path: resolve %q: %w", errdefs.ErrInvalidArgument, field, m.GetHostPath(), err)
	}
	return src, nil
}

// bindOptions are the mount_options (KEP-5855) a CRI mount may add to its
// bind mount, each with its group: at most one of a group may be given.
// They are the flags that only take away from what the container can do
// through the mount (the Kubernetes API allows noexec, nodev and nosuid)
// and the access-time policy. Their opposites (exec, suid, dev) are not
// taken: they could only lift a restriction the host put on the source,
// which is not the container's to lift. Read-only and propagation have
// fields of their own, and a bind mount takes no filesystem data.
var bindOptions = map[string]string{
	"noexec": "noexec", "nosuid": "nosuid", "nodev": "nodev", "nodiratime": "nodiratime",
	"noatime": "atime", "relatime": "atime", "strictatime": "atime",
}

// addBindOptions appends the mount_options to opts (runc remounts the bind
// mount with them), each once, and refuses any other option.
func addBindOptions(field string, opts, extra []string) ([]string, error) {
	groups := map[string]string{}
	for i, o := range extra {
		f := fmt.Sprintf("%s[%d]", field, i)
		group, ok := bindOptions[o]
		switch {
		case ok:
		case o == "ro" || o == "rw" || o == "rro":
			return nil, invalid(f, "%q: set readonly (and recursive_read_only) instead", o)
		case slices.Contains([]string{"private", "rprivate", "slave", "rslave", "shared", "rshared"}, o):
			return nil, invalid(f, "%q: set propagation instead", o)
		default:
			return nil, invalid(f, "%q is not a bind mount option crid applies (noexec, nosuid, nodev, noatime, relatime, strictatime, nodiratime)", o)
		}
		if prev, dup := groups[group]; dup {
			if prev == o {
				continue
			}
			return nil, invalid(f, "%q conflicts with %q", o, prev)
		}
		groups[group] = o
		opts = append(opts, o)
	}
	return opts, nil
}

// mountLookup reads /proc/self/mountinfo once per Build, and only when a
// mount asks for propagation.
type mountLookup struct {
	infos []*mountinfo.Info
	err   error
	read  bool
}

// requirePropagation checks that the mount holding path is shared (or, when
// !shared, at least a slave), as containerd does: otherwise "rshared" or
// "rslave" in the container would silently propagate nothing.
func (l *mountLookup) requirePropagation(path string, shared bool) error {
	if !l.read {
		l.infos, l.err = mountinfo.GetMounts(nil)
		l.read = true
	}
	if l.err != nil {
		return fmt.Errorf("read mountinfo: %w", l.err)
	}
	mi := mountOf(l.infos, path)
	if mi == nil {
		return fmt.Errorf("no mount holds %q", path)
	}
	for _, o := range strings.Fields(mi.Optional) {
		if strings.HasPrefix(o, "shared:") || !shared && strings.HasPrefix(o, "master:") {
			return nil
		}
	}
	if shared {
		return fmt.Errorf("path %q is mounted on %q but it is not a shared mount", path, mi.Mountpoint)
	}
	return fmt.Errorf("path %q is mounted on %q but it is not a shared or slave mount", path, mi.Mountpoint)
}

// mountOf returns the mount path lives on: the deepest mount point above it,
// the last one listed when several are stacked on the same point.
func mountOf(infos []*mountinfo.Info, path string) *mountinfo.Info {
	var best *mountinfo.Info
	for _, mi := range infos {
		mp := mi.Mountpoint
		if !(path == mp || mp == "/" || strings.HasPrefix(path, mp+"/")) {
			continue
		}
		if best == nil || len(mp) >= len(best.Mountpoint) {
			best = mi
		}
	}
	return best
}
