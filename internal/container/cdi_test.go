package container

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container that asks for a CDI device gets it from the spec files in the
// configured dirs, read at its create: a file written after crid started
// counts, and one that does not load is named when its device is unknown.
func TestCDIDevices(t *testing.T) {
	h := newHarness(t)
	dirs := []string{filepath.Join(h.dir, "cdi-static"), filepath.Join(h.dir, "cdi-dynamic")}
	h.cfg.CDISpecDirs = dirs
	h.restart()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(dir, name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(dirs[1], "vendor.yaml", `cdiVersion: "0.6.0"
kind: vendor.example/dev
devices:
- name: "null"
  containerEdits:
    deviceNodes: [{path: /dev/cdi-null, hostPath: /dev/null}]
    env: [CDI_NULL=1]
`)
	write(dirs[0], "broken.yaml", "kind: [\n")

	cfg := ctrConfig("gpu")
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=null"}}
	id, err := h.m.Create(bg, "pod-a", cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(h.m.bundleDir(id), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/cdi-null" && d.Major == 1 && d.Minor == 3 }) {
		t.Errorf("devices %+v", s.Linux.Devices)
	}
	if !slices.Contains(s.Process.Env, "CDI_NULL=1") {
		t.Errorf("env %v", s.Process.Env)
	}

	cfg = ctrConfig("gpu2")
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=gpu0"}}
	_, err = h.m.Create(bg, "pod-a", cfg)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "vendor.example/dev=gpu0") || !strings.Contains(err.Error(), "broken.yaml") {
		t.Fatalf("unknown device: %v, want InvalidArgument naming it and the file that did not load", err)
	}
	if _, err := h.m.Get(id); err != nil {
		t.Errorf("the first container: %v", err)
	}
	if n := len(h.m.List()); n != 1 {
		t.Errorf("%d containers, want 1: the failed create left one", n)
	}
}

// Without spec dirs no CDI device resolves: CDI is off.
func TestCDIWithoutSpecDirs(t *testing.T) {
	h := newHarness(t)
	cfg := ctrConfig("gpu")
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=null"}}
	if _, err := h.m.Create(bg, "pod-a", cfg); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("create: %v, want InvalidArgument", err)
	}
}
