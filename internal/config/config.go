// Package config owns crid's configuration: its defaults, the TOML file that
// overrides them, and validation. The commented default file that
// `crid config` prints is default.toml, embedded here; a test keeps it equal
// to Default().
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

//go:embed default.toml
var defaultTOML []byte

// DefaultTOML is the full default configuration, commented.
func DefaultTOML() []byte { return bytes.Clone(defaultTOML) }

// Config is crid's whole configuration.
type Config struct {
	// Listen is the CRI endpoint (both services), unix:///path or a path.
	Listen string `toml:"listen" json:"listen"`
	// ImageListen optionally serves the ImageService on a second socket too.
	ImageListen string `toml:"image_listen" json:"image_listen"`
	// Root holds persistent data (images, metadata); State holds what a
	// reboot should forget (sockets, runtime state).
	Root  string `toml:"root" json:"root"`
	State string `toml:"state" json:"state"`

	LogLevel  string `toml:"log_level" json:"log_level"`
	LogFormat string `toml:"log_format" json:"log_format"`

	// CgroupDriver is "cgroupfs" or "systemd"; reported to the kubelet by
	// RuntimeConfig. Empty picks the one the host runs: systemd when
	// systemd booted it.
	CgroupDriver string `toml:"cgroup_driver" json:"cgroup_driver"`

	Image ImageConfig `toml:"image" json:"image"`

	// DefaultRuntime names the runtime handler pods get when the kubelet
	// asks for none (RuntimeClass unset).
	DefaultRuntime string `toml:"default_runtime" json:"default_runtime"`
	// Runtimes are the runtime handlers (RuntimeClass handler names).
	Runtimes map[string]Runtime `toml:"runtimes" json:"runtimes"`
	// ConmonPath is the container monitor binary.
	ConmonPath string `toml:"conmon" json:"conmon"`
	// ShmSize is the size of each pod's /dev/shm, in bytes.
	ShmSize int64 `toml:"shm_size" json:"shm_size"`

	Network NetworkConfig `toml:"network" json:"network"`
	CDI     CDIConfig     `toml:"cdi" json:"cdi"`
	NRI     NRIConfig     `toml:"nri" json:"nri"`

	Checkpoint CheckpointConfig `toml:"checkpoint" json:"checkpoint"`

	Streaming StreamingConfig `toml:"streaming" json:"streaming"`
	Metrics   MetricsConfig   `toml:"metrics" json:"metrics"`
}

// StreamingConfig configures the server that carries exec, attach and
// port-forward streams (the kubelet hands its URLs to kubectl's API server).
type StreamingConfig struct {
	// Address and Port to listen on; port 0 picks a free one.
	Address string `toml:"address" json:"address"`
	Port    int    `toml:"port" json:"port"`
	// TLSCert and TLSKey, both set, serve HTTPS.
	TLSCert string `toml:"tls_cert" json:"tls_cert"`
	TLSKey  string `toml:"tls_key" json:"tls_key"`
	// IdleTimeout ends a stream with no traffic for this long; 0 never.
	IdleTimeout Duration `toml:"idle_timeout" json:"idle_timeout"`
}

// MetricsConfig configures the Prometheus endpoint.
type MetricsConfig struct {
	// Address (host:port) serves /metrics; empty disables it.
	Address string `toml:"address" json:"address"`
}

// Runtime is one runtime handler: an OCI runtime binary and its options.
type Runtime struct {
	// Path of the OCI runtime binary (looked up in PATH when relative).
	Path string `toml:"path" json:"path"`
	// Root is the runtime's state dir (--root); default <state>/<handler>.
	Root string `toml:"root" json:"root"`
	// Args are extra global arguments for the runtime.
	Args []string `toml:"args" json:"args"`
}

// NetworkConfig configures pod networking through CNI.
type NetworkConfig struct {
	ConfDir string   `toml:"conf_dir" json:"conf_dir"`
	BinDirs []string `toml:"bin_dirs" json:"bin_dirs"`
}

// CDIConfig configures the Container Device Interface: the spec files that
// name the devices ContainerConfig.CDI_devices (and the cdi.k8s.io/
// annotations) ask for.
type CDIConfig struct {
	// SpecDirs are searched for CDI spec files (*.json, *.yaml), a later
	// dir's device winning over an earlier one's of the same name; empty:
	// no CDI device resolves.
	SpecDirs []string `toml:"spec_dirs" json:"spec_dirs"`
}

