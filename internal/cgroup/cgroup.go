// Package cgroup owns where crid's containers and their monitors live in
// the cgroup tree, for either cgroup driver, and moves a monitor there.
//
// With the cgroupfs driver the names are cgroupfs paths below the pod's
// cgroup parent. With the systemd driver the pod's parent is a slice the
// kubelet made (kubepods-burstable-pod<uid>.slice), a container is runc's
// "<slice>:crid:<id>" (the scope crid-<id>.scope in that slice), and a
// monitor is "<slice>:crid-conmon:<id>", a scope of its own that crid asks
// systemd for over D-Bus (through opencontainers/cgroups' systemd manager,
// the code runc itself uses). Either way conmon sits beside its container,
// never in a cgroup that must delegate controllers (cgroup v2 allows no
// process in those), its memory counts against the pod, and a restart of
// crid's own service never takes it along.
package cgroup

import (
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/cgroups/systemd"
)

// Driver is how cgroups are made: by crid and runc writing cgroupfs, or by
// systemd.
type Driver string

// The drivers, named as the kubelet's cgroupDriver setting names them.
const (
	Cgroupfs Driver = "cgroupfs"
	Systemd  Driver = "systemd"
)

// Detect returns the driver a node's kubelet uses by default on this host:
// systemd when systemd booted it, else cgroupfs.
func Detect() Driver {
	if systemd.IsRunningSystemd() {
		return Systemd
	}
	return Cgroupfs
}

// Name prefixes: crid-<id> is the container, crid-conmon-<id> its monitor.
const (
	containerPrefix = "crid"
	monitorPrefix   = "crid-conmon"
)

// Defaults for a pod the kubelet gave no cgroup parent (crictl, critest).
const (
	defaultParent = "/crid"
	defaultSlice  = "system.slice"
)

// Layout names cgroups for one driver.
type Layout struct{ Driver Driver }

// Container is the container's cgroupsPath for its OCI runtime.
func (l Layout) Container(podParent, id string) string {
	return l.name(podParent, containerPrefix, id)
}

// Monitor is where the container's conmon runs, in the same form.
func (l Layout) Monitor(podParent, id string) string {
	return l.name(podParent, monitorPrefix, id)
}

func (l Layout) name(podParent, prefix, id string) string {
	if l.Driver == Systemd {
		slice := path.Base(podParent)
		if podParent == "" {
			slice = defaultSlice
		}
		return slice + ":" + prefix + ":" + id
	}
	if podParent == "" {
		podParent = defaultParent
	}
	return path.Join(podParent, prefix+"-"+id)
}

// Dir is the cgroupfs path (relative to a hierarchy's root) of a
// container's, monitor's or pod's cgroup, in either form: what stats read.
func Dir(name string) (string, error) {
	if slice, prefix, id, ok := parseSystemd(name); ok {
		dir, err := systemd.ExpandSlice(slice)
		if err != nil {
			return "", err
		}
		return path.Join(dir, prefix+"-"+id+".scope"), nil
	}
	if strings.HasSuffix(name, ".slice") && !strings.Contains(name, "/") {
		return systemd.ExpandSlice(name)
	}
	return name, nil
}

// parseSystemd splits runc's systemd form "slice:prefix:name".
func parseSystemd(name string) (slice, prefix, id string, ok bool) {
	parts := strings.Split(name, ":")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" || !strings.HasSuffix(parts[0], ".slice") {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// Join moves pid (a monitor that has not forked yet) into the cgroup name,
// creating it.
func Join(pid int, name string) error {
	if slice, prefix, id, ok := parseSystemd(name); ok {
		m, err := scopeManager(slice, prefix, id)
		if err != nil {
			return err
		}
		if err := m.Apply(pid); err != nil {
			return fmt.Errorf("start systemd scope %s-%s.scope in %s: %w", prefix, id, slice, err)
		}
		return nil
	}
	return joinFS(pid, name)
}

// Remove removes the cgroup name; one that is already gone is not an
// error. A systemd scope goes away by itself once empty: stopping it here
// covers a monitor that was killed with processes left.
func Remove(name string) error {
	if slice, prefix, id, ok := parseSystemd(name); ok {
		m, err := scopeManager(slice, prefix, id)
		if err != nil {
			return err
		}
		return m.Destroy()
	}
	return removeFS(name)
}

func scopeManager(slice, prefix, id string) (cgroups.Manager, error) {
	// SkipDevices: the monitor gets no device rules (it needs /dev/ptmx
	// and /dev/null), and no limits: it is accounted to the pod's slice.
	return manager.New(&cgroups.Cgroup{
		Systemd: true, Parent: slice, ScopePrefix: prefix, Name: id,
		Resources: &cgroups.Resources{SkipDevices: true},
	})
}
