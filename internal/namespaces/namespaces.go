// Package namespaces creates, pins and removes the namespaces a pod's
// containers share (network, IPC, UTS).
//
// crid runs no pause process: each namespace is kept alive by bind-mounting
// its nsfs file onto a regular file under the pod's state directory, and
// containers join it by that path. The bind mounts outlive crid, so a
// restarted crid finds the namespaces where it left them.
//
// Pinning needs no special mount propagation on the pin directory. `ip netns`
// makes /run/netns a shared bind mount of itself so that pins made later
// propagate into (and are unmounted from) mount namespaces cloned earlier;
// that mattered before Linux 3.18, when a pin copied into another mount
// namespace kept the namespace alive and the file busy. Since 3.18 unlinking
// a mount point detaches the copies in every other mount namespace, so
// Remove, which unmounts and then unlinks, frees the namespace even if a
// process cloned a mount namespace in between. crid runs in the host mount
// namespace, so the pins are visible to runc without propagation.
package namespaces

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Kind names a namespace type, spelled as in /proc/<pid>/ns/.
type Kind string

// The namespace kinds a pod shares among its containers.
const (
	Net Kind = "net"
	IPC Kind = "ipc"
	UTS Kind = "uts"
	// PID is only ever pinned from a process (PinProcess), never created:
	// a PID namespace needs a process to live in.
	PID Kind = "pid"
)

// Pinned holds the bind-mounted paths of a pod's namespaces.
type Pinned map[Kind]string

var cloneFlags = map[Kind]int{
	Net: unix.CLONE_NEWNET,
	IPC: unix.CLONE_NEWIPC,
	UTS: unix.CLONE_NEWUTS,
}

// allKinds is the order Remove walks; it only ever touches these names so
// that a wrong dir cannot make it delete unrelated files.
var allKinds = []Kind{Net, IPC, UTS, PID, User}

// Create makes new namespaces of the given kinds with one unshare on a locked
// OS thread, sets the hostname when UTS is among them, brings up loopback in
// a new network namespace, and bind-mounts each namespace onto dir/<kind>.
// dir is created with mode 0700. On error nothing is left behind.
func Create(dir string, kinds []Kind, hostname string) (_ Pinned, retErr error) {
	flags, err := flagsOf(dir, kinds)
	if err != nil {
		return nil, err
	}
	if flags == 0 {
		return nil, fmt.Errorf("create namespaces in %s: no kinds given", dir)
	}

	madeDir, err := mkdir(dir)
	if err != nil {
		return nil, fmt.Errorf("create namespace dir: %w", err)
	}
	pinned := Pinned{}
	defer undoOnError(&retErr, dir, madeDir, pinned)

	// The files must exist before the thread unshares: creating them is
	// ordinary work that belongs outside the namespace-switched thread.
	for _, k := range kinds {
		p := filepath.Join(dir, string(k))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
		if err != nil {
			return nil, fmt.Errorf("create pin file for %s namespace: %w", k, err)
		}
		_ = f.Close()
		pinned[k] = p
	}

	// The thread is never unlocked: once it has unshared, it is in the
	// pod's namespaces, and returning it to the scheduler would run other
	// goroutines there. Go terminates a thread whose goroutine exits while
	// locked.
	if err := onWorkerThread(func() error { return unshareAndPin(flags, pinned, hostname) }); err != nil {
		return nil, fmt.Errorf("create namespaces in %s: %w", dir, err)
	}
	return pinned, nil
}

// flagsOf are the clone flags of kinds.
func flagsOf(dir string, kinds []Kind) (int, error) {
	flags := 0
	for _, k := range kinds {
		f, ok := cloneFlags[k]
		if !ok {
			return 0, fmt.Errorf("create namespaces in %s: unsupported kind %q", dir, k)
		}
		flags |= f
	}
	return flags, nil
}

// undoOnError removes what a Create that failed (*retErr) made: the pins,
// and dir if it made it.
func undoOnError(retErr *error, dir string, madeDir bool, pinned Pinned) {
	if *retErr == nil {
		return
	}
	for _, p := range pinned {
		unpin(p)
	}
	if madeDir {
		_ = os.Remove(dir)
	}
}

