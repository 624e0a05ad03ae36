package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Checkpoint dumps running container id with CRIU, leaving it running, and
// writes its checkpoint archive at location (internal/checkpoint has the
// layout). The archive appears whole or not at all; ctx bounds the call
// (the CRI timeout). Nothing else changes: the container keeps running
// also when the dump fails, since the runtime thaws it.
func (m *Manager) Checkpoint(ctx context.Context, id, location string) error {
	if m.cfg.CheckpointOff != nil {
		return fmt.Errorf("checkpoint container %s: %w: %w", id, m.cfg.CheckpointOff, errdefs.ErrFailedPrecondition)
	}
	if err := checkLocation(location); err != nil {
		return err
	}
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	if err := m.checkRecovered(c.ID); err != nil {
		return err
	}
	// Held for the whole dump: a stop or removal waits for it.
	unlock := m.recs.Lock(c.ID)
	defer unlock()
	if c, _ = m.recs.Get(c.ID); c.State != StateRunning || c.Removing {
		return fmt.Errorf("checkpoint container %s: it is %s, not running: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	h, err := m.handler(c.Handler)
	if err != nil {
		return err
	}
	log := m.log.With("container", c.ID, "pod", c.SandboxID)
	start := time.Now()
	if err := m.dump(ctx, c, h, location); err != nil {
		return err
	}
	log.Info("container checkpointed", "location", location, "took", time.Since(start))
	m.stage("checkpoint", time.Since(start))
	return nil
}

// CheckpointOff says why containers cannot be checkpointed here; nil: they
// can.
func (m *Manager) CheckpointOff() error { return m.cfg.CheckpointOff }

// checkLocation accepts an absolute, clean path in an existing directory,
// which is not a directory itself: the archive is written there.
func checkLocation(location string) error {
	if err := checkCleanPath("checkpoint location", location); err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Dir(location)); err != nil || !fi.IsDir() {
		return badPath("checkpoint location", location, "is not in an existing directory")
	}
	if fi, err := os.Lstat(location); err == nil && !fi.Mode().IsRegular() {
		return badPath("checkpoint location", location, "exists and is not a regular file")
	}
	return nil
}

// checkCleanPath accepts a non-empty, absolute, clean path.
func checkCleanPath(what, p string) error {
	switch {
	case p == "":
		return badPath(what, p, "is empty")
	case !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsRune(p, 0):
		return badPath(what, p, "is not an absolute, clean path")
	}
	return nil
}

func badPath(what, p, why string) error {
	return fmt.Errorf("%s %q %s: %w", what, p, why, errdefs.ErrInvalidArgument)
}
