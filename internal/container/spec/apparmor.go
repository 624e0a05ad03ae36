package spec

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/apparmor"
)

// AppArmorHost is the host's AppArmor as Build needs it: apparmor.Host on a
// host where apparmor.Enabled() (and apparmor.EnsureDefault has loaded
// apparmor.DefaultProfile).
type AppArmorHost interface {
	// IsLoaded reports whether a profile of that name is loaded in the
	// kernel.
	IsLoaded(name string) (bool, error)
}

const (
	appArmorField           = "linux.security_context.apparmor"
	appArmorDeprecatedField = "linux.security_context.apparmor_profile"
)

// appArmorSecurityProfile returns the container's profile and the field it
// came from: the SecurityProfile field, else the deprecated string (the
// kubelet sends both, the same profile), else nil. The pod-level profile is
// not consulted: the kubelet copies it into every container's context.
func appArmorSecurityProfile(sc *runtimeapi.LinuxContainerSecurityContext) (*runtimeapi.SecurityProfile, string, error) {
	if p := sc.GetApparmor(); p != nil {
		return p, appArmorField, nil
	}
	const field = appArmorDeprecatedField
	name := sc.GetApparmorProfile() //nolint:staticcheck // deprecated but still sent by the kubelet
	switch {
	case name == "":
		return nil, field, nil
	case name == profileRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, field, nil
	case name == profileUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, field, nil
	case strings.HasPrefix(name, profileLocalhost):
		return &runtimeapi.SecurityProfile{
			ProfileType:  runtimeapi.SecurityProfile_Localhost,
			LocalhostRef: strings.TrimPrefix(name, profileLocalhost),
		}, field, nil
	}
	return nil, field, invalid(field, "unknown profile %q", name)
}

// appArmorProfile returns the name of the AppArmor profile the container
// runs under, for Process.ApparmorProfile; "" is none (unconfined).
//
// As in containerd: no profile set means RuntimeDefault; RuntimeDefault is
// crid's default profile, except for privileged containers, which get none
// unless one is named; Unconfined is none; Localhost is that profile, which
// must be loaded (runc would fail at start otherwise, with a less helpful
// message). On a host without AppArmor (host nil) RuntimeDefault is a
// no-op, as there is nothing to confine with, but Localhost is an error:
// a container that asked for a profile by name must not run without it.
func appArmorProfile(sc *runtimeapi.LinuxContainerSecurityContext, privileged bool, host AppArmorHost) (string, error) {
	p, field, err := appArmorSecurityProfile(sc)
	if err != nil {
		return "", err
	}
	if p == nil {
		p = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	}
	if p.GetProfileType() != runtimeapi.SecurityProfile_Localhost && p.GetLocalhostRef() != "" {
		return "", invalid(field, "localhost_ref set for profile type %s", p.GetProfileType())
	}
	var name string
	switch p.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		return "", nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		if host == nil || privileged {
			return "", nil
		}
		name = apparmor.DefaultProfile
	case runtimeapi.SecurityProfile_Localhost:
		// critest, and clients copying the deprecated form, send the
		// "localhost/" prefix in the ref too.
		name = strings.TrimPrefix(p.GetLocalhostRef(), profileLocalhost)
		if name == "" {
			return "", invalid(field, "empty localhost_ref")
		}
		if host == nil {
			return "", fmt.Errorf("%w: %s: AppArmor profile %q requested, but AppArmor is not enabled on this host",
				errdefs.ErrFailedPrecondition, field, name)
		}
	default:
		return "", invalid(field, "unknown profile type %d", p.GetProfileType())
	}
	loaded, err := host.IsLoaded(name)
	switch {
	case err != nil:
		return "", fmt.Errorf("%s: check AppArmor profile %q: %w", field, name, err)
	case loaded:
		return name, nil
	case p.GetProfileType() == runtimeapi.SecurityProfile_RuntimeDefault:
		// crid loads it at start; something unloaded it since.
		return "", fmt.Errorf("%w: %s: crid's default AppArmor profile %s is not loaded (restart crid to load it)",
			errdefs.ErrFailedPrecondition, field, name)
	}
	return "", invalid(field, "AppArmor profile %q is not loaded", name)
}
