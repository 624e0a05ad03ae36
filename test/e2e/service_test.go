package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}
