// Package apparmor owns crid's side of AppArmor on the host: telling whether
// the host has it, loading crid's default container profile (crid-default)
// and telling whether a profile is loaded. Applying a profile to a container
// is runc's job: crid only names it in the OCI spec (see
// internal/container/spec).
//
// The default profile comes from github.com/moby/profiles/apparmor, the
// template Docker, containerd (cri-containerd.apparmor.d) and CRI-O
// (crio-default) share, loaded the same way (apparmor_parser -Kr on a
// generated file): containers then get the confinement operators already
// know, and fixes to it reach crid with a dependency update instead of being
// copied by hand.
package apparmor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	profiles "github.com/moby/profiles/apparmor"
)

// DefaultProfile is the name of the profile RuntimeDefault applies.
const DefaultProfile = "crid-default"

// parser is the binary that loads profiles into the kernel; the library runs
// it by this name, found through PATH.
const parser = "apparmor_parser"

// host is where the kernel's AppArmor state is read and how profiles are
// loaded. Tests build their own with fake files and a fake loader.
type host struct {
	// enabledFile reads "Y" when the kernel enforces AppArmor.
	enabledFile string
	// profilesFile lists the loaded profiles, "<name> (<mode>)" a line.
	profilesFile string
	lookPath     func(file string) (string, error)
	// install generates the default profile under that name and loads it.
	install func(name string) error
}

var system = host{
	enabledFile:  "/sys/module/apparmor/parameters/enabled",
	profilesFile: "/sys/kernel/security/apparmor/profiles",
	lookPath:     exec.LookPath,
	install:      profiles.InstallDefault,
}

// Enabled reports whether containers can be confined by AppArmor on this
// host: the kernel has it enabled, securityfs shows its profiles, and
// apparmor_parser is in PATH to load crid's default profile. As in
// containerd, a host lacking any of them is a host without AppArmor.
func Enabled() bool { return system.enabled() }

// IsLoaded reports whether a profile of that name is loaded in the kernel.
func IsLoaded(name string) (bool, error) { return system.isLoaded(name) }

// EnsureDefault loads DefaultProfile unless it is loaded already (by an
// earlier crid, whose containers may still run under it: it is left as
// it is, as containerd does). Call it once at start on a host
// where Enabled is true. The library runs apparmor_parser without a
// context, so ctx is only checked before it runs.
func EnsureDefault(ctx context.Context) error { return system.ensureDefault(ctx) }

// Host is this host's AppArmor, as spec.Input.AppArmor wants it. Hand it to
// the spec builder only when Enabled is true.
type Host struct{}

// IsLoaded is the package's IsLoaded.
func (Host) IsLoaded(name string) (bool, error) { return IsLoaded(name) }

func (h host) enabled() bool {
	b, err := os.ReadFile(h.enabledFile)
	if err != nil || !strings.HasPrefix(string(b), "Y") {
		return false
	}
	if _, err := os.Stat(h.profilesFile); err != nil {
		return false
	}
	_, err = h.lookPath(parser)
	return err == nil
}

// isLoaded does what the library's IsLoaded does, on h.profilesFile.
func (h host) isLoaded(name string) (bool, error) {
	f, err := os.Open(h.profilesFile)
	if err != nil {
		return false, fmt.Errorf("read loaded AppArmor profiles: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, _, ok := strings.Cut(sc.Text(), " "); ok && n == name {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read loaded AppArmor profiles: %w", err)
	}
	return false, nil
}

func (h host) ensureDefault(ctx context.Context) error {
	if ok, err := h.isLoaded(DefaultProfile); err != nil || ok {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load AppArmor profile %s: %w", DefaultProfile, err)
	}
	if err := h.install(DefaultProfile); err != nil {
		return fmt.Errorf("load AppArmor profile %s: %w", DefaultProfile, err)
	}
	// apparmor_parser does not always exit non-zero when it loads nothing
	// (critest checks its stderr for that reason): better to fail here
	// than at every container create.
	ok, err := h.isLoaded(DefaultProfile)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("load AppArmor profile %s: %s succeeded but the profile is not loaded", DefaultProfile, parser)
	}
	return nil
}
