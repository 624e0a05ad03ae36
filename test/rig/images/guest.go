package images

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

//go:embed guest/main.go
var guestSource []byte

// BuildGuest compiles the guest helper (see ./guest) for linux/amd64 as a
// static, stripped binary. It builds from an embedded copy in a throwaway
// module so the rig binary works outside this repository; -trimpath and an
// empty build ID make the output independent of that temporary path. goCmd
// may be empty to find "go" on PATH or in GOROOT. Where there is no Go
// toolchain (the guest VM of test/guest), RIG_GUEST_BIN names a binary of
// ./guest built beforehand, used as it is.
func BuildGuest(goCmd string) ([]byte, error) {
	if prebuilt := os.Getenv("RIG_GUEST_BIN"); prebuilt != "" {
		return os.ReadFile(prebuilt)
	}
	if goCmd == "" {
		var err error
		if goCmd, err = exec.LookPath("go"); err != nil {
			goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
	}
	dir, err := os.MkdirTemp("", "rig-guest-*")
	if err != nil {
		return nil, fmt.Errorf("guest build dir: %w", err)
	}
	defer os.RemoveAll(dir)
	files := map[string][]byte{
		"go.mod":  []byte("module guest\n\ngo 1.22\n"),
		"main.go": guestSource,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, fmt.Errorf("write guest %s: %w", name, err)
		}
	}
	out := filepath.Join(dir, "guest")
	cmd := exec.Command(goCmd, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	if os.Getenv("GOCACHE") == "" && os.Getenv("HOME") == "" && os.Getenv("XDG_CACHE_HOME") == "" {
		// Daemon-style environments (CI init scripts) may lack HOME, and
		// go refuses to build without a cache directory.
		cmd.Env = append(cmd.Env, "GOCACHE="+filepath.Join(os.TempDir(), "rig-gocache"))
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build guest: %w: %s", err, msg)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("read guest binary: %w", err)
	}
	return bin, nil
}
