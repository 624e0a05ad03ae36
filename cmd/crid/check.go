package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/crid-project/crid/internal/config"
	"github.com/crid-project/crid/internal/network"
	"github.com/crid-project/crid/internal/node"
)

// checkNode is `crid check`: what the node has and lacks, with the same
// configuration and flags crid would serve with.
func checkNode(cfg config.Config, out io.Writer) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var ready node.Network
	// The cache dir is never written: Ready only reads the config dir.
	if net, err := network.New(network.Config{ConfDir: cfg.Network.ConfDir, BinDirs: cfg.Network.BinDirs, CacheDir: filepath.Join(cfg.Root, "cni")}, quiet); err == nil {
		defer net.Close()
		ready = net.Ready
	}
	facts := node.Check(context.Background(), cfg, ready, node.Host)
	node.Print(out, facts)
	if node.Failed(facts) {
		return errors.New("this node lacks what every pod needs (MISSING above)")
	}
	return nil
}