// unshareAndPin runs on a locked thread that is discarded afterwards.
func unshareAndPin(flags int, pinned Pinned, hostname string) error {
	if err := unix.Unshare(flags); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if flags&unix.CLONE_NEWUTS != 0 && hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", hostname, err)
		}
	}
	if flags&unix.CLONE_NEWNET != 0 {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	tid := unix.Gettid()
	for k, p := range pinned {
		src := fmt.Sprintf("/proc/self/task/%d/ns/%s", tid, k)
		if err := unix.Mount(src, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount %s namespace onto %s: %w", k, p, err)
		}
	}
	return nil
}

// loopbackUp sets IFF_UP on lo with two ioctls, which is cheaper than a
// netlink round trip and needs no extra socket protocol.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up lo: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: set flags: %w", err)
	}
	return nil
}

// PinProcess pins the namespace of kind that process pid is in onto
// dir/<kind> and returns that path. Containers then join the namespace by
// the pin, which cannot be reused the way /proc/<pid>/ns/<kind> can once
// the process is gone and its pid taken by another. The process is held by
// a pidfd opened before its namespace file; if it has exited by the time
// the namespace file is open, that file may be another process's and
// nothing is pinned.
func PinProcess(dir string, kind Kind, pid int) (string, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return "", fmt.Errorf("open process %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	nsfd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s namespace of process %d: %w", kind, pid, err)
	}
	defer unix.Close(nsfd)
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return "", fmt.Errorf("process %d exited before its %s namespace was pinned: %w", pid, kind, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create namespace dir: %w", err)
	}
	p := filepath.Join(dir, string(kind))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return "", fmt.Errorf("create pin file: %w", err)
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", nsfd), p, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(p)
		return "", fmt.Errorf("bind-mount %s namespace of process %d onto %s: %w", kind, pid, p, err)
	}
	return p, nil
}

// Alive reports whether every path in pinned is still a mounted namespace.
func Alive(pinned ...string) bool {
	for _, path := range pinned {
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil || st.Type != unix.NSFS_MAGIC {
			return false
		}
	}
	return true
}

// Remove unmounts and deletes the pinned namespace files in dir, then dir
// itself if it is empty. Missing files and a missing dir are not errors, so
// Remove can be retried.
func Remove(dir string) error {
	var errs []error
	for _, k := range allKinds {
		if err := unpin(filepath.Join(dir, string(k))); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, fmt.Errorf("remove namespace dir: %w", err))
	}
	return errors.Join(errs...)
}

// Unpin removes the pin of kind in dir, if there is one.
func Unpin(dir string, kind Kind) error { return unpin(filepath.Join(dir, string(kind))) }

// unpin detaches the bind mount at p and deletes the file. The unlink also
// detaches copies of the mount held by other mount namespaces (Linux ≥ 3.18),
// which is what finally frees the namespace.
func unpin(p string) error {
	// Unmount in a loop: a pin mounted twice (a crash between two
	// Creates on the same dir) would otherwise keep the file busy.
	for {
		err := unix.Unmount(p, unix.MNT_DETACH)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// mkdir creates dir with mode 0700 and reports whether it did, so that a
// failed Create removes only a directory it made.
func mkdir(dir string) (bool, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return false, err
	}
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	return err == nil, err
}

// Do runs fn on a locked OS thread inside the network namespace pinned at
// netnsPath and then switches the thread back. Goroutines that fn starts do
// not run in the namespace. If switching back fails the thread is discarded
// rather than returned to the scheduler.
func Do(netnsPath string, fn func() error) error {
	target, err := os.Open(netnsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer target.Close()

	return onWorkerThread(func() error { return doOnThread(int(target.Fd()), netnsPath, fn) })
}

// onWorkerThread runs fn in a new goroutine locked to an OS thread that is
// not the process's main thread, and waits for it. fn unlocks the thread
// itself if it leaves it clean; otherwise the thread dies with the goroutine.
//
// The main thread is avoided because Go cannot terminate it: a locked
// goroutine exiting there wedges it instead, and it would stay in the pod's
// namespaces. Worse, /proc/self/ns/* names the main thread's namespaces, so
// anything reading them (including tests) would see the pod's.
func onWorkerThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			errc <- fn()
			return
		}
		// While this goroutine holds the main thread, the one started
		// here must get another thread.
		go func() {
			runtime.LockOSThread()
			errc <- fn()
		}()
		err := <-errc
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

func doOnThread(target int, netnsPath string, fn func() error) error {
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current netns: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", netnsPath, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked so Go discards it with the goroutine.
		return errors.Join(fnErr, fmt.Errorf("return from netns %s: %w", netnsPath, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}
