// Package stats reads the resource usage of containers and pods for the
// CRI stats and metrics calls: CPU, memory and process counts from cgroups
// (v1 or v2, through github.com/opencontainers/cgroups), writable-layer
// usage from the container's overlay upper dir, and network counters from a
// pod's network namespace. Its Collector reads many cgroups concurrently
// with a bound and a deadline, so one stuck cgroup never hangs the kubelet;
// disk usage comes from a UsageCache that one bounded background walker
// keeps, so no call walks a file tree.
package stats

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
)

// CPU is cumulative CPU time, in nanoseconds.
type CPU struct {
	Usage, User, System uint64
	// CFS throttling (cpu.stat).
	Periods, ThrottledPeriods, ThrottledTime uint64
}

// Memory is memory use, in bytes (faults are counts).
type Memory struct {
	Usage, WorkingSet, RSS, Cache, MappedFile, Kernel, MaxUsage uint64
	Swap                                                        uint64
	Failcnt, PgFault, PgMajFault, OOMKills                      uint64
	// Limit is the cgroup's limit; 0 when unlimited.
	Limit uint64
}

// Available is what the cgroup may still use before its limit; 0 when it
// has none (the kubelet then uses the node's).
func (m Memory) Available() uint64 {
	if m.Limit == 0 || m.WorkingSet > m.Limit {
		return 0
	}
	return m.Limit - m.WorkingSet
}

// Cgroup is one reading of a cgroup.
type Cgroup struct {
	Timestamp time.Time
	CPU       CPU
	Memory    Memory
	Pids      uint64
	PidsLimit uint64 // 0: unlimited
	HasSwap   bool   // swap accounting is on
	// PSI is the cgroup's pressure stall information (cgroup v2 with a
	// kernel that has it); nil where there is none.
	PSI PSI
}

// PSI is pressure stall information per resource.
type PSI struct{ CPU, Memory, IO *cgroups.PSIStats }

// Reader reads cgroups by their path relative to the hierarchy root (the
// cgroupfs form of an OCI cgroupsPath, e.g. /crid/crid-<id>).
type Reader struct {
	v2 bool
	// root is the v2 mount; mounts the v1 subsystem → mountpoint.
	root   string
	mounts map[string]string
	// hybrid is the v2 hierarchy of a v1 host that has one (runc puts each
	// container there too, at the same path): cgroup v2 keeps pressure
	// stall information for every cgroup, controllers or not.
	hybrid string
}

// NewReader detects the host's cgroup version and mounts.
func NewReader() (*Reader, error) {
	if cgroups.IsCgroup2UnifiedMode() {
		return &Reader{v2: true, root: "/sys/fs/cgroup"}, nil
	}
	r := &Reader{mounts: map[string]string{}}
	for _, ss := range []string{"cpuacct", "cpu", "memory", "pids"} {
		mnt, err := cgroups.FindCgroupMountpoint("", ss)
		if err != nil {
			return nil, fmt.Errorf("find cgroup v1 %s mount: %w", ss, err)
		}
		r.mounts[ss] = mnt
	}
	if cgroups.IsCgroup2HybridMode() {
		r.hybrid = hybridMountpoint
	}
	return r, nil
}

// hybridMountpoint is where systemd and runc mount the v2 hierarchy of a
// cgroup v1 host (opencontainers/cgroups tests for exactly this path).
const hybridMountpoint = "/sys/fs/cgroup/unified"

// newReaderAt is a Reader over fixture directories (tests).
func newReaderAt(v2 bool, root string, mounts map[string]string, hybrid string) *Reader {
	return &Reader{v2: v2, root: root, mounts: mounts, hybrid: hybrid}
}

// ErrNoCgroup reports a cgroup that does not exist (a container that has
// not started, or is gone).
var ErrNoCgroup = errors.New("cgroup does not exist")

// Read reads the cgroup at path.
func (r *Reader) Read(path string) (Cgroup, error) {
	if r.v2 {
		return r.readV2(filepath.Join(r.root, path))
	}
	return r.readV1(path)
}

