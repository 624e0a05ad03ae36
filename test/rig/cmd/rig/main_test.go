package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeLifecycle runs the real command: it must write the hosts
// directory and ready file, answer /v2/, and exit 0 on SIGTERM.
func TestServeLifecycle(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs Debian's busybox package (apt-get install busybox)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "rig")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ready := filepath.Join(dir, "ready")
	hosts := filepath.Join(dir, "hosts")
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--hosts-dir", hosts, "--ready-file", ready)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	var addr string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			addr = strings.TrimSpace(string(b))
			break
		}
	}
	if addr == "" {
		t.Fatal("no ready file within 30s")
	}
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %v %v", resp, err)
	}
	resp.Body.Close()
	toml, err := os.ReadFile(filepath.Join(hosts, "registry.k8s.io", "hosts.toml"))
	if err != nil || !strings.Contains(string(toml), `[host."http://`+addr+`/v2/registry.k8s.io"]`) {
		t.Errorf("hosts.toml: %s %v", toml, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s of SIGTERM")
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) {
		t.Errorf("ready file left behind: %v", err)
	}
}
