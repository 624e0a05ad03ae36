// Command crid is a Kubernetes container runtime: it serves the CRI v1 API
// to the kubelet on a unix socket.
//
//	crid [flags]        run the daemon
//	crid config         print the default configuration, commented
//	crid version        print the version
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/crid-project/crid/internal/apparmor"
	"github.com/crid-project/crid/internal/cgroup"
	"github.com/crid-project/crid/internal/config"
	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/image"
	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/network"
	"github.com/crid-project/crid/internal/nri"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
	"github.com/crid-project/crid/internal/server"
	"github.com/crid-project/crid/internal/store"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "crid:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("crid", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "TOML configuration file")
	// Flags that override the file; empty means "keep the file's value".
	overrides := map[string]*string{}
	for _, f := range []struct{ name, usage string }{
		{"listen", "CRI endpoint, unix:///path (default " + config.Default().Listen + ")"},
		{"image-listen", "extra endpoint serving only the ImageService"},
		{"root", "persistent data directory (default " + config.Default().Root + ")"},
		{"state", "volatile state directory (default " + config.Default().State + ")"},
		{"registry-config-dir", "directory of <host>/hosts.toml registry configuration (default " + config.Default().Image.RegistryConfigDir + ")"},
		{"log-level", "debug, info, warn or error"},
		{"log-format", "text or json"},
		{"cni-conf-dir", "CNI network configuration dir (default " + config.Default().Network.ConfDir + ")"},
		{"cni-bin-dir", "CNI plugin dirs, colon-separated (default " + strings.Join(config.Default().Network.BinDirs, ":") + ")"},
		{"cgroup-driver", "cgroupfs or systemd (default: systemd when systemd booted the host)"},
		{"nri-socket", "NRI plugin socket (default " + config.Default().NRI.SocketPath + ")"},
		{"metrics-address", "Prometheus metrics host:port, \"none\" to disable (default " + config.Default().Metrics.Address + ")"},
	} {
		overrides[f.name] = fs.String(f.name, "", f.usage)
	}
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: crid [flags]\n       crid check     print what this node has and lacks for pods (exit 1 if pods cannot run)\n       crid config    print the default configuration\n       crid version   print the version")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	check := false
	switch fs.Arg(0) {
	case "":
	case "check":
		// Flags may follow the command too: `crid check --config FILE`.
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		check = true
	case "config":
		_, err := stdout.Write(config.DefaultTOML())
		return err
	case "version":
		fmt.Fprintf(stdout, "crid %s\n", version)
		return nil
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", fs.Arg(0))
	}

	// driverSource says whether the cgroup driver was set or detected.
	driverSource := "configured"
	load := func() (config.Config, error) {
		cfg := config.Default()
		if *configPath != "" {
			var err error
			if cfg, err = config.Load(*configPath); err != nil {
				return cfg, err
			}
		}
		applyOverrides(&cfg, overrides)
		if cfg.CgroupDriver == "" {
			cfg.CgroupDriver, driverSource = string(cgroup.Detect()), "detected"
		}
		return cfg, cfg.Validate()
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if check {
		return checkNode(cfg, stdout)
	}
	return serve(cfg, driverSource, load, stderr)
}

// applyOverrides applies the flags that were given over the file's values.
func applyOverrides(cfg *config.Config, overrides map[string]*string) {
	for name, v := range overrides {
		if *v == "" {
			continue
		}
		switch name {
		case "listen":
			cfg.Listen = *v
		case "image-listen":
			cfg.ImageListen = *v
		case "root":
			cfg.Root = *v
		case "state":
			cfg.State = *v
		case "registry-config-dir":
			cfg.Image.RegistryConfigDir = *v
		case "log-level":
			cfg.LogLevel = *v
		case "log-format":
			cfg.LogFormat = *v
		case "cni-conf-dir":
			cfg.Network.ConfDir = *v
		case "cni-bin-dir":
			cfg.Network.BinDirs = strings.Split(*v, ":")
		case "cgroup-driver":
			cfg.CgroupDriver = *v
		case "nri-socket":
			cfg.NRI.SocketPath = *v
		case "metrics-address":
			cfg.Metrics.Address = *v
			if *v == "none" {
				cfg.Metrics.Address = ""
			}
		}
	}
}

