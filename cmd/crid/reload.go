package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/crid-project/crid/internal/config"
)

// live is what a reload changes in the running crid.
type live struct {
	level *slog.LevelVar
	// setHandlers replaces the runtime handlers from cfg; it returns the
	// removed ones that running containers keep until a restart.
	setHandlers func(cfg config.Config) (kept []string)
}

// reloadOnHUP re-reads the configuration on SIGHUP, as daemons managed by
// systemd are expected to (ExecReload), instead of dying of it. The log
// level and the runtime handlers (runtimes, default_runtime) change at
// once; the registry hosts.toml files and the CNI network configs are read
// when they change anyway; every other setting that changed is named in
// the log as needing a restart, never silently ignored. A file that does
// not load or validate changes nothing.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, running config.Config, reload func() (config.Config, error), l live, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		notifySystemd(log, daemon.SdNotifyReloading)
		next, err := reload()
		notifySystemd(log, daemon.SdNotifyReady)
		if err != nil {
			log.Error("configuration not reloaded", "error", err)
			continue
		}
		if lv, err := config.ParseLogLevel(next.LogLevel); err == nil && next.LogLevel != running.LogLevel {
			l.level.Set(lv)
			running.LogLevel = next.LogLevel
		}
		if !reflect.DeepEqual(next.Runtimes, running.Runtimes) || next.DefaultRuntime != running.DefaultRuntime {
			if kept := l.setHandlers(next); len(kept) > 0 {
				log.Warn("runtime handlers removed from the configuration are kept until a restart: containers use them", "handlers", kept)
			}
			running.Runtimes, running.DefaultRuntime = next.Runtimes, next.DefaultRuntime
			log.Info("runtime handlers reloaded", "default", next.DefaultRuntime)
		}
		if changed := changedSettings(running, next); len(changed) > 0 {
			log.Warn("configuration reloaded: these settings take effect only after a restart of crid", "settings", changed)
		} else {
			log.Info("configuration reloaded", "log_level", running.LogLevel)
		}
	}
}

// notifyHUP starts catching SIGHUP, before anything else: its default
// action would end crid.
func notifyHUP() (<-chan os.Signal, func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// notifySystemd sends state to systemd's notify socket, when crid runs
// as a Type=notify unit (NOTIFY_SOCKET set); elsewhere it does nothing.
func notifySystemd(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("tell systemd", "state", state, "error", err)
	}
}

// changedSettings names the top-level settings (and tables) that differ.
func changedSettings(a, b config.Config) []string {
	toMap := func(c config.Config) map[string]any {
		raw, _ := json.Marshal(c)
		m := map[string]any{}
		_ = json.Unmarshal(raw, &m)
		return m
	}
	ma, mb := toMap(a), toMap(b)
	var out []string
	for k, v := range mb {
		if !reflect.DeepEqual(ma[k], v) {
			out = append(out, k)
		}
	}
	for k := range ma {
		if _, ok := mb[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
