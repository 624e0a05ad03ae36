package spec

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultPath is the PATH a container gets when neither the image nor the
// CRI config sets one (the value Docker and containerd use).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// processArgs merges the CRI command/args with the image's entrypoint/cmd the
// way Docker does (and the kubelet expects):
//   - command set: it replaces the entrypoint, and the image cmd is dropped
//     (args, if any, follow the command);
//   - only args set: they replace the image cmd after the image entrypoint;
//   - neither: entrypoint + cmd.
func processArgs(c *runtimeapi.ContainerConfig, img *ocispec.ImageConfig) ([]string, error) {
	command, args := c.GetCommand(), c.GetArgs()
	if len(command) == 0 {
		if len(args) == 0 {
			args = img.Cmd
		}
		// An entrypoint of [""] is how an image resets an inherited one.
		if !(len(img.Entrypoint) == 1 && img.Entrypoint[0] == "") {
			command = img.Entrypoint
		}
	}
	out := make([]string, 0, len(command)+len(args))
	out = append(out, command...)
	out = append(out, args...)
	if len(out) == 0 || out[0] == "" {
		return nil, fmt.Errorf("%w: command: %w", errdefs.ErrInvalidArgument, errNoCommand)
	}
	return out, nil
}

// processEnv returns the image env overridden key by key by the CRI envs, with
// HOSTNAME set to the pod's hostname (as containerd does, before the others,
// so an explicit HOSTNAME env wins) and a default PATH.
func processEnv(c *runtimeapi.ContainerConfig, img *ocispec.ImageConfig, hostname string) []string {
	var (
		env   []string
		index = map[string]int{}
	)
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			env[i] = kv
			return
		}
		index[k] = len(env)
		env = append(env, kv)
	}
	if hostname != "" {
		set("HOSTNAME=" + hostname)
	}
	for _, kv := range img.Env {
		set(kv)
	}
	for _, kv := range c.GetEnvs() {
		if kv.GetKey() == "" {
			continue
		}
		set(kv.GetKey() + "=" + string(kv.GetValue()))
	}
	if _, ok := index["PATH"]; !ok {
		env = append(env, defaultPath)
	}
	return env
}

func workingDir(c *runtimeapi.ContainerConfig, img *ocispec.ImageConfig) string {
	if wd := c.GetWorkingDir(); wd != "" {
		return wd
	}
	if img.WorkingDir != "" {
		return img.WorkingDir
	}
	return "/"
}

// StopSignal returns the signal that stops a container of this image: the
// image's StopSignal ("SIGTERM", "TERM" or "15"), SIGTERM when unset or not
// understood.
func StopSignal(img ocispec.ImageConfig) syscall.Signal {
	s, err := ParseSignal(img.StopSignal)
	if err != nil {
		return syscall.SIGTERM
	}
	return s
}

// ParseSignal parses a signal name ("SIGKILL", "kill") or number ("9").
func ParseSignal(v string) (syscall.Signal, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return syscall.SIGTERM, nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("%w: signal %q out of range", errdefs.ErrInvalidArgument, v)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(v)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if s := unix.SignalNum(name); s != 0 {
		return s, nil
	}
	// Real-time signals are written SIGRTMIN+n / SIGRTMAX-n.
	if rest, ok := strings.CutPrefix(name, "SIGRTMIN+"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && 34+n <= 64 {
			return syscall.Signal(34 + n), nil
		}
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMAX-"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && 64-n >= 34 {
			return syscall.Signal(64 - n), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown signal %q", errdefs.ErrInvalidArgument, v)
}
