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
