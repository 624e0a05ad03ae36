package spec

import (
	"fmt"
	"maps"
	"regexp"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Kernel limits the cgroup files accept (cgroup v1 names; runc converts them
// for v2).
const (
	minShares = 2
	maxShares = 262144
	// cpu.cfs_period_us range.
	minPeriod = 1000
	maxPeriod = 1000000
	// cpu.cfs_quota_us minimum when limited.
	minQuota = 1000
	// Below this the container cannot even start its process; runc would
	// fail with a confusing EBUSY/OOM instead.
	minMemory = 6 * 1024 * 1024
	minOOMAdj = -1000
	maxOOMAdj = 1000
)

// cpuset is the cpuset.cpus / cpuset.mems list syntax: "0-3,5".
var cpuset = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

// setResources translates the CRI container resources, rejecting values the
// kernel would refuse so that the error names the field instead of being a
// runc start failure.
func setResources(s *specs.Spec, r *runtimeapi.LinuxContainerResources, swapSupported bool) error {
	if r == nil {
		return nil
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	const f = "linux.resources."
	cpu := &specs.LinuxCPU{}
	setCPU := false
	if v := r.GetCpuShares(); v != 0 {
		if v < minShares || v > maxShares {
			return invalid(f+"cpu_shares", "%d outside [%d, %d]", v, minShares, maxShares)
		}
		u := uint64(v)
		cpu.Shares, setCPU = &u, true
	}
	if v := r.GetCpuPeriod(); v != 0 {
		if v < minPeriod || v > maxPeriod {
			return invalid(f+"cpu_period", "%d outside [%d, %d]", v, minPeriod, maxPeriod)
		}
		u := uint64(v)
		cpu.Period, setCPU = &u, true
	}
	// -1 is "unlimited"; 0 is unset.
	if v := r.GetCpuQuota(); v != 0 {
		if v != -1 && v < minQuota {
			return invalid(f+"cpu_quota", "%d: must be -1 or at least %d", v, minQuota)
		}
		q := v
		cpu.Quota, setCPU = &q, true
	}
	if v := strings.TrimSpace(r.GetCpusetCpus()); v != "" {
		if !cpuset.MatchString(v) {
			return invalid(f+"cpuset_cpus", "malformed list %q", v)
		}
		cpu.Cpus, setCPU = v, true
	}
	if v := strings.TrimSpace(r.GetCpusetMems()); v != "" {
		if !cpuset.MatchString(v) {
			return invalid(f+"cpuset_mems", "malformed list %q", v)
		}
		cpu.Mems, setCPU = v, true
	}
	if setCPU {
		s.Linux.Resources.CPU = cpu
	}

	limit, swap := r.GetMemoryLimitInBytes(), r.GetMemorySwapLimitInBytes()
	if limit < 0 {
		return invalid(f+"memory_limit_in_bytes", "%d is negative", limit)
	}
	if limit != 0 && limit < minMemory {
		return invalid(f+"memory_limit_in_bytes", "%d is below the minimum of %d bytes", limit, minMemory)
	}
	if swap < -1 {
		return invalid(f+"memory_swap_limit_in_bytes", "%d: must be -1 (unlimited) or positive", swap)
	}
	if swap > 0 && limit != 0 && swap < limit {
		// memsw is memory+swap, so it cannot be below the memory limit.
		return invalid(f+"memory_swap_limit_in_bytes", "%d is below memory_limit_in_bytes %d", swap, limit)
	}
	if limit != 0 || swap != 0 {
		mem := &specs.LinuxMemory{}
		if limit != 0 {
			l := limit
			mem.Limit = &l
		}
		if swapSupported {
			// Without an explicit swap limit, swap = memory limit: the
			// container cannot swap, as containerd does.
			sw := swap
			if sw == 0 {
				sw = limit
			}
			if sw != 0 {
				mem.Swap = &sw
			}
		}
		s.Linux.Resources.Memory = mem
	}

	for i, h := range r.GetHugepageLimits() {
		if h == nil {
			continue
		}
		if !validPageSize(h.GetPageSize()) {
			return invalid(fmt.Sprintf("%shugepage_limits[%d].page_size", f, i), "malformed %q (want e.g. 2MB, 1GB)", h.GetPageSize())
		}
		s.Linux.Resources.HugepageLimits = append(s.Linux.Resources.HugepageLimits,
			specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	if u := r.GetUnified(); len(u) > 0 {
		for k := range u {
			// runc writes these as files under the container's cgroup.
			if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
				return invalid(f+"unified", "bad cgroup file name %q", k)
			}
		}
		s.Linux.Resources.Unified = maps.Clone(u)
	}
	return nil
}

var pageSize = regexp.MustCompile(`^[0-9]+(KB|MB|GB|TB|PB)$`)

func validPageSize(s string) bool { return pageSize.MatchString(s) }

// oomScoreAdj returns the container's oom_score_adj, raised to floor: a
// process without CAP_SYS_RESOURCE cannot set a score below its own, and runc
// would fail the create.
func oomScoreAdj(r *runtimeapi.LinuxContainerResources, floor int) (*int, error) {
	v := r.GetOomScoreAdj()
	if v < minOOMAdj || v > maxOOMAdj {
		return nil, invalid("linux.resources.oom_score_adj", "%d outside [%d, %d]", v, minOOMAdj, maxOOMAdj)
	}
	adj := max(int(v), floor)
	return &adj, nil
}
