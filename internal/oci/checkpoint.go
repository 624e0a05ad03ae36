package oci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CheckpointOptions describes a CRIU dump of a running container.
type CheckpointOptions struct {
	// ImageDir receives CRIU's image files; WorkDir its log (dump.log).
	ImageDir, WorkDir string
	// LeaveRunning keeps the container running after the dump, as the
	// kubelet's checkpoint expects.
	LeaveRunning bool
	// SkipInFlight leaves out connections not yet accepted (the runtime
	// must have --tcp-skip-in-flight) instead of failing on them.
	SkipInFlight bool
	// CRIUDir holds the CRIU binary the runtime runs, named criu: the
	// runtime finds CRIU in PATH, where this directory comes first. ""
	// leaves PATH as it is.
	CRIUDir string
}

// Checkpoint dumps the container's processes with CRIU
// (`runtime checkpoint`). Established TCP connections and file locks are
// dumped with them; the container's namespaces that were joined by path
// (its pod's) are the runtime's to treat as external.
func (r *Runtime) Checkpoint(ctx context.Context, id string, h Handler, opts CheckpointOptions) error {
	if err := validID(id); err != nil {
		return err
	}
	args := []string{"checkpoint", "--image-path", opts.ImageDir, "--work-path", opts.WorkDir,
		"--tcp-established", "--file-locks"}
	if opts.LeaveRunning {
		args = append(args, "--leave-running")
	}
	if opts.SkipInFlight {
		args = append(args, "--tcp-skip-in-flight")
	}
	args = append(args, id)
	cmd := runtimeCmd(ctx, h, args...)
	if opts.CRIUDir != "" {
		cmd.Env = append(cmd.Env, "PATH="+opts.CRIUDir+string(filepath.ListSeparator)+os.Getenv("PATH"))
	}
	// CRIU runs as the runtime's child, and while it dumps the container
	// is frozen: a deadline must end CRIU too, so the runtime runs in a
	// process group of its own that is killed whole.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if _, err := runCmd(ctx, cmd, h, args); err != nil {
		err = r.mapErr(err)
		if msg := criuErrors(filepath.Join(opts.WorkDir, "dump.log")); msg != "" {
			err = fmt.Errorf("%w; CRIU: %s", err, msg)
		}
		r.thaw(ctx, id, h)
		return fmt.Errorf("checkpoint container %s: %w", id, err)
	}
	return nil
}

// thaw resumes a container that a failed or cut dump left frozen; one that
// is not frozen the runtime refuses, which is fine.
func (r *Runtime) thaw(ctx context.Context, id string, h Handler) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	st, err := r.State(ctx, id, h)
	if err != nil || st.Status != "paused" {
		return
	}
	if _, err := runRuntime(ctx, h, nil, "resume", id); err != nil {
		r.log.Error("a failed checkpoint left the container frozen", "container", id, "err", err)
		return
	}
	r.log.Warn("thawed the container a failed checkpoint left frozen", "container", id)
}

// criuErrors returns the last few "Error" lines of a CRIU log: the runtime
// only says CRIU failed, the reason is in its log.
func criuErrors(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const keep = 3
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "Error") {
			lines = append(lines, strings.TrimSpace(l))
			if len(lines) > keep {
				lines = lines[1:]
			}
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return ""
	}
	return strings.Join(lines, " | ")
}
