package network

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// timedExec runs CNI plugins as libcni's default executor does and logs
// how long each took: plugin execs are most of a pod's start latency, and a
// slow one (an iptables call contending for the xtables lock) should show
// up in the debug log by name.
type timedExec struct {
	invoke.DefaultExec
	log *slog.Logger
}

func newTimedExec(log *slog.Logger) *timedExec {
	return &timedExec{
		DefaultExec: invoke.DefaultExec{
			RawExec:       &invoke.RawExec{Stderr: os.Stderr},
			PluginDecoder: version.PluginDecoder{},
		},
		log: log,
	}
}

func (e *timedExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	start := time.Now()
	out, err := e.DefaultExec.ExecPlugin(ctx, pluginPath, stdinData, environ)
	if e.log.Enabled(ctx, slog.LevelDebug) {
		e.log.DebugContext(ctx, "CNI plugin", "plugin", filepath.Base(pluginPath), "command", envValue(environ, "CNI_COMMAND"),
			"took", time.Since(start), "err", err)
	}
	return out, err
}

func envValue(environ []string, key string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}
