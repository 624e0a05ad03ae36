package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/crid-project/crid/internal/apparmor"
	"github.com/crid-project/crid/internal/container/spec"
)

// hostFacts are limits of the machine crid must respect when asking runc for
// things: asking for more fails the whole create.
type hostFacts struct {
	// apparmor is the host's AppArmor, nil when it has none (profiles are
	// then not applied; Localhost ones are refused).
	apparmor spec.AppArmorHost
	// capabilities in crid's bounding set, as "CAP_*" names.
	capabilities []string
	// minOOMScoreAdj is the lowest oom_score_adj a container may get:
	// without CAP_SYS_RESOURCE nothing may go below crid's own.
	minOOMScoreAdj int
	// swapLimit: the memory cgroup can limit swap (runc fails a container
	// with a swap limit otherwise).
	swapLimit bool
	// hugetlb: runc can set hugepage limits, i.e. the hugetlb controller is
	// a v1 hierarchy or, on a unified (v2 only) host, enabled in the root's
	// cgroup.controllers. On a hybrid host runc manages v1 controllers only,
	// so hugetlb listed in the v2 hierarchy alone does not count.
	hugetlb bool
}

func readHostFacts() (hostFacts, error) {
	caps, err := capability.NewPid2(0)
	if err != nil {
		return hostFacts{}, fmt.Errorf("read capabilities: %w", err)
	}
	if err := caps.Load(); err != nil {
		return hostFacts{}, fmt.Errorf("read capabilities: %w", err)
	}
	supported, err := capability.ListSupported()
	if err != nil {
		return hostFacts{}, fmt.Errorf("list capabilities: %w", err)
	}
	var h hostFacts
	for _, c := range supported {
		if caps.Get(capability.BOUNDING, c) {
			h.capabilities = append(h.capabilities, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	for _, f := range []string{"/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "/sys/fs/cgroup/memory.swap.max", "/sys/fs/cgroup/init.scope/memory.swap.max"} {
		if _, err := os.Stat(f); err == nil {
			h.swapLimit = true
		}
	}
	h.hugetlb = hugetlbController("/proc/self/mountinfo", "/sys/fs/cgroup")
	if apparmor.Enabled() {
		h.apparmor = apparmor.Host{}
	}
	h.minOOMScoreAdj = -1000
	if !caps.Get(capability.BOUNDING, capability.CAP_SYS_RESOURCE) {
		raw, err := os.ReadFile("/proc/self/oom_score_adj")
		if err != nil {
			return hostFacts{}, err
		}
		if h.minOOMScoreAdj, err = strconv.Atoi(strings.TrimSpace(string(raw))); err != nil {
			return hostFacts{}, fmt.Errorf("parse oom_score_adj: %w", err)
		}
	}
	return h, nil
}

// runtimeCaps are the optional things an OCI runtime can do that crid uses.
type runtimeCaps struct {
	rro   bool // recursively read-only bind mounts
	idmap bool // idmapped bind mounts (runc 1.2, crun 1.9)
}

// criuCaps are the CRIU options of an OCI runtime that crid uses. They are
// asked for at the first checkpoint or restore, not at start: each is a
// run of the runtime, and crid's start is on the kubelet's path.
type criuCaps struct {
	// restore: `restore --manage-cgroups-mode ignore` (runc 1.2). A
	// restore must put the processes into the new container's cgroup,
	// where the runtime puts CRIU; in the other modes CRIU re-creates the
	// checkpointed container's cgroup and puts them there (seen with runc
	// 1.1 on cgroup v2), where the new container cannot kill them.
	restore bool
	// skipInFlight: `checkpoint --tcp-skip-in-flight` (runc 1.2). A
	// connection a frozen pod has not accepted yet fails a dump without
	// it; with it the connection is left out (its client sees a reset).
	skipInFlight bool
}

// runtimeFeatures asks an OCI runtime what it supports (`runc features`,
// runtime-spec's features document). A runtime that cannot say supports
// nothing optional.
func runtimeFeatures(path string) runtimeCaps {
	var c runtimeCaps
	out, err := probe(path, "features")
	if err != nil {
		return c
	}
	var f features.Features
	if json.Unmarshal(out, &f) != nil {
		return c
	}
	c.rro = slices.Contains(f.MountOptions, "rro")
	if l := f.Linux; l != nil && l.MountExtensions != nil && l.MountExtensions.IDMap != nil {
		c.idmap = l.MountExtensions.IDMap.Enabled != nil && *l.MountExtensions.IDMap.Enabled
	}
	return c
}

// runtimeCRIU asks an OCI runtime which of the CRIU options crid uses it has.
func runtimeCRIU(path string) criuCaps {
	return criuCaps{
		restore:      helpLine(path, "restore", "--manage-cgroups-mode", "ignore"),
		skipInFlight: helpLine(path, "checkpoint", "--tcp-skip-in-flight", ""),
	}
}

// probe runs the runtime to ask it something, bounded: a runtime that hangs
// must not hang crid's start (what it would have said counts as absent).
func probe(path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	// A child the runtime left behind may hold the output pipe open.
	cmd.WaitDelay = time.Second
	return cmd.Output()
}

// helpLine reports whether the runtime's help for a subcommand has the
// option, with want on its line: the features document does not list
// CRIU's options.
func helpLine(path, subcommand, option, want string) bool {
	out, err := probe(path, subcommand, "--help")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, option) {
			return strings.Contains(line, want)
		}
	}
	return false
}

// hugetlbController says whether runc can set hugepage limits: on a unified
// host (cgroup2 mounted at root) the hugetlb controller is in root's
// cgroup.controllers; otherwise a v1 cgroup hierarchy with the hugetlb
// option is mounted (runc's v1 manager finds hierarchies in mountinfo).
func hugetlbController(mountinfo, root string) bool {
	raw, err := os.ReadFile(mountinfo)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(raw)) {
		// "36 31 0:33 / /sys/fs/cgroup/hugetlb rw - cgroup cgroup rw,hugetlb":
		// the mount point is field 5, after " - " come the type, the
		// source and the super options.
		pre, post, ok := strings.Cut(line, " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		switch {
		case tail[0] == "cgroup2" && fields[4] == root:
			ctl, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
			return err == nil && slices.Contains(strings.Fields(string(ctl)), "hugetlb")
		case tail[0] == "cgroup" && slices.Contains(strings.Split(tail[2], ","), "hugetlb"):
			return true
		}
	}
	return false
}
