package oci_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/oci/ocitest"
)

// TestCheckpointFailure: a dump that fails (here CRIU is a program that
// fails at once) is an error that says so, and the container runs on.
func TestCheckpointFailure(t *testing.T) {
	e := newEnv(t)
	id := ocitest.ID("ckpt-")
	e.run(t, id, ocitest.Bundle(t, "sleep", "1000"), "")
	criuDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(criuDir, "criu"), []byte("#!/bin/sh\necho 'Error (criu/fake.c:1): no dump today' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	err := e.rt.Checkpoint(context.Background(), id, e.h, oci.CheckpointOptions{
		ImageDir: filepath.Join(work, "images"), WorkDir: work, LeaveRunning: true, CRIUDir: criuDir,
	})
	if err == nil || !strings.Contains(err.Error(), "checkpoint container "+id) {
		t.Fatalf("checkpoint with a failing CRIU: %v", err)
	}
	t.Logf("error: %v", err)
	st, err := e.rt.State(context.Background(), id, e.h)
	if err != nil || st.Status != "running" {
		t.Fatalf("after the failed checkpoint: %+v, %v", st, err)
	}
}
