package container

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/checkpoint"
)

func TestCheckpointPod(t *testing.T) {
	h := newHarness(t)
	web, side := h.run("pod-a", "web"), h.run("pod-a", "side")
	other := h.run("pod-b", "other")
	stopped := h.create("pod-a", "idle")

	// Bad requests: a clear error, nothing paused, nothing written.
	out := t.TempDir()
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o600)
	for _, tc := range []struct {
		name    string
		pod     string
		out     string
		ids     []string
		options map[string]string
		want    func(error) bool
	}{
		{"no ids", "pod-a", out, nil, nil, errdefs.IsInvalidArgument},
		{"empty id", "pod-a", out, []string{web, ""}, nil, errdefs.IsInvalidArgument},
		{"repeated id", "pod-a", out, []string{web, side, web}, nil, errdefs.IsInvalidArgument},
		{"another pod's container", "pod-a", out, []string{web, other}, nil, errdefs.IsInvalidArgument},
		{"a container not running", "pod-a", out, []string{web, stopped}, nil, errdefs.IsFailedPrecondition},
		{"unknown container", "pod-a", out, []string{web, "nope"}, nil, errdefs.IsNotFound},
		{"unknown pod", "pod-x", out, []string{web}, nil, errdefs.IsNotFound},
		{"an option", "pod-a", out, []string{web}, map[string]string{"compress": "zstd"}, errdefs.IsInvalidArgument},
		{"relative output", "pod-a", "out", []string{web}, nil, errdefs.IsInvalidArgument},
		{"output not empty", "pod-a", full, []string{web}, nil, errdefs.IsInvalidArgument},
		{"output missing", "pod-a", filepath.Join(out, "none"), []string{web}, nil, errdefs.IsInvalidArgument},
	} {
		if err := h.m.CheckpointPod(bg, tc.pod, tc.out, tc.ids, tc.options); !tc.want(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if len(h.rt.ops) != 0 {
		t.Fatalf("bad requests reached the runtime: %v", h.rt.ops)
	}

	// A dump that fails: every container resumed, the output emptied.
	h.rt.mu.Lock()
	h.rt.checkpointErr = errors.New("criu dump failed")
	h.rt.mu.Unlock()
	if err := h.m.CheckpointPod(bg, "pod-a", out, []string{web, side}, nil); err == nil {
		t.Fatal("a failing dump succeeded")
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a failed checkpoint left %v", entries)
	}
	for _, id := range []string{web, side} {
		if s := h.rt.status(id); s != "running" {
			t.Errorf("after the failed checkpoint %s is %s", id, s)
		}
	}
	h.rt.mu.Lock()
	h.rt.checkpointErr, h.rt.ops = nil, nil
	h.rt.mu.Unlock()

	if err := h.m.CheckpointPod(bg, "pod-a", out, []string{side, web}, nil); err != nil {
		t.Fatal(err)
	}
	// One cut: both paused before either is dumped, resumed after both.
	var kinds []string
	for _, op := range h.rt.ops {
		kind, _, _ := strings.Cut(op, " ")
		kinds = append(kinds, kind)
	}
	if !slices.Equal(kinds, []string{"pause", "pause", "checkpoint", "checkpoint", "resume", "resume"}) {
		t.Errorf("runtime calls %v: want both pauses, then both dumps, then both resumes", h.rt.ops)
	}
	for _, id := range []string{web, side} {
		if s := h.rt.status(id); s != "running" {
			t.Errorf("after the checkpoint %s is %s", id, s)
		}
	}
	manifest, _, err := checkpoint.ReadPod(bg, out, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range manifest.Containers {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"side", "web"}) || manifest.PodID != "pod-a" || manifest.Handler != "runc" {
		t.Errorf("manifest: %+v", manifest)
	}

	// A restore-time configuration that describes another process is
	// refused, creating nothing.
	want := manifest.Containers[slices.IndexFunc(manifest.Containers, func(c checkpoint.PodContainer) bool { return c.Name == "web" })]
	archive := filepath.Join(out, "containers", "web.tar")
	h.canRestore()
	before := len(h.m.recs.List(nil))
	for _, edit := range []func(*runtimeapi.ContainerConfig){
		func(c *runtimeapi.ContainerConfig) { c.Command = []string{"sh"} },
		func(c *runtimeapi.ContainerConfig) { c.Args = []string{"-x"} },
		func(c *runtimeapi.ContainerConfig) { c.WorkingDir = "/tmp" },
		func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1000}}}
		},
	} {
		cfg := ctrConfig("web")
		edit(cfg)
		if _, err := h.m.CreateRestored(bg, "pod-b", cfg, archive, want); !errdefs.IsInvalidArgument(err) {
			t.Errorf("a mismatching config: %v", err)
		}
	}
	if n := len(h.m.recs.List(nil)); n != before {
		t.Fatalf("refused restores left %d records", n-before)
	}
	id, err := h.m.CreateRestored(bg, "pod-b", ctrConfig("web"), archive, want)
	if err != nil {
		t.Fatal(err)
	}
	if s := criState(t, h.m, id); s != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("the restored container: %v", s)
	}
	if err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
	if h.rt.restores != 1 {
		t.Errorf("restores: %d", h.rt.restores)
	}
}

// A container that cannot be paused fails the checkpoint; those already
// paused are resumed.
func TestCheckpointPodPauseFails(t *testing.T) {
	h := newHarness(t)
	a, b := h.run("pod-a", "a"), h.run("pod-a", "b")
	first, second := min(a, b), max(a, b) // paused in ID order
	h.rt.pauseErr = map[string]error{second: errors.New("freezer stuck")}
	out := t.TempDir()
	if err := h.m.CheckpointPod(bg, "pod-a", out, []string{a, b}, nil); err == nil {
		t.Fatal("checkpoint succeeded")
	}
	if s := h.rt.status(first); s != "running" {
		t.Errorf("%s is %s", first, s)
	}
	if !slices.Equal(h.rt.ops, []string{"pause " + first, "resume " + first}) {
		t.Errorf("runtime calls: %v", h.rt.ops)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}
}
