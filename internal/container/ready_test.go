package container

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/crid-project/crid/internal/oci"
)

// Status says the runtime is not ready, and why, when containers could
// not run; only handlers that resolved are advertised.
func TestRuntimeReady(t *testing.T) {
	h := newHarness(t)
	for _, d := range []string{h.m.cfg.RootDir, h.m.cfg.StateDir} {
		if err := os.MkdirAll(d, 0o711); err != nil { // as crid's start does
			t.Fatal(err)
		}
	}
	if ok, reason, msg := h.m.RuntimeReady(); !ok {
		t.Fatalf("not ready on a usable node: %s: %s", reason, msg)
	}
	if got := h.m.HandlerNames(); !slices.Equal(got, []string{"runc"}) {
		t.Fatalf("handlers %v", got)
	}
	base := h.m.cfg
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		reason string
	}{
		{"no default handler", func(c *Config) { c.DefaultHandler = "crun" }, "RuntimeHandlerMissing"},
		{"runtime binary gone", func(c *Config) {
			c.Handlers = maps.Clone(c.Handlers)
			c.Handlers["runc"] = oci.Handler{Name: "runc", Path: filepath.Join(h.dir, "no-runc")}
		}, "RuntimeBinaryMissing"},
		{"state dir gone", func(c *Config) { c.StateDir = filepath.Join(h.dir, "no-state") }, "StateDirUnusable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.change(&cfg)
			h.m.cfg = cfg
			h.m.SetHandlers(cfg.Handlers, cfg.DefaultHandler)
			defer func() { h.m.cfg = base; h.m.SetHandlers(base.Handlers, base.DefaultHandler) }()
			if ok, reason, msg := h.m.RuntimeReady(); ok || reason != tc.reason || msg == "" {
				t.Fatalf("ready %v reason %q message %q, want reason %q", ok, reason, msg, tc.reason)
			}
		})
	}
	if _, err := os.Stat(base.StateDir); err != nil {
		t.Fatal(err)
	}
}

// A reload replaces the handlers at once, but one that a container still
// uses stays until crid restarts.
func TestSetHandlers(t *testing.T) {
	h := newHarness(t)
	id := h.create("pod-a", "c")
	crun := oci.Handler{Name: "crun", Path: "/bin/true"}
	kept := h.m.SetHandlers(map[string]oci.Handler{"crun": crun}, "crun")
	if !slices.Equal(kept, []string{"runc"}) {
		t.Fatalf("kept %v, want [runc]", kept)
	}
	if got := h.m.HandlerNames(); !slices.Equal(got, []string{"crun", "runc"}) || h.m.DefaultHandler() != "crun" || !h.m.HasHandler("") {
		t.Fatalf("handlers %v, default %q", got, h.m.DefaultHandler())
	}
	if hd, err := h.m.handler(""); err != nil || hd.Name != "crun" {
		t.Fatalf("default handler %v, %v", hd, err)
	}
	if hd, err := h.m.handler(h.record(id).Handler); err != nil || hd.Name != "runc" {
		t.Fatalf("the container's handler: %v, %v", hd, err)
	}
	if h.m.HasHandler("nope") {
		t.Fatal("an unknown handler is known")
	}
}
