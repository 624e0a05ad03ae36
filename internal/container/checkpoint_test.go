package container

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/checkpoint"
	"github.com/crid-project/crid/internal/image"
)

// archiveEntries lists a tar's entry names.
func archiveEntries(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
}

func TestCheckpoint(t *testing.T) {
	h := newHarness(t)
	id := h.run("pod-a", "web")
	// The container changed its root: one file added, one image file gone.
	upper := filepath.Join(h.m.layerDir(id), "upper")
	if err := os.WriteFile(filepath.Join(h.m.rootfsDir(id), "new"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(h.m.rootfsDir(id), "layer0")); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	location := filepath.Join(out, "web.tar")
	if err := h.m.Checkpoint(bg, id, location); err != nil {
		t.Fatal(err)
	}
	got := archiveEntries(t, location)
	for _, want := range []string{metadata.ConfigDumpFile, metadata.SpecDumpFile, metadata.RootFsDiffTar,
		metadata.DeletedFilesFile, "stats-dump", "checkpoint/pages-1.img"} {
		if !slices.Contains(got, want) {
			t.Errorf("archive lacks %s: %v", want, got)
		}
	}
	if s := criState(t, h.m, id); s.String() != "CONTAINER_RUNNING" {
		t.Errorf("after the checkpoint the container is %v, not running", s)
	}
	if _, err := os.Stat(filepath.Join(upper, "new")); err != nil {
		t.Errorf("upper dir: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(h.cfg.StateDir, "checkpoints"))
	if len(entries) != 0 {
		t.Errorf("work dirs left behind: %v", entries)
	}

	for _, tc := range []struct {
		name     string
		location string
		want     error
	}{
		{"relative location", "web.tar", errdefs.ErrInvalidArgument},
		{"unclean location", out + "/../x/web.tar", errdefs.ErrInvalidArgument},
		{"no such directory", filepath.Join(out, "none", "web.tar"), errdefs.ErrInvalidArgument},
		{"location is a directory", out, errdefs.ErrInvalidArgument},
	} {
		if err := h.m.Checkpoint(bg, id, tc.location); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := h.m.Checkpoint(bg, "nope", location); !errdefs.IsNotFound(err) {
		t.Errorf("unknown container: %v", err)
	}
	created := h.create("pod-a", "idle")
	if err := h.m.Checkpoint(bg, created, filepath.Join(out, "idle.tar")); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("created container: %v", err)
	}

	// A failed dump leaves neither an archive nor a partial file.
	h.rt.checkpointErr = errors.New("criu failed")
	failed := filepath.Join(out, "failed.tar")
	if err := h.m.Checkpoint(bg, id, failed); err == nil {
		t.Fatal("checkpoint with a failing runtime succeeded")
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Errorf("after a failed checkpoint the output dir holds %v, want only web.tar", entries)
	}
}

func TestCheckpointOff(t *testing.T) {
	h := newHarness(t)
	h.cfg.CheckpointOff = errors.New("criu check failed")
	h.restart()
	id := h.run("pod-a", "web")
	if err := h.m.Checkpoint(bg, id, filepath.Join(t.TempDir(), "web.tar")); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("checkpoint while off: %v", err)
	}
	if h.rt.checkpoints != 0 {
		t.Fatal("the runtime was asked to checkpoint")
	}
}

func TestRestore(t *testing.T) {
	h := newHarness(t)
	id := h.run("pod-a", "web")
	if err := os.WriteFile(filepath.Join(h.m.rootfsDir(id), "new"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(h.m.rootfsDir(id), "layer0")); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "web.tar")
	if err := h.m.Checkpoint(bg, id, archive); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Stop(bg, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Remove(bg, id); err != nil {
		t.Fatal(err)
	}

	// Bad sources change nothing.
	for _, tc := range []struct {
		name, ref string
		want      func(error) bool
	}{
		{"missing archive", filepath.Join(t.TempDir(), "none.tar"), errdefs.IsNotFound},
		{"not an archive", h.m.cfg.StateDir, errdefs.IsInvalidArgument},
	} {
		cfg := ctrConfig("bad")
		cfg.Image.Image = tc.ref
		if _, err := h.m.Create(bg, "pod-b", cfg); !tc.want(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// The harness's runtime (/bin/true) cannot restore into a new cgroup.
	cfg := ctrConfig("web")
	cfg.Image.Image = archive
	if _, err := h.m.Create(bg, "pod-b", cfg); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("a handler that cannot restore: %v", err)
	}
	if n := len(h.m.recs.List(nil)); n != 0 {
		t.Fatalf("bad sources left %d records", n)
	}
	h.canRestore()

	restored, err := h.m.Create(bg, "pod-b", cfg)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := h.m.rootfsDir(restored)
	if b, err := os.ReadFile(filepath.Join(rootfs, "new")); err != nil || string(b) != "n" {
		t.Errorf("the checkpointed file: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "layer0")); !os.IsNotExist(err) {
		t.Errorf("the deleted image file is back: %v", err)
	}
	if s := criState(t, h.m, restored); s != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("after create: %v", s)
	}
	// A restart before the start: nothing to adopt, still startable.
	h.restart()
	h.canRestore()
	h.m.Recover(bg)
	if s := criState(t, h.m, restored); s != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("after a restart: %v", s)
	}
	// A failed restore leaves it created, for a retry.
	h.rt.mu.Lock()
	h.rt.createErr = errors.New("criu restore failed")
	h.rt.mu.Unlock()
	if err := h.m.Start(bg, restored); err == nil {
		t.Fatal("a failing restore started")
	}
	if s := criState(t, h.m, restored); s != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("after a failed restore: %v", s)
	}
	if err := h.m.Start(bg, restored); err != nil {
		t.Fatal(err)
	}
	if s := criState(t, h.m, restored); s != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after the restore: %v", s)
	}
	if h.rt.restores != 1 {
		t.Errorf("restores: %d, want 1", h.rt.restores)
	}
}

// A checkpoint image (the archive unpacked as its one layer, marked by an
// annotation) restores like the archive: the kubelet sends its reference.
func TestRestoreFromImage(t *testing.T) {
	h := newHarness(t)
	id := h.run("pod-a", "web")
	if err := os.WriteFile(filepath.Join(h.m.rootfsDir(id), "new"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "web.tar")
	if err := h.m.Checkpoint(bg, id, archive); err != nil {
		t.Fatal(err)
	}
	layer := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	_, err = checkpoint.Open(bg, f, layer, 1<<30)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	diffID := digest.FromString("checkpoint layer")
	h.images.layers[diffID] = layer
	h.images.more = map[string]image.Image{
		"checkpoint:web": {ID: digest.FromString("checkpoint image"), Layers: []digest.Digest{diffID},
			Annotations: map[string]string{"io.kubernetes.cri-o.annotations.checkpoint.name": "web"}},
		"two-layers:web": {ID: digest.FromString("two layers"), Layers: []digest.Digest{diffID, diffID},
			Annotations: map[string]string{metadata.CheckpointAnnotationName: "web"}},
	}
	h.canRestore()

	cfg := ctrConfig("web2")
	cfg.Image.Image = "two-layers:web"
	if _, err := h.m.Create(bg, "pod-b", cfg); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a checkpoint image of two layers: %v", err)
	}
	cfg.Image.Image = "checkpoint:web"
	restored, err := h.m.Create(bg, "pod-b", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(h.m.rootfsDir(restored), "new")); err != nil || string(b) != "n" {
		t.Errorf("the checkpointed file: %q, %v", b, err)
	}
	if c := h.record(restored); c.ImageID != h.images.img.ID || c.ImageName == "checkpoint:web" {
		t.Errorf("the restored container's image: %s (%s), want the checkpointed container's", c.ImageName, c.ImageID)
	}
	if err := h.m.Start(bg, restored); err != nil {
		t.Fatal(err)
	}
	if h.rt.restores != 1 {
		t.Errorf("restores: %d", h.rt.restores)
	}
}
