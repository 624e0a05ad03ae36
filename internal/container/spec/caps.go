package spec

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// knownCaps are the Linux capabilities by number (linux/capability.h).
var knownCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// defaultCaps is Docker's and containerd's default set for unprivileged
// containers.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// HostCapabilities returns the names of the capabilities in crid's bounding
// set (CapBnd of /proc/self/status), for Input.HostCapabilities.
func HostCapabilities() ([]string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read capability bounding set: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parse CapBnd %q: %w", v, err)
		}
		var caps []string
		for i, name := range knownCaps {
			if mask&(1<<uint(i)) != 0 {
				caps = append(caps, name)
			}
		}
		return caps, nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read capability bounding set: %w", err)
	}
	return nil, fmt.Errorf("no CapBnd in /proc/self/status")
}

// capName normalizes a CRI capability name ("net_admin", "CAP_NET_ADMIN").
func capName(field, c string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if !slices.Contains(knownCaps, n) {
		return "", invalid(field, "unknown capability %q", c)
	}
	return n, nil
}

func isAll(c string) bool {
	u := strings.ToUpper(strings.TrimSpace(c))
	return u == "ALL" || u == "CAP_ALL"
}

// capabilities computes the process capability sets. Start from the default
// set (all of them when privileged), apply "ALL" in add then in drop, then the
// individual adds and drops, so that add ALL + drop X is everything but X and
// drop ALL + add X is only X. Ambient capabilities are also put in every
// other set, since the kernel refuses to raise an ambient capability missing
// from the permitted or inheritable set. Everything is limited to the host's
// bounding set.
func capabilities(sc *runtimeapi.LinuxContainerSecurityContext, host []string) (*specs.LinuxCapabilities, error) {
	if host == nil {
		host = knownCaps
	}
	set := map[string]bool{}
	base := defaultCaps
	if sc.GetPrivileged() {
		base = knownCaps
	}
	for _, c := range base {
		set[c] = true
	}
	var ambient []string
	if !sc.GetPrivileged() {
		c := sc.GetCapabilities()
		if slices.ContainsFunc(c.GetAddCapabilities(), isAll) {
			for _, n := range knownCaps {
				set[n] = true
			}
		}
		if slices.ContainsFunc(c.GetDropCapabilities(), isAll) {
			clear(set)
		}
		for _, a := range c.GetAddCapabilities() {
			if isAll(a) {
				continue
			}
			n, err := capName("linux.security_context.capabilities.add_capabilities", a)
			if err != nil {
				return nil, err
			}
			set[n] = true
		}
		for _, d := range c.GetDropCapabilities() {
			if isAll(d) {
				continue
			}
			n, err := capName("linux.security_context.capabilities.drop_capabilities", d)
			if err != nil {
				return nil, err
			}
			delete(set, n)
		}
		for _, a := range c.GetAddAmbientCapabilities() {
			n, err := capName("linux.security_context.capabilities.add_ambient_capabilities", a)
			if err != nil {
				return nil, err
			}
			if slices.Contains(host, n) && !slices.Contains(ambient, n) {
				ambient = append(ambient, n)
			}
			set[n] = true
		}
	}
	// Keep knownCaps order so the spec is deterministic.
	caps := []string{}
	for _, n := range knownCaps {
		if set[n] && slices.Contains(host, n) {
			caps = append(caps, n)
		}
	}
	out := &specs.LinuxCapabilities{
		Bounding:  caps,
		Effective: slices.Clone(caps),
		Permitted: slices.Clone(caps),
	}
	if len(ambient) > 0 {
		slices.SortFunc(ambient, func(a, b string) int { return slices.Index(knownCaps, a) - slices.Index(knownCaps, b) })
		out.Inheritable = ambient
		out.Ambient = slices.Clone(ambient)
	}
	return out, nil
}
