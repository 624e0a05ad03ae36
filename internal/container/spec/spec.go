// Package spec builds the OCI runtime spec (runc's config.json) of a container
// from its CRI ContainerConfig, its pod's PodSandboxConfig and its image config.
//
// It is a pure translation: the only things it reads are the image's
// /etc/passwd and /etc/group under the rootfs, the host paths of CRI mounts and
// devices (stat, symlink resolution, /proc/self/mountinfo for propagation
// checks), for privileged containers the host's /dev, and for CDI devices
// what the caller's CDIInjector reads (CDI spec files, the device nodes they
// name). Everything else the host knows (capability bounding set, minimum
// oom_score_adj, namespace paths, cgroups path, AppArmor's loaded profiles,
// whether SELinux is on) is passed in by the caller.
//
// Bad input is reported as an error wrapping errdefs.ErrInvalidArgument (or
// errdefs.ErrFailedPrecondition / ErrNotImplemented for what this host or crid
// cannot do) with the offending CRI field named in the message.
package spec

import (
	"errors"
	"fmt"
	"maps"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// NamespacePaths are the paths (e.g. /proc/<pid>/ns/net or a pinned bind
// mount) of the pod's namespaces the container joins. An empty path means the
// pod does not provide one; see Input for what happens then.
type NamespacePaths struct {
	Net, IPC, UTS, PID string
	// User is the pod's user namespace, for a pod with userns_options mode
	// POD (see PodUserNS); the pod's other namespaces are then its.
	User string
}

// Input is everything Build needs. Only Config and Sandbox come from the
// request; the rest are facts the caller established.
type Input struct {
	// ID is the container ID.
	ID string
	// SandboxID is the pod sandbox ID, recorded in the
	// io.kubernetes.cri.sandbox-id annotation.
	SandboxID string
	// Config is the CreateContainerRequest's config.
	Config *runtimeapi.ContainerConfig
	// Sandbox is the pod's config.
	Sandbox *runtimeapi.PodSandboxConfig
	// Image is the config of the container's image.
	Image ocispec.ImageConfig
	// ImageName is recorded in the io.kubernetes.cri.image-name annotation.
	// Empty means Config.Image.UserSpecifiedImage, else Config.Image.Image.
	ImageName string
	// RootFS is the absolute path of the mounted rootfs; /etc/passwd and
	// /etc/group are read from it (confined to it, symlinks included).
	RootFS string

	// Namespaces are the pod namespaces to join.
	//   - Net, IPC: a path is joined. Empty: for a pod with host network/IPC
	//     (NamespaceMode NODE) there is no namespace entry, so the host's is
	//     used; otherwise runc creates a new one.
	//   - UTS: a path is joined (hostname already set there). Empty: host UTS
	//     for host-network pods, else a new UTS namespace with the pod's
	//     hostname.
	//   - PID: the container's pid mode (its own NamespaceOptions, else the
	//     pod's) decides. NODE: no entry (host). POD and TARGET: join PID (for
	//     TARGET the caller passes the target container's pid ns path); if
	//     PID is empty a new pid namespace is created. CONTAINER: new one.
	Namespaces NamespacePaths
	// CgroupsPath is runc's cgroupsPath, computed by the caller.
	CgroupsPath string
	// HostCapabilities are the capability names ("CAP_CHOWN", ...) in the
	// host's bounding set (see HostCapabilities()). The container never asks
	// for more, because runc fails the whole create otherwise. Nil means no
	// restriction (every capability this package knows).
	HostCapabilities []string
	// MinOOMScoreAdj is the lowest oom_score_adj crid may set; lower requests
	// are raised to it.
	MinOOMScoreAdj int
	// ShmPath, ResolvConfPath, HostsPath, HostnamePath are pod files bind
	// mounted at /dev/shm, /etc/resolv.conf, /etc/hosts and /etc/hostname
	// unless a CRI mount has that destination. Empty means no such mount
	// (for /dev/shm: a private tmpfs).
	ShmPath, ResolvConfPath, HostsPath, HostnamePath string
	// SeccompProfileRoot is the directory relative Localhost seccomp profile
	// references are resolved against.
	SeccompProfileRoot string
	// SupportsRRO says the OCI runtime can make bind mounts recursively
	// read-only ("rro": runc >= 1.1 on kernel >= 5.12 with mount_setattr).
	// It must match RuntimeHandlerFeatures.RecursiveReadOnlyMounts reported
	// in Status: the kubelet only asks for rro when told it is supported.
	SupportsRRO bool
	// SwapLimitSupported says the memory cgroup has a swap limit file
	// (memory.memsw.limit_in_bytes on v1, memory.swap.max on v2). runc fails
	// to start a container with a swap limit otherwise, so without it no
	// swap limit is set.
	SwapLimitSupported bool
	// HugetlbSupported says runc can set hugepage limits (the hugetlb cgroup
	// controller is there). Without it runc fails the create ("cannot set
	// hugetlb limit"), so hugepage limits are dropped, as containerd
	// (tolerate_missing_hugetlb_controller, the default) and CRI-O do: the
	// kubelet sends them for every container, zero when none are requested.
	HugetlbSupported bool
	// AppArmor is the host's AppArmor (apparmor.Host where
	// apparmor.Enabled()); nil means the host has none. Then RuntimeDefault
	// (also what an unset profile means) is a no-op and a Localhost
	// profile fails the create. See appArmorProfile.
	AppArmor AppArmorHost
	// SELinuxEnabled says the host has SELinux enabled (/sys/fs/selinux/enforce
	// exists). crid applies no SELinux labels, so then a request with
	// SELinux options is refused; without SELinux they are ignored.
	SELinuxEnabled bool
	// ImageVolumes are the dirs to bind for the config's image mounts (see
	// ImageMounts), by index in Config.Mounts: each image mounted
	// read-only by the caller, or its sub path resolved inside it. An image
	// mount without one fails with FailedPrecondition.
	ImageVolumes map[int]string
	// CDI resolves the CDI devices the container asks for (CDI_devices and
	// cdi.k8s.io/ annotations) from the CDI spec files; their edits are
	// applied last but for the seccomp filter. Nil: a container that asks
	// for one fails with FailedPrecondition.
	CDI CDIInjector
}

// Annotations crid sets on every container, named as containerd names them so
// that tools reading config.json (NRI plugins, monitoring) find them.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	containerTypeContainer     = "container"
)