func serve(cfg config.Config, driverSource string, reload func() (config.Config, error), logOut io.Writer) error {
	hup, stopHUP := notifyHUP()
	defer stopHUP()
	level, _ := config.ParseLogLevel(cfg.LogLevel)
	var logLevel slog.LevelVar
	logLevel.Set(level)
	opts := &slog.HandlerOptions{Level: &logLevel}
	var handler slog.Handler = slog.NewTextHandler(logOut, opts)
	if cfg.LogFormat == "json" {
		handler = slog.NewJSONHandler(logOut, opts)
	}
	log := slog.New(handler)
	slog.SetDefault(log)

	for _, dir := range []string{cfg.Root, cfg.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	db, err := store.Open(filepath.Join(cfg.Root, "crid.db"))
	if err != nil {
		return err
	}
	defer db.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if apparmor.Enabled() {
		// Before any container: RuntimeDefault names this profile.
		if err := apparmor.EnsureDefault(ctx); err != nil {
			return fmt.Errorf("AppArmor is enabled but crid's default profile does not load: %w", err)
		}
		log.Info("AppArmor enabled", "default_profile", apparmor.DefaultProfile)
	}
	images, err := image.New(cfg.Root, db, cfg.Image, log.With("component", "image"))
	if err != nil {
		return err
	}
	rt, err := oci.New(oci.Config{
		ConmonPath: cfg.ConmonPath,
		StateDir:   cfg.State,
		ExitDir:    filepath.Join(cfg.State, "exits"),
		Log:        log.With("component", "oci"),
	})
	if err != nil {
		return err
	}
	net, err := network.New(network.Config{
		ConfDir:  cfg.Network.ConfDir,
		BinDirs:  cfg.Network.BinDirs,
		CacheDir: filepath.Join(cfg.Root, "cni"),
	}, log.With("component", "network"))
	if err != nil {
		return err
	}
	defer net.Close()
	handlers := runtimeHandlers(cfg, log)
	// The container manager owns the handlers (a reload replaces them);
	// it is made after the pods' manager, which it needs.
	var containers *container.Manager
	selinux := selinuxEnabled()
	// Pods in a user namespace need the image layers mounted idmapped.
	idmapLayers := true
	if err := namespaces.IDMapSupported(cfg.Root); err != nil {
		idmapLayers = false
		log.Info("pods in a user namespace (hostUsers: false) cannot run: crid's root cannot be mounted idmapped", "root", cfg.Root, "error", err)
	}
	pods, err := sandbox.New(sandbox.Config{StateDir: cfg.State, ShmSize: cfg.ShmSize, SELinuxEnabled: selinux,
		HasHandler:     func(name string) bool { return containers.HasHandler(name) },
		SupportsUserNS: func(name string) bool { return containers.SupportsUserNS(name) },
	}, db, net, log.With("component", "sandbox"))
	if err != nil {
		return err
	}
	checkpointOff, criuDir := checkpointState(ctx, cfg, log)
	containers, err = container.New(container.Config{
		Version:        version,
		RootDir:        cfg.Root,
		StateDir:       cfg.State,
		CgroupDriver:   cgroup.Driver(cfg.CgroupDriver),
		Handlers:       handlers,
		DefaultHandler: cfg.DefaultRuntime,
		SandboxImage:   cfg.Image.SandboxImage,
		SELinuxEnabled: selinux,
		CDISpecDirs:    cfg.CDI.SpecDirs,
		IDMapLayers:    idmapLayers,
		CheckpointOff:  checkpointOff,
		CRIUDir:        criuDir,
	}, db, rt, images, pods, log.With("component", "container"))
	if err != nil {
		return err
	}
	pods.Containers = containers
	pods.Infra = containers
	images.InUse = containers.InUse

	var nriErr error
	if cfg.NRI.Enable {
		var plugins *nri.Service
		if plugins, nriErr = startNRI(cfg, pods, containers, log.With("component", "nri")); nriErr != nil {
			log.Warn("NRI is unavailable: serving CRI without it", "socket", cfg.NRI.SocketPath, "error", nriErr)
		} else {
			defer plugins.Stop()
			log.Info("NRI serving", "socket", cfg.NRI.SocketPath, "plugin_path", cfg.NRI.PluginPath)
		}
	}
	containers.OnInfraExit = func(podID string) { pods.Repair(ctx, podID) }
	go containers.WatchExits(ctx)
	// Serve first, reconcile in the background: a hung runc or CNI plugin
	// holds up only the object it works on, never the socket.
	go reconcile(ctx, containers, pods, reconcileInterval, log)
	go reloadOnHUP(ctx, hup, cfg, reload, live{level: &logLevel, setHandlers: func(next config.Config) []string {
		return containers.SetHandlers(runtimeHandlers(next, log), next.DefaultRuntime)
	}}, log)

	d := deps{cfg: cfg, log: log, db: db, images: images, rt: rt, net: net, pods: pods, containers: containers}
	streaming, err := setupStreaming(ctx, d)
	if err != nil {
		return err
	}
	obs, err := setupObservability(ctx, d)
	if err != nil {
		return err
	}
	svc := server.Services{
		Images: images, Pods: pods, Containers: containers, Streaming: streaming,
		Events: obs.events, Metrics: obs.metrics, NRIUnavailable: nriErr,
	}
	if obs.stats != nil {
		svc.Stats = obs.stats // a nil *stats.Service must not become a non-nil interface
	}
	srv := server.New(cfg, svc, version, log)
	srv.OnListening = func() { notifySystemd(log, daemon.SdNotifyReady) }
	defer notifySystemd(log, daemon.SdNotifyStopping)
	log.Info("crid starting", "version", version, "root", cfg.Root, "state", cfg.State,
		"cgroup_driver", cfg.CgroupDriver, "cgroup_driver_source", driverSource)
	if err := srv.Serve(ctx, 10*time.Second); err != nil {
		return err
	}
	log.Info("crid stopped")
	return nil
}

// selinuxEnabled reports whether the host has SELinux (selinuxfs mounted).
func selinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

// runtimeHandlers resolves the configured OCI runtimes; one whose binary is
// missing is left out with a warning rather than failing every pod.
func runtimeHandlers(cfg config.Config, log *slog.Logger) map[string]oci.Handler {
	out := map[string]oci.Handler{}
	for name, r := range cfg.Runtimes {
		path, err := exec.LookPath(r.Path)
		if err != nil {
			log.Warn("runtime handler unavailable", "handler", name, "path", r.Path, "error", err)
			continue
		}
		root := r.Root
		if root == "" {
			root = filepath.Join(cfg.State, name)
		}
		out[name] = oci.Handler{Name: name, Path: path, Root: root, Args: r.Args, SystemdCgroup: cfg.CgroupDriver == "systemd"}
	}
	if h, ok := out[cfg.DefaultRuntime]; ok {
		out[""] = h
	}
	return out
}

// deps are the services crid is made of, for the setup of the servers that
// sit beside the CRI socket (streaming, metrics).
type deps struct {
	cfg        config.Config
	log        *slog.Logger
	db         *store.Store
	images     *image.Service
	rt         *oci.Runtime
	net        *network.Manager
	pods       *sandbox.Manager
	containers *container.Manager
}
