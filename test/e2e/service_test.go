package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// SIGHUP reloads the configuration (a bad file changes nothing) and never
// stops crid, as systemd's ExecReload expects.
func TestSIGHUPReloads(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "crid.toml")
	if err := os.WriteFile(cfg, []byte("log_level = \"info\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCrid(t, rig(t), "--config", cfg)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	for _, content := range []string{"log_level = \"debug\"\nshm_size = 1048576\n", "log_level = 3 = nonsense\n"} {
		if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := c.p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.Version(ctx(t), &runtimeapi.VersionRequest{}); err != nil {
			t.Fatalf("after SIGHUP: %v", err)
		}
	}
	c.runPod("afterhup", "exec sleep 3600")
	if c.p.cmd.ProcessState != nil {
		t.Fatal("crid exited on SIGHUP")
	}
	// A runtime handler added to the file serves new pods after SIGHUP.
	if err := os.WriteFile(cfg, []byte("[runtimes.extra]\npath = \"runc\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "handler extra advertised", func() bool {
		st, _ := rt.Status(ctx(t), &runtimeapi.StatusRequest{})
		for _, h := range st.GetRuntimeHandlers() {
			if h.Name == "extra" {
				return true
			}
		}
		return false
	})
	pod, _ := c.podFiles("extra", "exec sleep 3600")
	podID := strings.TrimSpace(c.mustCrictl("runp", "--runtime", "extra", pod))
	if out := c.mustCrictl("inspectp", podID); !strings.Contains(out, `"runtimeHandler": "extra"`) {
		t.Errorf("pod's handler:\n%s", out)
	}
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}

// Under systemd (Type=notify), crid says READY=1 on the notify socket once
// its CRI socket listens, and STOPPING=1 when it stops.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	notify := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make(chan string, 8)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	recv := func(want string) {
		t.Helper()
		select {
		case msg, ok := <-got:
			if !ok || msg != want {
				t.Fatalf("notify socket got %q (open %v), want %q", msg, ok, want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("no %q on the notify socket", want)
		}
	}
	hosts := rig(t)
	c := newCrid(t, hosts)
	c.p.signal(syscall.SIGTERM)
	os.Remove(c.sock)
	c.p = startEnv(t, []string{"NOTIFY_SOCKET=" + notify}, bin.crid, c.args()...)
	recv("READY=1")
	if _, err := os.Stat(c.sock); err != nil {
		t.Fatalf("READY before the CRI socket exists: %v", err)
	}
	c.p.signal(syscall.SIGTERM)
	recv("STOPPING=1")
}

// `crid check` tells what the node has and lacks, and fails when no pod
// could run, with the flags and config crid would serve with.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(good, []byte("[runtimes.runc]\npath = \"runc\"\n"), 0o644)
	os.WriteFile(bad, []byte("conmon = \"/nonexistent/conmon\"\n"), 0o644)
	args := []string{"--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state")}
	out, err := exec.Command(bin.crid, append([]string{"check", "--config", good}, args...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok       runtime handler runc") || !strings.Contains(string(out), "ok       conmon") {
		t.Fatalf("crid check on this node: %v\n%s", err, out)
	}
	out, err = exec.Command(bin.crid, append([]string{"check", "--config", bad}, args...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "MISSING  conmon") {
		t.Fatalf("crid check without conmon: %v\n%s", err, out)
	}
}
