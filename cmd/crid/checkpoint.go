package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/crid-project/crid/internal/checkpoint"
	"github.com/crid-project/crid/internal/config"
)

// checkpointState says why containers cannot be checkpointed on this host
// (nil: they can), and where the OCI runtime finds the configured CRIU.
func checkpointState(ctx context.Context, cfg config.Config, log *slog.Logger) (off error, criuDir string) {
	if cfg.Checkpoint.Enable == "off" {
		return errors.New("checkpointing is off (config [checkpoint] enable)"), ""
	}
	criu := checkpoint.CheckCRIU(ctx, cfg.Checkpoint.CRIU)
	if criu.Err != nil {
		level := slog.LevelInfo
		if cfg.Checkpoint.Enable == "on" {
			level = slog.LevelError
		}
		log.Log(ctx, level, "containers cannot be checkpointed", "error", criu.Err)
		return fmt.Errorf("checkpointing is unavailable: %w", criu.Err), ""
	}
	dir := filepath.Join(cfg.State, "criu")
	if err := checkpoint.BinDir(dir, criu.Path); err != nil {
		return fmt.Errorf("checkpointing is unavailable: %w", err), ""
	}
	log.Debug("containers can be checkpointed", "criu", criu.Path)
	return nil, dir
}
