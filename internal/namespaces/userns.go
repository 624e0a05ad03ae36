package namespaces

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// User is a pod's user namespace (hostUsers: false). It is made together
// with the pod's other namespaces, which it then owns: the pod's root may
// set its hostname and sysctls, never the host's.
const User Kind = "user"

// IDMap is one line of a uid_map or gid_map: Size IDs from ContainerID on
// inside the namespace are HostID on outside.
type IDMap struct {
	ContainerID, HostID, Size uint32
}

// UserNS are the ID maps of a user namespace to create.
type UserNS struct {
	UIDs, GIDs []IDMap
}

// A process in a multi-threaded program (every Go program) can neither
// unshare nor enter a user namespace, so a user namespace can only be made
// by a new process cloned into it. The holder is that process: crid's own
// binary, started traced (PTRACE_TRACEME), so that the kernel stops it
// right after its exec and it never runs a single instruction. It holds the
// new namespaces while they are pinned and is then killed. Starting a
// process that runs (crid re-executed, ~30 ms of Go start-up) would make a
// pod in a user namespace that much slower to start; this costs ~5 ms.

// CreateWithUser is Create for a pod with a user namespace of its own: the
// namespaces of kinds are created inside a new user namespace with the
// given maps and owned by it, and all of them, the user namespace included
// (at dir/user), are pinned. hostname and loopback are set up as Create
// does. On error nothing is left behind.
func CreateWithUser(dir string, kinds []Kind, hostname string, userns UserNS) (_ Pinned, retErr error) {
	if len(userns.UIDs) == 0 || len(userns.GIDs) == 0 {
		return nil, fmt.Errorf("create user namespace in %s: no uid or gid map", dir)
	}
	flags, err := flagsOf(dir, kinds)
	if err != nil {
		return nil, err
	}
	flags |= unix.CLONE_NEWUSER
	madeDir, err := mkdir(dir)
	if err != nil {
		return nil, fmt.Errorf("create namespace dir: %w", err)
	}
	pinned := Pinned{}
	defer undoOnError(&retErr, dir, madeDir, pinned)

	// The holder's tracer is this thread: it alone starts, kills and reaps
	// it, as os/exec asks of a traced child.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	holder, err := startHolder(flags, userns)
	if err != nil {
		return nil, fmt.Errorf("create namespaces in %s: %w", dir, err)
	}
	defer stopHolder(holder)
	for _, k := range append([]Kind{User}, kinds...) {
		p := filepath.Join(dir, string(k))
		if err := pinFrom(fmt.Sprintf("/proc/%d/ns/%s", holder.Process.Pid, k), p); err != nil {
			return nil, err
		}
		pinned[k] = p
	}

	// crid, root in the parent user namespace, may enter the new network
	// and UTS namespaces (a user namespace it could not enter).
	if err := onWorkerThread(func() error { return setUpPinned(pinned, hostname) }); err != nil {
		return nil, fmt.Errorf("set up namespaces in %s: %w", dir, err)
	}
	return pinned, nil
}

// startHolder starts the namespace holder in new namespaces. When it
// returns, the maps are written (os/exec writes them before the child may
// exec) and the holder is stopped after its exec.
func startHolder(flags int, userns UserNS) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("namespace holder: %w", err)
	}
	// Should it ever run (it cannot while traced), an unknown argument
	// makes crid exit at once.
	cmd := exec.Command(self, "--namespace-holder-never-runs")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Ptrace:      true,
		Cloneflags:  uintptr(flags),
		UidMappings: sysMaps(userns.UIDs),
		GidMappings: sysMaps(userns.GIDs),
		// The container's root calls setgroups (runc sets the process's
		// groups): the namespace must allow it.
		GidMappingsEnableSetgroups: true,
		Pdeathsig:                  unix.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start namespace holder (a traced child: kernel.yama.ptrace_scope 3 forbids it): %w", err)
	}
	return cmd, nil
}

func sysMaps(maps []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(maps))
	for i, m := range maps {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// pinFrom bind-mounts the namespace file src onto a new file at p.
func pinFrom(src, p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create pin file %s: %w", p, err)
	}
	_ = f.Close()
	if err := unix.Mount(src, p, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(p)
		return fmt.Errorf("bind-mount %s onto %s: %w", src, p, err)
	}
	return nil
}

// setUpPinned sets the hostname in the pinned UTS namespace and brings up
// loopback in the pinned network namespace. It runs on a thread that is
// discarded afterwards.
func setUpPinned(pinned Pinned, hostname string) error {
	enter := func(k Kind, flag int) error {
		fd, err := unix.Open(pinned[k], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s namespace: %w", k, err)
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, flag); err != nil {
			return fmt.Errorf("enter %s namespace: %w", k, err)
		}
		return nil
	}
	if _, ok := pinned[UTS]; ok && hostname != "" {
		if err := enter(UTS, unix.CLONE_NEWUTS); err != nil {
			return err
		}
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", hostname, err)
		}
	}
	if _, ok := pinned[Net]; ok {
		if err := enter(Net, unix.CLONE_NEWNET); err != nil {
			return err
		}
		return loopbackUp()
	}
	return nil
}

// IDMapSupported tells whether the filesystem at path can be mounted
// idmapped (Linux 5.12, and the filesystem's support), which containers in
// a user namespace need for their rootfs layers. It makes a throwaway user
// namespace and an idmapped clone of path that is never attached.
func IDMapSupported(path string) error {
	m := []IDMap{{ContainerID: 0, HostID: 65536, Size: 65536}}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	holder, err := startHolder(unix.CLONE_NEWUSER, UserNS{UIDs: m, GIDs: m})
	if err != nil {
		return err
	}
	defer stopHolder(holder)
	userns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", holder.Process.Pid))
	if err != nil {
		return err
	}
	defer userns.Close()
	tree, err := IDMappedTree(path, userns)
	if err != nil {
		return err
	}
	return unix.Close(tree)
}

// IDMappedTree returns a detached clone of the mount at path, idmapped by
// the user namespace userns: a file stored as owned by ID X appears owned
// by the host ID that userns maps X to, so an image's root-owned files
// belong to the namespace's root. The caller closes it, or attaches it with
// move_mount.
func IDMappedTree(path string, userns *os.File) (int, error) {
	tree, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("clone mount %s: %w", path, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(tree)
		return -1, fmt.Errorf("idmap mount %s: %w", path, err)
	}
	return tree, nil
}

// stopHolder kills the holder (crid started it: its PID is its own) and
// reaps it. Killing a stopped child of ours cannot fail.
func stopHolder(holder *exec.Cmd) {
	_ = holder.Process.Kill()
	_ = holder.Wait() // "signal: killed"
}
