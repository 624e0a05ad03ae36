package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runtimeError is a failed runtime command with its message.
type runtimeError struct {
	args []string
	err  error
	msg  string
}

func (e *runtimeError) Error() string {
	return fmt.Sprintf("%s: %v: %s", strings.Join(e.args, " "), e.err, e.msg)
}

func (e *runtimeError) Unwrap() error { return e.err }

// notExist reports whether the runtime said the container is unknown.
func (e *runtimeError) notExist() bool {
	return strings.Contains(e.msg, "does not exist") || strings.Contains(e.msg, "not exist")
}

// runtimeCmd builds `<runtime> <global args> <args...>`.
func runtimeCmd(ctx context.Context, h Handler, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, h.Path, append(h.globalArgs(), args...)...)
	cmd.Env = runtimeEnv()
	cmd.WaitDelay = time.Second
	return cmd
}

// runRuntime runs a runtime command and returns its stdout; stdin may be nil.
func runRuntime(ctx context.Context, h Handler, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := runtimeCmd(ctx, h, args...)
	cmd.Stdin = stdin
	return runCmd(ctx, cmd, h, args)
}

// runCmd runs cmd, a runtimeCmd of h with args, and returns its stdout, or
// its failure with the runtime's message.
func runCmd(ctx context.Context, cmd *exec.Cmd, h Handler, args []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, &runtimeError{args: append([]string{filepath.Base(h.Path)}, args...), err: err, msg: runtimeMessage(stderr.String())}
	}
	return stdout.Bytes(), nil
}

var logrusMsg = regexp.MustCompile(`msg="((?:[^"\\]|\\.)*)"`)

// runtimeMessage extracts the messages of runc's logrus text lines
// (time=... level=error msg="..."), which is what users need to read.
func runtimeMessage(s string) string {
	var msgs []string
	for _, m := range logrusMsg.FindAllStringSubmatch(s, -1) {
		if u, err := strconv.Unquote(`"` + m[1] + `"`); err == nil {
			msgs = append(msgs, u)
		} else {
			msgs = append(msgs, m[1])
		}
	}
	if len(msgs) == 0 {
		return strings.TrimSpace(s)
	}
	return strings.Join(msgs, "; ")
}

// CreateOptions describes a container to create.
type CreateOptions struct {
	ID      string
	Handler Handler
	// Bundle holds config.json. conmon also puts its control FIFOs and the
	// attach socket there, so it must exist until Delete.
	Bundle string
	// LogPath is the CRI log file; "" discards the container's output.
	// It must not contain ':' (conmon's --log-path syntax).
	LogPath                    string
	Terminal, Stdin, StdinOnce bool
	// CgroupParent, if set, is a cgroupfs path (e.g. /kubepods/pod<uid>)
	// that conmon itself is moved into before it starts runc, like
	// CRI-O's conmon_cgroup = "pod": the monitor's memory is then charged
	// to the pod. It is joined in every mounted hierarchy and created
	// where missing. "" leaves conmon in crid's cgroup. The container's
	// own cgroup comes from the spec's cgroupsPath.
	CgroupParent string
	// Restore, if set, restores the container from a CRIU checkpoint
	// (`runtime restore`) instead of creating it: it is running, not
	// created, once Create returns.
	Restore *RestoreOptions
}

// RestoreOptions say where a container's checkpoint is.
type RestoreOptions struct {
	// ImageDir holds CRIU's images of the checkpointed container.
	ImageDir string
	// CRIUDir is as in CheckpointOptions.
	CRIUDir string
}

// Create starts the monitor, which runs `runtime create`, and returns the
// container's init pid once it is created. On failure everything is undone
// (monitor killed, runtime state deleted, state directory removed), also
// when ctx is cancelled.
func (r *Runtime) Create(ctx context.Context, opts CreateOptions) (pid int, retErr error) {
	if err := validID(opts.ID); err != nil {
		return 0, err
	}
	log := r.log.With("container", opts.ID, "handler", opts.Handler.Name)
	dir := r.containerDir(opts.ID)
	_, statErr := os.Stat(dir)
	// The caller may keep the bundle in the state dir; only a dir we made
	// ourselves is removed on failure.
	madeDir := os.IsNotExist(statErr)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("create state dir of container %s: %w", opts.ID, err)
	}
	defer func() {
		if retErr == nil {
			return
		}
		// Detached: a cancelled request must not leave half a container.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := r.cleanup(cctx, opts.ID, opts.Handler, madeDir); err != nil {
			log.Warn("clean up after failed create", "err", err)
		}
	}()
	if err := r.recordPaths(dir, opts); err != nil {
		return 0, fmt.Errorf("create container %s: %w", opts.ID, err)
	}
	// A stale exit file from an earlier container with this ID would
	// look like an immediate exit.
	_ = os.Remove(filepath.Join(r.exitDir, opts.ID))

	pid, err := r.monitor.Create(ctx, MonitorRequest{CreateOptions: opts, ContainerDir: dir, ExitDir: r.exitDir})
	if err != nil {
		if opts.Restore != nil {
			// conmon runs the restore with the bundle as CRIU's work dir.
			if msg := criuErrors(filepath.Join(opts.Bundle, "restore.log")); msg != "" {
				err = fmt.Errorf("%w; CRIU: %s", err, msg)
			}
			return 0, fmt.Errorf("restore container %s: %w", opts.ID, err)
		}
		return 0, fmt.Errorf("create container %s: %w", opts.ID, err)
	}
	log.Debug("container created", "pid", pid)
	// Without this watch a monitor that dies leaves no exit file and
	// crid would never hear of the container again.
	if err := r.WatchMonitor(opts.ID); err != nil {
		log.Warn("cannot watch the container's monitor", "err", err)
	}
	return pid, nil
}

