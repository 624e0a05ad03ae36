package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// errNotDevice marks a path that is not a character or block device.
var errNotDevice = errors.New("not a device node")

// setDevices adds the CRI devices and the device cgroup rules. The rules
// start by denying everything; runc itself adds and allows its default
// devices (/dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom,
// /dev/tty, /dev/pts/*, /dev/ptmx), as containerd relies on. A privileged
// container gets every host device and may use any.
func setDevices(s *specs.Spec, devs []*runtimeapi.Device, privileged bool) error {
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	if privileged {
		host, err := hostDevices()
		if err != nil {
			return fmt.Errorf("list host devices: %w", err)
		}
		s.Linux.Devices = host
		rules = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	for i, d := range devs {
		field := fmt.Sprintf("devices[%d]", i)
		if d == nil {
			return invalid(field, "null device")
		}
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" || len(perms) > 3 {
			return invalid(field+".permissions", "%q is not a combination of r, w and m", d.GetPermissions())
		}
		if d.GetHostPath() == "" || !filepath.IsAbs(d.GetHostPath()) {
			return invalid(field+".host_path", "%q is not an absolute path", d.GetHostPath())
		}
		ctrPath := d.GetContainerPath()
		if ctrPath == "" {
			ctrPath = d.GetHostPath()
		}
		ctrPath, err := cleanContainerPath(field+".container_path", ctrPath)
		if err != nil {
			return err
		}
		hostPath, err := filepath.EvalSymlinks(d.GetHostPath())
		if err != nil {
			return fmt.Errorf("%w: %s.host_path: %w", errdefs.ErrInvalidArgument, field, err)
		}
		found, err := devicesAt(hostPath, ctrPath)
		if err != nil {
			return fmt.Errorf("%w: %s.host_path: %w", errdefs.ErrInvalidArgument, field, err)
		}
		for _, dev := range found {
			// A privileged container already has every host device; the CRI
			// one replaces the entry with its path, as runc rejects duplicates.
			s.Linux.Devices = slices.DeleteFunc(s.Linux.Devices, func(o specs.LinuxDevice) bool { return o.Path == dev.Path })
			s.Linux.Devices = append(s.Linux.Devices, dev)
			rules = append(rules, specs.LinuxDeviceCgroup{
				Allow: true, Type: dev.Type, Major: &dev.Major, Minor: &dev.Minor, Access: perms,
			})
		}
	}
	s.Linux.Resources.Devices = rules
	return nil
}

// devicesAt returns the device at path, or every device below it when it is
// a directory (a CRI device may name a directory such as /dev/snd).
func devicesAt(path, ctrPath string) ([]specs.LinuxDevice, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		d, err := deviceFromPath(path)
		if err != nil {
			return nil, err
		}
		d.Path = ctrPath
		return []specs.LinuxDevice{d}, nil
	}
	// Walking is only for device directories: a request naming "/" must not
	// make crid crawl the host.
	if path != "/dev" && !strings.HasPrefix(path, "/dev/") {
		return nil, fmt.Errorf("%s: directory outside /dev: %w", path, errNotDevice)
	}
	var out []specs.LinuxDevice
	err = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if p != path && skipDevDir(e.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		d, err := deviceFromPath(p)
		if errors.Is(err, errNotDevice) || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		d.Path = filepath.Join(ctrPath, rel)
		out = append(out, d)
		return nil
	})
	return out, err
}

// skipDevDir says which /dev subdirectories are not devices to copy: runc
// mounts its own pts, shm and mqueue, and the rest are container-manager
// bookkeeping (the same list containerd skips).
func skipDevDir(name string) bool {
	switch name {
	case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
		return true
	}
	return false
}

// hostDevices lists the host's device nodes for a privileged container,
// except /dev/console: runc sets that up for terminals itself.
func hostDevices() ([]specs.LinuxDevice, error) {
	devs, err := devicesAt("/dev", "/dev")
	if err != nil {
		return nil, err
	}
	out := devs[:0]
	for _, d := range devs {
		if d.Path != "/dev/console" {
			out = append(out, d)
		}
	}
	return out, nil
}

// deviceFromPath describes the character or block device at path (not
// following symlinks: a link in /dev is not a second device).
func deviceFromPath(path string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return specs.LinuxDevice{}, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, fmt.Errorf("%s: %w", path, errNotDevice)
	}
	mode := fs.FileMode(st.Mode &^ unix.S_IFMT)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Type: typ, Path: path,
		Major: int64(unix.Major(uint64(st.Rdev))), Minor: int64(unix.Minor(uint64(st.Rdev))),
		FileMode: &mode, UID: &uid, GID: &gid,
	}, nil
}
