// Package node tells what this node has and lacks for running pods: the
// OCI runtimes and their versions, conmon, the CNI network, cgroups and
// the cgroup driver, AppArmor and SELinux, CRIU, idmapped mounts and the
// kernel. `crid
// check` prints it; an operator reads it before pointing a kubelet at
// crid. Written by hand: it is a list of facts read from /proc, /sys and
// the binaries' own --version, which no library gathers.
package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crid-project/crid/internal/checkpoint"
	"github.com/crid-project/crid/internal/config"
)

// Fact is one thing checked.
type Fact struct {
	Name   string
	OK     bool
	Detail string
	// Fatal: without it no pod can run (a missing runtime or monitor),
	// as opposed to a feature some pods need.
	Fatal bool
}

// Paths are where the facts are read; tests point them elsewhere.
type Paths struct {
	Proc, Sys string
	// Modules holds the kernel modules, one dir per release.
	Modules string
}

// Host is the real node.
var Host = Paths{Proc: "/proc", Sys: "/sys", Modules: "/lib/modules"}

// Network reports whether the CNI network is usable (network.Manager.Ready).
type Network func() (ok bool, reason, message string)

// Check gathers the facts for cfg. Binaries are run with a short timeout
// each, so a hung one cannot hang the check.
func Check(ctx context.Context, cfg config.Config, net Network, p Paths) []Fact {
	var out []Fact
	names := make([]string, 0, len(cfg.Runtimes))
	for name := range cfg.Runtimes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := binary(ctx, "runtime handler "+name, cfg.Runtimes[name].Path, "--version")
		f.Fatal = name == cfg.DefaultRuntime
		if !f.OK && !f.Fatal {
			f.Detail += " (pods of this RuntimeClass cannot run; the handler is not advertised)"
		}
		out = append(out, f)
	}
	if _, ok := cfg.Runtimes[cfg.DefaultRuntime]; !ok {
		out = append(out, Fact{Name: "default runtime", Detail: fmt.Sprintf("%q is not a configured handler", cfg.DefaultRuntime), Fatal: true})
	}
	conmon := binary(ctx, "conmon", cfg.ConmonPath, "--version")
	conmon.Fatal = true
	out = append(out, conmon)
	for _, dir := range []string{cfg.Root, cfg.State} {
		out = append(out, dirFact(dir))
	}
	out = append(out, fsFact(p, "overlay", true), cgroupFact(p, cfg.CgroupDriver))
	if net != nil {
		ok, reason, msg := net()
		f := Fact{Name: "CNI network", OK: ok, Detail: cfg.Network.ConfDir}
		if !ok {
			f.Detail = reason + ": " + msg + " (only host-network pods can run)"
		}
		out = append(out, f)
	}
	kernel := kernelFact()
	out = append(out, apparmorFact(p), selinuxFact(p), criuFact(ctx, cfg), idmapFact(ctx, cfg, kernel.Detail), kernel)
	return out
}

// Failed reports whether any fatal fact is not OK.
func Failed(facts []Fact) bool {
	for _, f := range facts {
		if f.Fatal && !f.OK {
			return true
		}
	}
	return false
}

// Print writes the facts, one a line: "ok", "MISSING" (fatal) or "no".
func Print(w io.Writer, facts []Fact) {
	for _, f := range facts {
		mark := "ok"
		switch {
		case !f.OK && f.Fatal:
			mark = "MISSING"
		case !f.OK:
			mark = "no"
		}
		fmt.Fprintf(w, "%-8s %-26s %s\n", mark, f.Name, f.Detail)
	}
}

// binary resolves path and reads the first line of `path arg`.
func binary(ctx context.Context, name, path, arg string) Fact {
	abs, err := exec.LookPath(path)
	if err != nil {
		return Fact{Name: name, Detail: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, abs, arg).Output()
	if err != nil {
		return Fact{Name: name, Detail: fmt.Sprintf("%s: %s %s: %v", abs, abs, arg, err)}
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return Fact{Name: name, OK: true, Detail: abs + ": " + line}
}

func dirFact(dir string) Fact {
	f := Fact{Name: "dir " + dir, Fatal: true}
	// The dir may not exist yet (crid makes it); its parent must take it.
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			if err := unix.Access(d, unix.W_OK|unix.X_OK); err != nil {
				f.Detail = fmt.Sprintf("%s: %v", d, err)
				return f
			}
			f.OK, f.Detail = true, "writable"
			return f
		}
		if d == filepath.Dir(d) {
			f.Detail = "no existing parent"
			return f
		}
	}
}

