package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crid-project/crid/internal/cgroup"
)

// Conmon is the Monitor implemented by github.com/containers/conmon (2.1.x).
//
// Protocol used (verified against conmon 2.1.6):
//   - _OCI_SYNCPIPE=<fd>: with --api-version 1 conmon writes one JSON line,
//     {"data": <init pid>} once `runtime create` succeeded, or
//     {"data": -1, "message": "<runtime stderr>"} when it failed. It writes
//     nothing at all when it fails otherwise (bad option, runtime failing
//     silently): EOF is an error too.
//   - _OCI_STARTPIPE=<fd>: conmon blocks reading it before forking, so the
//     caller can move it into a cgroup first. Only used with CgroupParent.
//   - Without --sync conmon forks once: the child we started exits right
//     after writing --conmon-pidfile with the grandchild's pid; the
//     grandchild calls setsid and is reparented to init, so it survives us.
//   - The exit file ExitDir/<id> and PersistDir/exit hold the decimal exit
//     code, 128+signal for a signal death; the oom file PersistDir/oom
//     (and ./oom in conmon's working directory) appears on an OOM kill.
//   - Control FIFO <bundle>/ctl takes lines "<type> <height> <width>\n";
//     type 1 resizes the terminal, type 2 reopens the log file (conmon
//     writes <log>.tmp and renames it over <log>).
//   - With --full-attach the attach socket is <bundle>/attach.
//   - conmon sets its own oom_score_adj to -1000 and runc's to 0; both are
//     best effort and silently fail without CAP_SYS_RESOURCE. There is no
//     option to change that, so crid asks for nothing.
type Conmon struct {
	// Path is the conmon binary.
	Path string
	// Log receives debug logs.
	Log *slog.Logger
}

var _ Monitor = (*Conmon)(nil)

// maxConmonStderr bounds what we keep of conmon's own stderr: it only
// matters for option errors, before conmon detaches its stdio.
const maxConmonStderr = 64 << 10

// createSettleTimeout bounds how long a cancelled Create still waits for
// runc create to finish before it gives up and cleans up anyway.
const createSettleTimeout = 10 * time.Second

// Create implements Monitor.
func (c *Conmon) Create(ctx context.Context, req MonitorRequest) (int, error) {
	args, err := c.args(req)
	if err != nil {
		return 0, err
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("sync pipe: %w", err)
	}
	defer syncR.Close()

	cmd := exec.Command(c.Path, args...)
	// conmon writes ./oom (besides the persist dir) into its working dir.
	cmd.Dir = req.ContainerDir
	path := envOr("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if r := req.Restore; r != nil && r.CRIUDir != "" {
		// The runtime conmon runs finds CRIU in PATH.
		path = r.CRIUDir + string(filepath.ListSeparator) + path
	}
	cmd.Env = []string{"PATH=" + path, "_OCI_SYNCPIPE=3"}
	cmd.ExtraFiles = []*os.File{syncW}
	var startW *os.File
	if req.CgroupParent != "" {
		var startR *os.File
		startR, startW, err = os.Pipe()
		if err != nil {
			syncW.Close()
			return 0, fmt.Errorf("start pipe: %w", err)
		}
		defer startW.Close()
		defer startR.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, startR)
		cmd.Env = append(cmd.Env, "_OCI_STARTPIPE=4")
	}
	stderr := &limitedBuffer{max: maxConmonStderr}
	cmd.Stderr = stderr
	// A new session: a signal to crid's process group (Ctrl-C, a
	// supervisor killing the group) must not reach conmon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Bounds Wait if a grandchild kept stderr open longer than expected.
	cmd.WaitDelay = time.Second

	err = cmd.Start()
	syncW.Close()
	if err != nil {
		return 0, fmt.Errorf("start conmon: %w", err)
	}
	if startW != nil {
		// conmon blocks on the start pipe before it forks, so its
		// children (runc, and later itself after the fork) inherit the
		// cgroup.
		if err := cgroup.Join(cmd.Process.Pid, req.CgroupParent); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, fmt.Errorf("move conmon into cgroup %s: %w", req.CgroupParent, err)
		}
		if _, err := startW.Write([]byte{0}); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, fmt.Errorf("write start pipe: %w", err)
		}
	}
	// The direct child exits as soon as it forked the real monitor; reap
	// it so it does not linger as a zombie.
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("conmon: %w: %s", err, strings.TrimSpace(stderr.String()))
	}

	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		pid, err := readSync(syncR)
		done <- result{pid, err}
	}()
	select {
	case res := <-done:
		return res.pid, res.err
	case <-ctx.Done():
		// runc create is in flight: cleaning up now would race with it
		// (runc delete before create registered the container leaves a
		// created container behind). Let it settle, then the caller's
		// cleanup sees a definite state.
		select {
		case <-done:
		case <-time.After(createSettleTimeout):
			_ = syncR.SetReadDeadline(time.Now())
			<-done
		}
		return 0, fmt.Errorf("wait for conmon: %w", ctx.Err())
	}
}

