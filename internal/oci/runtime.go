package oci

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Handler is one configured OCI runtime (a CRI "runtime handler").
type Handler struct {
	// Name is the CRI runtime handler name.
	Name string
	// Path is the OCI runtime binary (runc or compatible).
	Path string
	// Root is the runtime's state root (`runc --root`). Each handler needs
	// its own, or two handlers would see each other's containers.
	Root string
	// Args are extra global arguments put before every runtime subcommand.
	Args []string
	// SystemdCgroup makes the runtime use the systemd cgroup driver.
	SystemdCgroup bool
}

// globalArgs are the arguments that precede a runtime subcommand.
func (h Handler) globalArgs() []string {
	var args []string
	if h.Root != "" {
		args = append(args, "--root", h.Root)
	}
	if h.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	return append(args, h.Args...)
}

// runtimeEnv is crid's environment for the OCI runtime, without what
// systemd gave crid itself: with NOTIFY_SOCKET set, runc takes the
// container for a Type=notify service and proxies a notify socket in its
// state dir (which fails, or makes runc start wait for the container's
// READY=1); LISTEN_* are crid's socket activation.
func runtimeEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "LISTEN_FDS=") ||
			strings.HasPrefix(kv, "LISTEN_PID=") || strings.HasPrefix(kv, "LISTEN_FDNAMES=")
	})
}

// Config configures a Runtime.
type Config struct {
	// ConmonPath is the conmon binary; "" looks up "conmon" in PATH.
	ConmonPath string
	// StateDir is crid's state directory; per-container files live in
	// StateDir/containers/<id>.
	StateDir string
	// ExitDir is where the monitor writes one exit file per container,
	// named after the container ID and holding its exit code.
	ExitDir string
	// Log receives the package's logs; nil means slog.Default().
	Log *slog.Logger
	// Monitor replaces the default conmon monitor (for other monitors or tests).
	Monitor Monitor
}

// Runtime runs containers of all handlers of one crid. It is safe for
// concurrent use.
type Runtime struct {
	stateDir string
	exitDir  string
	log      *slog.Logger
	monitor  Monitor
	exits    *exitWatcher
	monitors *monitorWatcher
	rescans  chan struct{} // buffered 1, see Rescans
}

// New returns a Runtime. It creates the state and exit directories and starts
// watching the exit directory and the monitors (see WatchMonitor).
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" || cfg.ExitDir == "" {
		return nil, errors.New("oci: StateDir and ExitDir are required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	r := &Runtime{
		stateDir: cfg.StateDir,
		exitDir:  cfg.ExitDir,
		log:      log,
		monitor:  cfg.Monitor,
		rescans:  make(chan struct{}, 1),
	}
	if err := os.MkdirAll(cfg.ExitDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.ExitDir, err)
	}
	// The bundles' dir must be searchable by anyone: the root of a
	// container in a user namespace is nobody on the host, and the runtime,
	// as that root, reaches the rootfs through it. What is in a bundle is
	// not readable by others. Chmod: older crids made it 0700.
	bundles := filepath.Join(cfg.StateDir, "containers")
	if err := os.MkdirAll(bundles, 0o711); err != nil {
		return nil, fmt.Errorf("create %s: %w", bundles, err)
	}
	if err := os.Chmod(bundles, 0o711); err != nil {
		return nil, err
	}
	if r.monitor == nil {
		path := cfg.ConmonPath
		if path == "" {
			p, err := exec.LookPath("conmon")
			if err != nil {
				return nil, fmt.Errorf("find conmon: %w", err)
			}
			path = p
		}
		r.monitor = &Conmon{Path: path, Log: log}
	}
	mw, err := newMonitorWatcher(log, r.requestRescan)
	if err != nil {
		return nil, err
	}
	w, err := newExitWatcher(cfg.ExitDir, r.isContainer, r.requestRescan, log)
	if err != nil {
		mw.close()
		return nil, err
	}
	r.exits, r.monitors = w, mw
	return r, nil
}

// Check reports why the runtime cannot start monitors: the monitor binary
// does not resolve. It is asked on every CRI Status, so a node whose conmon
// is missing reports its runtime not ready instead of failing every pod.
func (r *Runtime) Check() error {
	if c, ok := r.monitor.(*Conmon); ok {
		if _, err := exec.LookPath(c.Path); err != nil {
			return fmt.Errorf("container monitor %q: %w", c.Path, err)
		}
	}
	return nil
}

// Close stops watching the exit directory and the monitors and closes
// their file descriptors. Containers and their monitors are not affected.
// Safe to call more than once.
func (r *Runtime) Close() error {
	return errors.Join(r.exits.close(), r.monitors.close())
}

// containerDir is the per-container state directory.
func (r *Runtime) containerDir(id string) string {
	return filepath.Join(r.stateDir, "containers", id)
}

// isContainer reports whether id has a state directory; it filters the
// exit directory's temporary files and foreign entries.
func (r *Runtime) isContainer(id string) bool {
	if id == "" || strings.HasPrefix(id, ".") {
		return false
	}
	_, err := os.Stat(r.containerDir(id))
	return err == nil
}

// validID rejects IDs that would escape the state directory.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}

// bundleDir is the bundle of a container: conmon's FIFOs and attach socket
// live there.
func (r *Runtime) bundleDir(id string) string {
	dir := r.containerDir(id)
	if target, err := os.Readlink(filepath.Join(dir, bundleLink)); err == nil {
		return target
	}
	return dir
}

// AttachSocket returns the path of the monitor's attach socket.
func (r *Runtime) AttachSocket(id string) string {
	return r.monitor.AttachSocket(r.bundleDir(id))
}

// MonitorPID returns the monitor's pid from its pid file, if the file is
// there and that process still is the container's monitor.
func (r *Runtime) MonitorPID(id string) (int, bool) {
	return r.monitor.PID(r.containerDir(id), id)
}

// ReopenLog asks the monitor to reopen the container's log file (after the
// kubelet rotated it). It fails when the monitor is gone.
func (r *Runtime) ReopenLog(ctx context.Context, id string) error {
	if _, ok := r.MonitorPID(id); !ok {
		return fmt.Errorf("reopen log of container %s: monitor is not running", id)
	}
	logPath, _ := os.Readlink(filepath.Join(r.containerDir(id), logLink))
	if err := r.monitor.ReopenLog(ctx, r.bundleDir(id), logPath); err != nil {
		return fmt.Errorf("reopen log of container %s: %w", id, err)
	}
	return nil
}

// readPIDFile reads a pid file as written by conmon and runc.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %s: %q", path, b)
	}
	return pid, nil
}
