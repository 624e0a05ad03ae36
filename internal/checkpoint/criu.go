// Package checkpoint owns container checkpoints: whether CRIU works on
// this host, and the checkpoint archive, in the layout CRI-O and
// containerd write and checkpointctl reads (the file names and
// config.dump's fields are checkpointctl's lib). The OCI runtime does the
// dump itself (internal/oci); this package packs what it leaves.
package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// CRIU is the result of checking the CRIU binary on this host.
type CRIU struct {
	// Path is the binary, resolved.
	Path string
	// Err says why checkpoints cannot be taken here; nil when `criu check`
	// passed.
	Err error
}

// CheckCRIU resolves criu (a path, or a name looked up in PATH) and runs
// `criu check`, which tells whether this kernel and binary can dump and
// restore (Debian 12's CRIU 3.17, for one, cannot read the vDSO of newer
// kernels).
func CheckCRIU(ctx context.Context, criu string) CRIU {
	path, err := exec.LookPath(criu)
	if err != nil {
		return CRIU{Err: fmt.Errorf("CRIU %q is not installed: %w", criu, err)}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "check").CombinedOutput()
	if err != nil {
		return CRIU{Path: path, Err: fmt.Errorf("%s check failed: %w: %s", path, err, firstError(string(out)))}
	}
	return CRIU{Path: path}
}

// firstError is the first line of CRIU's output that reports an error
// (warnings come before it), else its last line.
func firstError(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "Error") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// BinDir makes dir hold one entry, criu, a symlink to path: the OCI
// runtime finds CRIU in PATH, and this directory is put first in it.
func BinDir(dir, path string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	link := filepath.Join(dir, "criu")
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.Symlink(path, link)
}