// readSync reads conmon's one-line report from the sync pipe.
func readSync(r io.Reader) (int, error) {
	var msg struct {
		Data    *int   `json:"data"`
		PID     *int   `json:"pid"` // --api-version 0
		Message string `json:"message"`
	}
	if err := json.NewDecoder(r).Decode(&msg); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, errors.New("conmon exited without reporting the container pid")
		}
		return 0, fmt.Errorf("read conmon sync pipe: %w", err)
	}
	pid := -1
	switch {
	case msg.Data != nil:
		pid = *msg.Data
	case msg.PID != nil:
		pid = *msg.PID
	}
	if pid <= 0 {
		if msg.Message == "" {
			msg.Message = "unknown error"
		}
		return 0, fmt.Errorf("runtime create failed: %s", runtimeMessage(msg.Message))
	}
	return pid, nil
}

func (c *Conmon) args(req MonitorRequest) ([]string, error) {
	id, dir, h := req.ID, req.ContainerDir, req.Handler
	logArg := "none:"
	if req.LogPath != "" {
		// conmon splits --log-path at colons ("driver:path").
		if strings.Contains(req.LogPath, ":") {
			return nil, fmt.Errorf("log path %q: conmon does not support ':' in log paths", req.LogPath)
		}
		logArg = "k8s-file:" + req.LogPath
	}
	args := []string{
		"--api-version", "1",
		"--cid", id,
		"--cuuid", id,
		"--name", id,
		"--runtime", h.Path,
		"--bundle", req.Bundle,
		"--container-pidfile", filepath.Join(dir, initPIDFile),
		"--conmon-pidfile", filepath.Join(dir, conmonPIDFile),
		"--persist-dir", dir,
		"--exit-dir", req.ExitDir,
		// Socket in the bundle itself, no symlink dir under /var/run/crio.
		"--full-attach",
		"--socket-dir-path", dir,
		"--log-path", logArg,
	}
	if h.SystemdCgroup {
		// conmon adds --systemd-cgroup to `runc create` itself.
		args = append(args, "--systemd-cgroup")
	}
	for _, a := range (Handler{Root: h.Root, Args: h.Args}).globalArgs() {
		args = append(args, "--runtime-arg", a)
	}
	if r := req.Restore; r != nil {
		// conmon runs `runtime restore --detach --image-path <dir>
		// --work-path <bundle>` and these options after it: what the
		// checkpoint dumped (internal/oci Checkpoint) is restored, into
		// the cgroup the runtime made for CRIU (the new container's),
		// not the checkpointed container's.
		args = append(args, "--restore", r.ImageDir,
			"--runtime-opt", "--tcp-established", "--runtime-opt", "--file-locks",
			"--runtime-opt", "--manage-cgroups-mode", "--runtime-opt", "ignore")
	}
	if req.Terminal {
		args = append(args, "--terminal")
	}
	if req.Stdin {
		args = append(args, "--stdin")
		if !req.StdinOnce {
			args = append(args, "--leave-stdin-open")
		}
	}
	return args, nil
}

// ReopenLog implements Monitor.
func (c *Conmon) ReopenLog(ctx context.Context, bundle, logPath string) error {
	var before os.FileInfo
	if logPath != "" {
		before, _ = os.Stat(logPath)
	}
	// O_NONBLOCK: fails with ENXIO instead of blocking when no conmon
	// holds the FIFO's read side.
	f, err := os.OpenFile(filepath.Join(bundle, "ctl"), os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open conmon control fifo: %w", err)
	}
	_, err = f.WriteString("2 0 0\n")
	f.Close()
	if err != nil {
		return fmt.Errorf("write conmon control fifo: %w", err)
	}
	if logPath == "" {
		return nil
	}
	// conmon reopens asynchronously; the kubelet expects the new file to
	// exist when the call returns. conmon always creates a new inode.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for delay := 200 * time.Microsecond; ; delay = min(delay*2, 20*time.Millisecond) {
		if fi, err := os.Stat(logPath); err == nil && (before == nil || !os.SameFile(before, fi)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for conmon to reopen %s: %w", logPath, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// AttachSocket implements Monitor.
func (c *Conmon) AttachSocket(bundle string) string {
	return filepath.Join(bundle, "attach")
}

// PID implements Monitor. The pid file may be stale (conmon exited, pid
// reused), so the process must still be conmon for this container.
func (c *Conmon) PID(containerDir, id string) (int, bool) {
	pid, err := readPIDFile(filepath.Join(containerDir, conmonPIDFile))
	if err != nil {
		return 0, false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(cmdline, []byte("\x00--cid\x00"+id+"\x00")) {
		return 0, false
	}
	return pid, true
}

const (
	conmonPIDFile = "conmon.pid"
	initPIDFile   = "init.pid"
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }
func (b *limitedBuffer) Bytes() []byte  { return b.buf.Bytes() }