func (r *Reader) readV1(path string) (Cgroup, error) {
	out := Cgroup{Timestamp: time.Now()}
	memDir := filepath.Join(r.mounts["memory"], path)
	if _, err := os.Stat(memDir); err != nil {
		return out, fmt.Errorf("%s: %w", memDir, ErrNoCgroup)
	}
	st := cgroups.NewStats()
	if err := (&fs.CpuacctGroup{}).GetStats(filepath.Join(r.mounts["cpuacct"], path), st); err != nil {
		return out, fmt.Errorf("read cpuacct of %s: %w", path, err)
	}
	if err := (&fs.CpuGroup{}).GetStats(filepath.Join(r.mounts["cpu"], path), st); err != nil {
		return out, fmt.Errorf("read cpu of %s: %w", path, err)
	}
	if err := (&fs.MemoryGroup{}).GetStats(memDir, st); err != nil {
		return out, fmt.Errorf("read memory of %s: %w", path, err)
	}
	if err := (&fs.PidsGroup{}).GetStats(filepath.Join(r.mounts["pids"], path), st); err != nil && !os.IsNotExist(err) {
		return out, fmt.Errorf("read pids of %s: %w", path, err)
	}
	out.CPU = cpuFrom(st)
	ms := st.MemoryStats
	m := Memory{
		Usage:      ms.Usage.Usage,
		MaxUsage:   ms.Usage.MaxUsage,
		Failcnt:    ms.Usage.Failcnt,
		Cache:      ms.Stats["total_cache"],
		RSS:        ms.Stats["total_rss"],
		MappedFile: ms.Stats["total_mapped_file"],
		PgFault:    ms.Stats["total_pgfault"],
		PgMajFault: ms.Stats["total_pgmajfault"],
		Kernel:     ms.KernelUsage.Usage,
		Limit:      limit(ms.Usage.Limit),
	}
	// The kubelet's (and cAdvisor's) working set: usage minus what the
	// kernel can drop at once, the inactive file pages.
	m.WorkingSet = sub(m.Usage, ms.Stats["total_inactive_file"])
	if ms.SwapUsage.Limit != 0 || ms.SwapUsage.Usage != 0 {
		out.HasSwap = true
		m.Swap = ms.Stats["total_swap"]
	}
	m.OOMKills = oomKillsV1(memDir)
	out.Memory = m
	out.Pids, out.PidsLimit = st.PidsStats.Current, limit(st.PidsStats.Limit)
	if r.hybrid != "" {
		psi, err := psiV2(filepath.Join(r.hybrid, path))
		if err != nil {
			return out, fmt.Errorf("read pressure of %s: %w", path, err)
		}
		out.PSI = psi
	}
	return out, nil
}

// psiV2 reads a v2 cgroup's pressure files; a cgroup missing from the v2
// hierarchy, or a kernel without PSI, has none (nil, no error).
func psiV2(dir string) (PSI, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return PSI{}, nil
	} else if err != nil {
		return PSI{}, err
	}
	mgr, err := fs2.NewManager(&cgroups.Cgroup{}, dir)
	if err != nil {
		return PSI{}, err
	}
	// Without the controllers enabled only cpu.stat and the pressure files
	// exist; the library skips the missing stat files.
	st, err := mgr.Stats(&cgroups.StatsOptions{Controllers: cgroups.CPU | cgroups.Memory | cgroups.IO})
	if err != nil {
		return PSI{}, err
	}
	return PSI{CPU: st.CpuStats.PSI, Memory: st.MemoryStats.PSI, IO: st.BlkioStats.PSI}, nil
}

func (r *Reader) readV2(dir string) (Cgroup, error) {
	out := Cgroup{Timestamp: time.Now()}
	if _, err := os.Stat(dir); err != nil {
		return out, fmt.Errorf("%s: %w", dir, ErrNoCgroup)
	}
	mgr, err := fs2.NewManager(&cgroups.Cgroup{}, dir)
	if err != nil {
		return out, err
	}
	st, err := mgr.Stats(&cgroups.StatsOptions{Controllers: cgroups.CPU | cgroups.Memory | cgroups.Pids | cgroups.IO})
	if err != nil {
		return out, fmt.Errorf("read cgroup %s: %w", dir, err)
	}
	out.CPU = cpuFrom(st)
	ms := st.MemoryStats
	m := Memory{
		Usage:      ms.Usage.Usage,
		MaxUsage:   ms.Usage.MaxUsage,
		Failcnt:    ms.Usage.Failcnt,
		Cache:      ms.Stats["file"],
		RSS:        ms.Stats["anon"],
		MappedFile: ms.Stats["file_mapped"],
		PgFault:    ms.Stats["pgfault"],
		PgMajFault: ms.Stats["pgmajfault"],
		Kernel:     ms.Stats["kernel"],
		Limit:      limit(ms.Usage.Limit),
	}
	m.WorkingSet = sub(m.Usage, ms.Stats["inactive_file"])
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.current")); err == nil {
		out.HasSwap = true
		m.Swap = ms.SwapOnlyUsage.Usage
	}
	m.OOMKills = keyValue(filepath.Join(dir, "memory.events"), "oom_kill")
	out.Memory = m
	out.Pids, out.PidsLimit = st.PidsStats.Current, limit(st.PidsStats.Limit)
	out.PSI = PSI{CPU: st.CpuStats.PSI, Memory: st.MemoryStats.PSI, IO: st.BlkioStats.PSI}
	return out, nil
}

func cpuFrom(st *cgroups.Stats) CPU {
	u := st.CpuStats.CpuUsage
	t := st.CpuStats.ThrottlingData
	return CPU{
		Usage: u.TotalUsage, User: u.UsageInUsermode, System: u.UsageInKernelmode,
		Periods: t.Periods, ThrottledPeriods: t.ThrottledPeriods, ThrottledTime: t.ThrottledTime,
	}
}

// limit maps the kernel's "no limit" values (max, or a page-rounded
// 2^63-1) to 0.
func limit(v uint64) uint64 {
	if v == math.MaxUint64 || v >= math.MaxInt64-(1<<20) {
		return 0
	}
	return v
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// oomKillsV1 reads oom_kill from memory.oom_control (kernel ≥ 4.13).
func oomKillsV1(dir string) uint64 {
	return keyValue(filepath.Join(dir, "memory.oom_control"), "oom_kill")
}

// keyValue reads "key value" lines; 0 when the file or key is missing.
func keyValue(path, key string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			var n uint64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}
