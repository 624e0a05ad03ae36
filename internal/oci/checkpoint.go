package oci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CheckpointOptions describes a CRIU dump of a running container.
type CheckpointOptions struct {
	// ImageDir receives CRIU's image files; WorkDir its log (dump.log).
	ImageDir, WorkDir string
	// LeaveRunning keeps the container running after the dump, as the
	// kubelet's checkpoint expects.
	LeaveRunning bool
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
	var env []string
	if opts.CRIUDir != "" {
		env = []string{"PATH=" + opts.CRIUDir + string(filepath.ListSeparator) + os.Getenv("PATH")}
	}
	if _, err := runRuntimeEnv(ctx, h, env, nil, append(args, id)...); err != nil {
		err = r.mapErr(err)
		if msg := criuErrors(filepath.Join(opts.WorkDir, "dump.log")); msg != "" {
			err = fmt.Errorf("%w; CRIU: %s", err, msg)
		}
		return fmt.Errorf("checkpoint container %s: %w", id, err)
	}
	return nil
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