// NRIConfig configures the Node Resource Interface: plugins that see and
// adjust every pod and container (containerd's [nri] keys and defaults).
type NRIConfig struct {
	// Enable serves NRI; plugins connect to SocketPath.
	Enable     bool   `toml:"enable" json:"enable"`
	SocketPath string `toml:"socket_path" json:"socket_path"`
	// PluginPath holds plugins crid starts itself (NN-name executables),
	// configured from PluginConfigPath's NN-name.conf or name.conf.
	PluginPath       string `toml:"plugin_path" json:"plugin_path"`
	PluginConfigPath string `toml:"plugin_config_path" json:"plugin_config_path"`
	// PluginRegistrationTimeout bounds a plugin's registration;
	// PluginRequestTimeout each request to a plugin.
	PluginRegistrationTimeout Duration `toml:"plugin_registration_timeout" json:"plugin_registration_timeout"`
	PluginRequestTimeout      Duration `toml:"plugin_request_timeout" json:"plugin_request_timeout"`
}

// CheckpointConfig configures checkpointing containers with CRIU.
type CheckpointConfig struct {
	// Enable is "auto" (on when `criu check` passes on this host), "on"
	// (a failing check is reported, and every checkpoint fails) or "off".
	Enable string `toml:"enable" json:"enable"`
	// CRIU is the CRIU binary the OCI runtime runs (looked up in PATH when
	// relative).
	CRIU string `toml:"criu" json:"criu"`
}

// ImageConfig configures the image service.
type ImageConfig struct {
	// RegistryConfigDir holds containerd-style <host>/hosts.toml files.
	RegistryConfigDir string `toml:"registry_config_dir" json:"registry_config_dir"`
	// PullProgressTimeout cancels a pull that made no progress for this long;
	// zero disables it.
	PullProgressTimeout Duration `toml:"pull_progress_timeout" json:"pull_progress_timeout"`
	// MaxConcurrentDownloads bounds the layers fetched at once per pull.
	MaxConcurrentDownloads int `toml:"max_concurrent_downloads" json:"max_concurrent_downloads"`
	// PinnedImages are never removed by the kubelet's image GC.
	PinnedImages []string `toml:"pinned_images" json:"pinned_images"`
	// SandboxImage is the pause image used when a pod needs an infra
	// process; it is pinned too.
	SandboxImage string `toml:"sandbox_image" json:"sandbox_image"`
}

// Duration is a time.Duration written as "30s" or "1m" in TOML.
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Listen:    "unix:///run/crid/crid.sock",
		Root:      "/var/lib/crid",
		State:     "/run/crid",
		LogLevel:  "info",
		LogFormat: "text",
		Image: ImageConfig{
			RegistryConfigDir:      "/etc/crid/certs.d",
			PullProgressTimeout:    Duration(time.Minute),
			MaxConcurrentDownloads: 3,
			SandboxImage:           "registry.k8s.io/pause:3.10",
		},
		DefaultRuntime: "runc",
		Runtimes: map[string]Runtime{
			"runc": {Path: "runc"},
			"crun": {Path: "crun"},
			// runc 1.5, built by hack/install-deps.sh: it can idmap
			// mounts (user namespaces); Debian 12's runc cannot.
			"runc-userns": {Path: "/usr/local/libexec/crid/runc"},
		},
		ConmonPath: "conmon",
		ShmSize:    64 << 20,
		Network: NetworkConfig{
			ConfDir: "/etc/cni/net.d",
			BinDirs: []string{"/opt/cni/bin", "/usr/lib/cni"},
		},
		CDI: CDIConfig{SpecDirs: []string{"/etc/cdi", "/var/run/cdi"}},
		NRI: NRIConfig{
			Enable:                    true,
			SocketPath:                "/var/run/nri/nri.sock",
			PluginPath:                "/opt/nri/plugins",
			PluginConfigPath:          "/etc/nri/conf.d",
			PluginRegistrationTimeout: Duration(5 * time.Second),
			PluginRequestTimeout:      Duration(2 * time.Second),
		},
		Checkpoint: CheckpointConfig{Enable: "auto", CRIU: "criu"},
		Streaming: StreamingConfig{
			Address:     "127.0.0.1",
			IdleTimeout: Duration(4 * time.Hour),
		},
		Metrics: MetricsConfig{Address: "127.0.0.1:9640"},
	}
}

