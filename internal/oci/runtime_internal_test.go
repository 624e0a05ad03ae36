package oci

import (
	"slices"
	"strings"
	"testing"
)

// The runtime never sees the notify socket or the listen fds systemd gave
// crid.
func TestRuntimeEnv(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("CRID_TEST_KEEP", "yes")
	env := runtimeEnv()
	if !slices.Contains(env, "CRID_TEST_KEEP=yes") {
		t.Error("other variables are dropped")
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "LISTEN_FDS=") {
			t.Errorf("%s passed to the runtime", kv)
		}
	}
}
