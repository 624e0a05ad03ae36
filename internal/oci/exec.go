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
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecResult is the outcome of ExecSync.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
}

// TerminalSize is a terminal's size in characters.
type TerminalSize struct {
	Width, Height uint16
}

// ExecOptions are the stdio and limits of one Exec.
type ExecOptions struct {
	// Stdin, if set, is copied to the process; its EOF closes the
	// process's stdin (without a TTY).
	Stdin io.Reader
	// Stdout and Stderr receive the output; nil discards it. With Tty
	// everything arrives on Stdout and Stderr must be nil.
	Stdout, Stderr io.Writer
	// Tty gives the process a terminal.
	Tty bool
	// Resize carries terminal sizes (Tty only); nil means none.
	Resize <-chan TerminalSize
	// Timeout 0 means none.
	Timeout time.Duration
}

// maxExecOutput caps each captured stream, like the kubelet's
// MaxExecSyncOutput; the rest is discarded.
const maxExecOutput = 16 << 20

// ExecSync runs p in the container and captures its output: Exec with two
// buffers. timeout 0 means none. On timeout (or ctx cancellation) the
// process and its descendants are killed and reaped before ExecSync
// returns an error wrapping context.DeadlineExceeded (or ctx.Err()).
func (r *Runtime) ExecSync(ctx context.Context, id string, h Handler, p *specs.Process, timeout time.Duration) (ExecResult, error) {
	stdout := &limitedBuffer{max: maxExecOutput}
	stderr := &limitedBuffer{max: maxExecOutput}
	code, err := r.Exec(ctx, id, h, p, ExecOptions{Stdout: stdout, Stderr: stderr, Timeout: timeout})
	return ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code}, err
}

// ErrClientGone is returned by Exec when writing output failed: the client
// went away, so the process was killed.
var ErrClientGone = errors.New("output stream closed")

// Exec runs p (its args, user, env, cwd, capabilities and security
// settings; Terminal is taken from opts) in the container with the given
// stdio and returns its exit code (128+signal for a signal death).
//
// `runc exec` runs in the foreground, not under conmon: no extra process
// per exec, and runc is the exec'd process's parent and a child subreaper,
// so once we SIGKILL the pid from --pid-file runc reaps it and exits, and
// its exit code is the process's. crid itself need not be a subreaper.
// Descendants the process forked are killed too, but once orphaned inside
// the container's pid namespace they are reaped by the container's init.
//
// With a TTY, runc's own stdio is a pseudo-terminal crid opened: runc only
// hands a console master over --console-socket when it detaches (then the
// process would be orphaned to init, outside crid's reach, and its exit
// code lost), so runc relays between that terminal and the container's;
// SIGWINCH to runc makes it copy the size across.
func (r *Runtime) Exec(ctx context.Context, id string, h Handler, p *specs.Process, opts ExecOptions) (int32, error) {
	if err := validID(id); err != nil {
		return 0, err
	}
	proc := *p
	proc.Terminal = opts.Tty
	proc.ConsoleSize = nil
	specPath, pidPath, err := r.writeExecSpec(id, &proc)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	defer os.Remove(specPath)
	defer os.Remove(pidPath)

	args := append(h.globalArgs(), "exec", "--process", specPath, "--pid-file", pidPath)
	if opts.Tty {
		args = append(args, "--tty")
	}
	// Not CommandContext: killing runc would orphan the exec'd process.
	cmd := exec.Command(h.Path, append(args, id)...)
	cmd.Env = runtimeEnv()
	// runc's own errors (container not running) go to its stderr; keep
	// them apart from the process's output.
	runcErr := &limitedBuffer{max: 64 << 10}
	s, err := newExecStdio(cmd, opts, runcErr)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	if err := cmd.Start(); err != nil {
		s.abort()
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	s.started()
	waitCh := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		s.finish()
		waitCh <- err
	}()
	if opts.Tty && opts.Resize != nil {
		go s.resizeLoop(cmd.Process, opts.Resize, waitCh)
	}

	var expired <-chan time.Time
	if opts.Timeout > 0 {
		t := time.NewTimer(opts.Timeout)
		defer t.Stop()
		expired = t.C
	}
	var waitErr error
	select {
	case waitErr = <-waitCh:
	case <-expired:
		r.killExec(id, cmd, pidPath, waitCh)
		return 0, fmt.Errorf("exec in container %s: timed out after %s: %w", id, opts.Timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		r.killExec(id, cmd, pidPath, waitCh)
		return 0, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	case <-s.gone:
		r.killExec(id, cmd, pidPath, waitCh)
		return 0, fmt.Errorf("exec in container %s: %w", id, ErrClientGone)
	}

	if waitErr != nil {
		ee, ok := waitErr.(*exec.ExitError)
		if !ok {
			return 0, fmt.Errorf("exec in container %s: %w", id, waitErr)
		}
		if _, err := os.Stat(pidPath); err != nil {
			// No pid file: runc failed before the process ran (container
			// not running, bad spec); its exit code means nothing.
			msg := runcErr.String()
			if stderr, ok := opts.Stderr.(*limitedBuffer); ok && msg == "" {
				msg = stderr.String()
			}
			return 0, fmt.Errorf("exec in container %s: %w", id, r.mapErr(&runtimeError{
				args: []string{filepath.Base(h.Path), "exec"}, err: waitErr, msg: runtimeMessage(msg),
			}))
		}
		if ee.ExitCode() < 0 {
			// runc itself died by a signal.
			return 128 + int32(ee.Sys().(syscall.WaitStatus).Signal()), nil
		}
		return int32(ee.ExitCode()), nil
	}
	return 0, nil
}

// writeExecSpec writes the process spec for `runc exec --process`.
func (r *Runtime) writeExecSpec(id string, proc *specs.Process) (specPath, pidPath string, err error) {
	spec, err := json.Marshal(proc)
	if err != nil {
		return "", "", err
	}
	f, err := os.CreateTemp(r.containerDir(id), "exec-*.json")
	if err != nil {
		return "", "", err
	}
	specPath = f.Name()
	_, err = f.Write(spec)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(specPath)
		return "", "", err
	}
	return specPath, strings.TrimSuffix(specPath, ".json") + ".pid", nil
}

// killExec kills the exec'd process (found through runc's pid file) and
// its descendants, then waits for runc, which reaps it and exits.
func (r *Runtime) killExec(id string, cmd *exec.Cmd, pidPath string, waitCh <-chan error) {
	deadline := time.Now().Add(2 * time.Second)
	for delay := 200 * time.Microsecond; ; delay = min(delay*2, 20*time.Millisecond) {
		if pid, err := readPIDFile(pidPath); err == nil {
			killTree(pid)
			break
		}
		if time.Now().After(deadline) {
			// runc never started the process; it is safe to kill runc.
			r.log.Warn("exec killed before runc wrote its pid file", "container", id)
			_ = cmd.Process.Kill()
			break
		}
		select {
		case <-waitCh:
			return
		case <-time.After(delay):
		}
	}
	select {
	case <-waitCh:
	case <-time.After(5 * time.Second):
		r.log.Warn("runc exec did not exit after its process was killed", "container", id)
		_ = cmd.Process.Kill()
		<-waitCh
	}
}

// killTree SIGKILLs pid and all its descendants, children first so that a
// parent (a shell) cannot respawn them.
func killTree(pid int) {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := parentPID(c); pp > 0 {
			children[pp] = append(children[pp], c)
		}
	}
	var order []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			walk(c)
		}
		order = append(order, p)
	}
	walk(pid)
	for _, p := range order {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// parentPID reads the PPid field of /proc/<pid>/stat.
func parentPID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}
