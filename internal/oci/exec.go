package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// maxExecOutput caps each captured stream, like the kubelet's
// MaxExecSyncOutput; the rest is discarded.
const maxExecOutput = 16 << 20

// ExecSync runs p in the container and captures its output. timeout 0
// means none. On timeout (or ctx cancellation) the process and its
// descendants are killed and reaped before ExecSync returns an error
// wrapping context.DeadlineExceeded (or ctx.Err()).
//
// `runc exec` runs in the foreground, not under conmon: no extra process
// per exec, and runc is the exec'd process's parent and a child subreaper,
// so once we SIGKILL the pid from --pid-file runc reaps it and exits. crid
// itself need not be a subreaper. Descendants the process forked are
// killed too, but once orphaned inside the container's pid namespace they
// are reaped by the container's init, not by us.
func (r *Runtime) ExecSync(ctx context.Context, id string, h Handler, p *specs.Process, timeout time.Duration) (ExecResult, error) {
	if err := validID(id); err != nil {
		return ExecResult{}, err
	}
	proc := *p
	// No tty: output is captured as two streams.
	proc.Terminal = false
	proc.ConsoleSize = nil
	spec, err := json.Marshal(&proc)
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", id, err)
	}
	f, err := os.CreateTemp(r.containerDir(id), "exec-*.json")
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", id, err)
	}
	specPath := f.Name()
	pidPath := strings.TrimSuffix(specPath, ".json") + ".pid"
	defer os.Remove(specPath)
	defer os.Remove(pidPath)
	_, err = f.Write(spec)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", id, err)
	}

	// Not CommandContext: killing runc would orphan the exec'd process.
	cmd := exec.Command(h.Path, append(h.globalArgs(), "exec", "--process", specPath, "--pid-file", pidPath, id)...)
	stdout := &limitedBuffer{max: maxExecOutput}
	stderr := &limitedBuffer{max: maxExecOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A background child of the command may hold the pipes open after
	// the command exited; don't wait for it forever.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", id, err)
	}
	waitCh := make(chan error, 1)
	go func() { waitCh <- cmd.Wait() }()

	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	var waitErr error
	select {
	case waitErr = <-waitCh:
	case <-expired:
		r.killExec(id, cmd, pidPath, waitCh)
		return ExecResult{}, fmt.Errorf("exec in container %s: timed out after %s: %w", id, timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		r.killExec(id, cmd, pidPath, waitCh)
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	}

	res := ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if waitErr != nil {
		ee, ok := waitErr.(*exec.ExitError)
		if !ok {
			return res, fmt.Errorf("exec in container %s: %w", id, waitErr)
		}
		if _, err := os.Stat(pidPath); err != nil {
			// No pid file: runc failed before the process ran (container
			// not running, bad spec); its exit code means nothing.
			return res, fmt.Errorf("exec in container %s: %w", id, r.mapErr(&runtimeError{
				args: []string{filepath.Base(h.Path), "exec"}, err: waitErr, msg: runtimeMessage(stderr.String()),
			}))
		}
		res.ExitCode = int32(ee.ExitCode())
		if ee.ExitCode() < 0 {
			// runc itself died by a signal.
			res.ExitCode = 128 + int32(ee.Sys().(syscall.WaitStatus).Signal())
		}
	}
	return res, nil
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
			r.log.Warn("exec timed out before runc wrote its pid file", "container", id)
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