// fsFact reports whether the kernel has filesystem fs.
func fsFact(p Paths, fs string, fatal bool) Fact {
	f := Fact{Name: fs, Fatal: fatal, Detail: "not in " + filepath.Join(p.Proc, "filesystems")}
	b, err := os.ReadFile(filepath.Join(p.Proc, "filesystems"))
	if err != nil {
		f.Detail = err.Error()
		return f
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 0 && fields[len(fields)-1] == fs {
			f.OK, f.Detail = true, "in the kernel"
		}
	}
	if !f.OK && p.Modules != "" {
		// A module the kernel loads on the first mount (Debian's overlay).
		var u unix.Utsname
		if unix.Uname(&u) == nil {
			release := unix.ByteSliceToString(u.Release[:])
			if m, _ := filepath.Glob(filepath.Join(p.Modules, release, "kernel", "fs", "*", fs+".ko*")); len(m) > 0 {
				f.OK, f.Detail = true, "a module, loaded by the first mount ("+m[0]+")"
			}
		}
	}
	return f
}

// cgroupFact tells the cgroup layout: unified (v2), hybrid (v1 with a v2
// mount beside) or legacy (v1), and the driver configured.
func cgroupFact(p Paths, driver string) Fact {
	root := filepath.Join(p.Sys, "fs", "cgroup")
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return Fact{Name: "cgroups", Detail: err.Error(), Fatal: true}
	}
	layout := "v1 (legacy)"
	switch {
	case st.Type == unix.CGROUP2_SUPER_MAGIC:
		layout = "v2 (unified)"
		if b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
			layout += ", controllers: " + strings.TrimSpace(string(b))
		}
	default:
		var u unix.Statfs_t
		if unix.Statfs(filepath.Join(root, "unified"), &u) == nil && u.Type == unix.CGROUP2_SUPER_MAGIC {
			layout = "v1 with v2 at " + filepath.Join(root, "unified") + " (hybrid)"
		}
	}
	systemd := false
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		systemd = true
	}
	detail := fmt.Sprintf("%s; driver %s", layout, driver)
	if systemd && driver != "systemd" {
		detail += " (systemd runs this node: the kubelet most likely uses the systemd driver; set cgroup_driver to match)"
	}
	return Fact{Name: "cgroups", OK: true, Detail: detail}
}

func apparmorFact(p Paths) Fact {
	b, err := os.ReadFile(filepath.Join(p.Sys, "module", "apparmor", "parameters", "enabled"))
	if err != nil || strings.TrimSpace(string(b)) != "Y" {
		return Fact{Name: "AppArmor", Detail: "not enabled: RuntimeDefault is a no-op, Localhost profiles fail"}
	}
	return Fact{Name: "AppArmor", OK: true, Detail: "enabled: RuntimeDefault applies crid-default, Localhost applies loaded profiles"}
}

func selinuxFact(p Paths) Fact {
	b, err := os.ReadFile(filepath.Join(p.Sys, "fs", "selinux", "enforce"))
	if err != nil {
		return Fact{Name: "SELinux", Detail: "not enabled"}
	}
	return Fact{Name: "SELinux", OK: true, Detail: "enabled, enforce=" + strings.TrimSpace(string(b)) + " (crid applies no labels: requests carrying SELinux options are refused)"}
}

func criuFact(ctx context.Context, cfg config.Config) Fact {
	if cfg.Checkpoint.Enable == "off" {
		return Fact{Name: "CRIU", Detail: "checkpointing is off ([checkpoint] enable)"}
	}
	criu := checkpoint.CheckCRIU(ctx, cfg.Checkpoint.CRIU)
	if criu.Err != nil {
		return Fact{Name: "CRIU", Detail: criu.Err.Error() + ": no checkpoints"}
	}
	return Fact{Name: "CRIU", OK: true, Detail: criu.Path + " check passed"}
}

func kernelFact() Fact {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Fact{Name: "kernel", Detail: err.Error()}
	}
	return Fact{Name: "kernel", OK: true, Detail: unix.ByteSliceToString(u.Release[:])}
}