// Load reads the TOML file at path over the defaults. Unknown keys are
// errors that name their line: a typo must not silently fall back.
func Load(path string) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := Parse(data, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes TOML data over cfg and validates the result.
func Parse(data []byte, cfg *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return describe(err)
	}
	return cfg.Validate()
}

// describe turns go-toml's errors into one line per problem with its position.
func describe(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		msgs := make([]string, 0, len(strict.Errors))
		for i := range strict.Errors {
			e := &strict.Errors[i]
			row, col := e.Position()
			msgs = append(msgs, fmt.Sprintf("line %d column %d: unknown key %q", row, col, strings.Join(e.Key(), ".")))
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Errorf("line %d column %d: %s", row, col, strings.TrimPrefix(de.Error(), "toml: "))
	}
	return err
}

// Validate checks values the TOML types cannot.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen: must not be empty"))
	}
	for name, dir := range map[string]string{"root": c.Root, "state": c.State} {
		if !filepath.IsAbs(dir) {
			errs = append(errs, fmt.Errorf("%s: %q is not an absolute path", name, dir))
		}
	}
	switch c.CgroupDriver {
	case "", "cgroupfs", "systemd":
	default:
		errs = append(errs, fmt.Errorf("cgroup_driver: %q is neither cgroupfs nor systemd", c.CgroupDriver))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log_format: %q is neither text nor json", c.LogFormat))
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.Image.PullProgressTimeout < 0 {
		errs = append(errs, errors.New("image.pull_progress_timeout: must not be negative"))
	}
	if _, ok := c.Runtimes[c.DefaultRuntime]; !ok {
		errs = append(errs, fmt.Errorf("default_runtime: %q is not among [runtimes]", c.DefaultRuntime))
	}
	for name, r := range c.Runtimes {
		if name == "" || r.Path == "" {
			errs = append(errs, fmt.Errorf("runtimes.%s: a name and a path are required", name))
		}
	}
	if c.Streaming.Port < 0 || c.Streaming.Port > 65535 {
		errs = append(errs, fmt.Errorf("streaming.port: %d is not a port", c.Streaming.Port))
	}
	if (c.Streaming.TLSCert == "") != (c.Streaming.TLSKey == "") {
		errs = append(errs, errors.New("streaming.tls_cert and streaming.tls_key: set both or neither"))
	}
	if c.ShmSize <= 0 {
		errs = append(errs, errors.New("shm_size: must be positive"))
	}
	for i, dir := range c.CDI.SpecDirs {
		if !filepath.IsAbs(dir) {
			errs = append(errs, fmt.Errorf("cdi.spec_dirs[%d]: %q is not an absolute path", i, dir))
		}
	}
	if c.NRI.Enable {
		for key, path := range map[string]string{"socket_path": c.NRI.SocketPath, "plugin_path": c.NRI.PluginPath, "plugin_config_path": c.NRI.PluginConfigPath} {
			if !filepath.IsAbs(path) {
				errs = append(errs, fmt.Errorf("nri.%s: %q is not an absolute path", key, path))
			}
		}
		if c.NRI.PluginRegistrationTimeout <= 0 || c.NRI.PluginRequestTimeout <= 0 {
			errs = append(errs, errors.New("nri.plugin_registration_timeout and nri.plugin_request_timeout: must be positive"))
		}
	}
	switch c.Checkpoint.Enable {
	case "auto", "on", "off":
	default:
		errs = append(errs, fmt.Errorf("checkpoint.enable: %q is not auto, on or off", c.Checkpoint.Enable))
	}
	if c.Checkpoint.Enable != "off" && c.Checkpoint.CRIU == "" {
		errs = append(errs, errors.New("checkpoint.criu: must not be empty"))
	}
	if c.Image.MaxConcurrentDownloads < 1 {
		errs = append(errs, errors.New("image.max_concurrent_downloads: must be at least 1"))
	}
	return errors.Join(errs...)
}