// invalid returns an error wrapping errdefs.ErrInvalidArgument naming field.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", errdefs.ErrInvalidArgument, field, fmt.Sprintf(format, args...))
}

// Build returns the OCI spec of the container and the identity its process
// runs as, ready for ContainerStatus.User (Uid, Gid and the full supplementary
// group list, primary gid included, sorted).
func Build(in Input) (*specs.Spec, *runtimeapi.ContainerUser, error) {
	if in.Config == nil {
		return nil, nil, invalid("config", "missing")
	}
	if in.Sandbox == nil {
		return nil, nil, invalid("sandbox_config", "missing")
	}
	sc := in.Config.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if privileged && !in.Sandbox.GetLinux().GetSecurityContext().GetPrivileged() {
		return nil, nil, invalid("linux.security_context.privileged", "privileged container in a non-privileged pod")
	}
	if err := checkSELinux(in); err != nil {
		return nil, nil, err
	}

	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: in.RootFS, Readonly: sc.GetReadonlyRootfs()},
		Process: &specs.Process{Terminal: in.Config.GetTty()},
		Linux: &specs.Linux{
			CgroupsPath: in.CgroupsPath,
			Resources:   &specs.LinuxResources{},
		},
	}

	var err error
	if s.Process.Args, err = processArgs(in.Config, &in.Image); err != nil {
		return nil, nil, err
	}
	s.Process.Env = processEnv(in.Config, &in.Image, in.Sandbox.GetHostname())
	s.Process.Cwd = workingDir(in.Config, &in.Image)

	usr, err := resolveUser(in.RootFS, sc, in.Image.User)
	if err != nil {
		return nil, nil, err
	}
	s.Process.User = usr

	if s.Process.Capabilities, err = capabilities(sc, in.HostCapabilities); err != nil {
		return nil, nil, err
	}
	// no_new_privs is off unless asked for: the kubelet sends it for
	// allowPrivilegeEscalation=false, and setuid binaries must work otherwise.
	s.Process.NoNewPrivileges = sc.GetNoNewPrivs()
	if s.Process.ApparmorProfile, err = appArmorProfile(sc, privileged, in.AppArmor); err != nil {
		return nil, nil, err
	}

	if err := setNamespaces(s, in); err != nil {
		return nil, nil, err
	}
	if err := setSysctls(s, in.Sandbox.GetLinux().GetSysctls()); err != nil {
		return nil, nil, err
	}
	if err := setMounts(s, in, privileged); err != nil {
		return nil, nil, err
	}
	if err := setDevices(s, in.Config.GetDevices(), privileged); err != nil {
		return nil, nil, err
	}
	if err := setResources(s, in.Config.GetLinux().GetResources(), in.SwapLimitSupported); err != nil {
		return nil, nil, err
	}
	DropUnsupportedLimits(s.Linux.Resources, in.HugetlbSupported)
	if s.Process.OOMScoreAdj, err = oomScoreAdj(in.Config.GetLinux().GetResources(), in.MinOOMScoreAdj); err != nil {
		return nil, nil, err
	}
	// After the devices, mounts, env and user: CDI edits add to them.
	if err := setCDIDevices(s, in); err != nil {
		return nil, nil, err
	}

	if privileged {
		// Privileged containers see the host as it is: nothing masked, no
		// filter, as Docker and containerd do.
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
	} else {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = procPaths(sc)
		// Computed last: the default profile's rules depend on the bounding set.
		if s.Linux.Seccomp, err = seccompProfile(sc, s, in.SeccompProfileRoot); err != nil {
			return nil, nil, err
		}
	}
	s.Annotations = annotations(in)
	return s, containerUser(s.Process.User), nil
}

func annotations(in Input) map[string]string {
	a := make(map[string]string, len(in.Config.GetAnnotations())+7)
	// CRI annotations first, so that crid's own cannot be spoofed by them.
	maps.Copy(a, in.Config.GetAnnotations())
	image := in.ImageName
	if image == "" {
		image = in.Config.GetImage().GetUserSpecifiedImage()
	}
	if image == "" {
		image = in.Config.GetImage().GetImage()
	}
	md := in.Sandbox.GetMetadata()
	a[AnnotationContainerType] = containerTypeContainer
	a[AnnotationSandboxID] = in.SandboxID
	a[AnnotationSandboxNamespace] = md.GetNamespace()
	a[AnnotationSandboxUID] = md.GetUid()
	a[AnnotationSandboxName] = md.GetName()
	a[AnnotationContainerName] = in.Config.GetMetadata().GetName()
	a[AnnotationImageName] = image
	return a
}

func containerUser(u specs.User) *runtimeapi.ContainerUser {
	groups := make([]int64, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		groups = append(groups, int64(g))
	}
	return &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
		Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups,
	}}
}

// errNoCommand is returned when neither the CRI config nor the image says what
// to run.
var errNoCommand = errors.New("no command specified")
