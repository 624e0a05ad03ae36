package spec

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultMaskedPaths and defaultReadonlyPaths hide host information and
// kernel knobs from unprivileged containers (containerd's lists).
var (
	defaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
		"/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// procPaths returns the masked and read-only paths. The kubelet sends both
// lists for ProcMount=Default (the same defaults) and empty lists for
// Unmasked. Protobuf cannot tell an empty list from an absent one, so a nil
// list gets the defaults: Unmasked is only allowed for pods in a user
// namespace, which crid refuses anyway, and keeping /proc/kcore etc. hidden
// from clients that send nothing (critest, crictl) is the safe reading. A
// non-nil list (possible from Go callers) replaces the defaults as is.
func procPaths(sc *runtimeapi.LinuxContainerSecurityContext) (masked, readonly []string) {
	masked, readonly = sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if masked == nil {
		masked = defaultMaskedPaths
	}
	if readonly == nil {
		readonly = defaultReadonlyPaths
	}
	return slices.Clone(masked), slices.Clone(readonly)
}

// Prefixes of the deprecated seccomp_profile_path and apparmor_profile
// string forms.
const (
	profileRuntimeDefault = "runtime/default"
	profileDockerDefault  = "docker/default"
	profileUnconfined     = "unconfined"
	profileLocalhost      = "localhost/"
)

// seccompSecurityProfile returns the container's profile: the
// SecurityProfile field, else the deprecated path string, else none
// (unconfined, as the CRI defines an unset profile). The pod-level profile is
// not consulted: the kubelet copies it into every container's context.
func seccompSecurityProfile(sc *runtimeapi.LinuxContainerSecurityContext) (*runtimeapi.SecurityProfile, error) {
	if p := sc.GetSeccomp(); p != nil {
		return p, nil
	}
	path := sc.GetSeccompProfilePath() //nolint:staticcheck // deprecated but still sent by older kubelets
	switch {
	case path == "":
		return nil, nil
	case path == profileUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, nil
	case path == profileRuntimeDefault || path == profileDockerDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, nil
	case strings.HasPrefix(path, profileLocalhost):
		return &runtimeapi.SecurityProfile{
			ProfileType:  runtimeapi.SecurityProfile_Localhost,
			LocalhostRef: strings.TrimPrefix(path, profileLocalhost),
		}, nil
	}
	return nil, invalid("linux.security_context.seccomp_profile_path", "unknown profile %q", path)
}

// seccompProfile translates the container's seccomp profile for s, whose
// capabilities must already be set: the default and JSON profiles enable
// some syscalls only when the matching capability is in the bounding set.
func seccompProfile(sc *runtimeapi.LinuxContainerSecurityContext, s *specs.Spec, root string) (*specs.LinuxSeccomp, error) {
	p, err := seccompSecurityProfile(sc)
	if err != nil || p == nil {
		return nil, err
	}
	const field = "linux.security_context.seccomp"
	if p.GetProfileType() != runtimeapi.SecurityProfile_Localhost && p.GetLocalhostRef() != "" {
		return nil, invalid(field, "localhost_ref set for profile type %s", p.GetProfileType())
	}
	switch p.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		out, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return nil, fmt.Errorf("build default seccomp profile: %w", err)
		}
		return out, nil
	case runtimeapi.SecurityProfile_Localhost:
		ref := strings.TrimPrefix(p.GetLocalhostRef(), profileLocalhost)
		if ref == "" {
			return nil, invalid(field, "empty localhost_ref")
		}
		if !filepath.IsAbs(ref) {
			if root == "" {
				return nil, invalid(field, "relative localhost_ref %q and no seccomp profile root", ref)
			}
			ref = filepath.Join(root, ref)
		}
		body, err := readProfile(ref)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: read profile: %w", errdefs.ErrInvalidArgument, field, err)
		}
		out, err := seccomp.LoadProfile(body, s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: profile %s: %w", errdefs.ErrInvalidArgument, field, ref, err)
		}
		return out, nil
	}
	return nil, invalid(field, "unknown profile type %d", p.GetProfileType())
}

// maxProfileSize bounds a Localhost profile; Docker's default is ~25 KiB.
const maxProfileSize = 1 << 20

// readProfile reads a profile file, refusing anything but a regular file of
// sane size: the reference comes from the request, and a FIFO, a device or
// /dev/zero would otherwise hang the create. O_NONBLOCK keeps the open
// itself from waiting for a FIFO's writer; the checks are on the opened fd,
// so the path cannot be swapped between them and the read.
func readProfile(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	if st.Size() > maxProfileSize {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxProfileSize)
	}
	// The file may grow after the fstat: read one byte past the bound to
	// tell.
	body, err := io.ReadAll(io.LimitReader(f, maxProfileSize+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(body) > maxProfileSize {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxProfileSize)
	}
	return string(body), nil
}