// recordPaths remembers the bundle and log path for calls that only get
// the ID (ReopenLog, AttachSocket), also after a crid restart.
func (r *Runtime) recordPaths(dir string, opts CreateOptions) error {
	for name, target := range map[string]string{bundleLink: opts.Bundle, logLink: opts.LogPath} {
		link := filepath.Join(dir, name)
		_ = os.Remove(link)
		if target == "" || (name == bundleLink && filepath.Clean(target) == dir) {
			continue
		}
		abs, err := filepath.Abs(target)
		if err != nil {
			return err
		}
		if err := os.Symlink(abs, link); err != nil {
			return err
		}
	}
	return nil
}

const (
	bundleLink = "bundle.link"
	logLink    = "log.link"
)

// cleanup kills the monitor and removes all traces of a container.
func (r *Runtime) cleanup(ctx context.Context, id string, h Handler, removeDir bool) error {
	// Before the monitor is made to exit: that end is no news.
	r.Forget(id)
	var errs []error
	if _, err := runRuntime(ctx, h, nil, "delete", "--force", id); err != nil {
		var re *runtimeError
		if !errors.As(err, &re) || !re.notExist() {
			errs = append(errs, err)
		}
	}
	if pid, ok := r.MonitorPID(id); ok {
		// The container is gone, so conmon is about to exit; give it a
		// moment to write its exit file, then make sure.
		if !waitGone(ctx, pid, 2*time.Second) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(ctx, pid, time.Second)
		}
	}
	if err := os.Remove(filepath.Join(r.exitDir, id)); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	dir := r.containerDir(id)
	// conmon's FIFOs and attach socket stay behind in the bundle.
	if bundle := r.bundleDir(id); bundle != dir {
		for _, f := range []string{"ctl", "winsz", "attach"} {
			_ = os.Remove(filepath.Join(bundle, f))
		}
	}
	if removeDir {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	} else {
		for _, f := range []string{conmonPIDFile, initPIDFile, "exit", "oom", bundleLink, logLink, "ctl", "winsz", "attach"} {
			_ = os.Remove(filepath.Join(dir, f))
		}
	}
	return errors.Join(errs...)
}

// waitGone waits until pid no longer runs (exited or zombie). conmon is
// not our child, so neither wait nor pidfd polling of an exit is reliable
// across restarts; /proc is.
func waitGone(ctx context.Context, pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for delay := 100 * time.Microsecond; ; delay = min(delay*2, 10*time.Millisecond) {
		if !processRunning(pid) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(delay)
	}
}

// processRunning reports whether pid exists and is not a zombie.
func processRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z' && b[i+2] != 'X'
}

// Start starts a created container (`runtime start`).
func (r *Runtime) Start(ctx context.Context, id string, h Handler) error {
	if _, err := runRuntime(ctx, h, nil, "start", id); err != nil {
		return fmt.Errorf("start container %s: %w", id, r.mapErr(err))
	}
	return nil
}

// Pause freezes the container's processes (the cgroup freezer).
func (r *Runtime) Pause(ctx context.Context, id string, h Handler) error {
	if _, err := runRuntime(ctx, h, nil, "pause", id); err != nil {
		return fmt.Errorf("pause container %s: %w", id, r.mapErr(err))
	}
	return nil
}

// Resume thaws a paused container.
func (r *Runtime) Resume(ctx context.Context, id string, h Handler) error {
	if _, err := runRuntime(ctx, h, nil, "resume", id); err != nil {
		return fmt.Errorf("resume container %s: %w", id, r.mapErr(err))
	}
	return nil
}

// Kill sends sig to the container's init, or with all to all its processes.
func (r *Runtime) Kill(ctx context.Context, id string, h Handler, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	args = append(args, id, strconv.Itoa(int(sig)))
	if _, err := runRuntime(ctx, h, nil, args...); err != nil {
		return fmt.Errorf("kill container %s with %s: %w", id, sig, r.mapErr(err))
	}
	return nil
}

// Delete force-deletes the container from the runtime (killing it if it
// runs), forgets the watch of its monitor (see Forget), waits for the
// monitor to exit and removes the container's state directory and exit
// file. Deleting an unknown container succeeds.
func (r *Runtime) Delete(ctx context.Context, id string, h Handler) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := r.cleanup(ctx, id, h, true); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// State is a container's state as the runtime reports it.
type State struct {
	// Status is created, running, paused or stopped.
	Status string
	// Pid is the init pid (0 once stopped).
	Pid int
}

// State returns the runtime's view of a container; an unknown container is
// an errdefs.ErrNotFound.
func (r *Runtime) State(ctx context.Context, id string, h Handler) (State, error) {
	out, err := runRuntime(ctx, h, nil, "state", id)
	if err != nil {
		return State{}, fmt.Errorf("state of container %s: %w", id, r.mapErr(err))
	}
	var s struct {
		Status string `json:"status"`
		Pid    int    `json:"pid"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return State{}, fmt.Errorf("state of container %s: parse %q: %w", id, out, err)
	}
	return State{Status: s.Status, Pid: s.Pid}, nil
}

// UpdateResources changes the container's cgroup limits
// (`runtime update --resources -`).
func (r *Runtime) UpdateResources(ctx context.Context, id string, h Handler, res *specs.LinuxResources) error {
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	if _, err := runRuntime(ctx, h, bytes.NewReader(b), "update", "--resources", "-", id); err != nil {
		return fmt.Errorf("update container %s: %w", id, r.mapErr(err))
	}
	return nil
}

// mapErr turns the runtime's "does not exist" into errdefs.ErrNotFound.
func (r *Runtime) mapErr(err error) error {
	var re *runtimeError
	if errors.As(err, &re) && re.notExist() {
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	}
	return err
}
