package stats

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/cgroup"
	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/sandbox"
)

// Containers is what the stats service needs of the container manager.
type Containers interface {
	List() []container.Container
	StatsPaths(sb *sandbox.Sandbox, c *container.Container) (cgroup, upper string)
	LayersDir() string
}

// Pods is what it needs of the sandbox manager.
type Pods interface {
	List() []sandbox.Sandbox
}

// Service answers the CRI stats calls from live cgroup readings and from
// a cache of disk usage that a background walker keeps (Start, Close).
type Service struct {
	coll       *Collector
	reader     *Reader
	usage      *UsageCache
	containers Containers
	pods       Pods
	log        *slog.Logger
}

// Defaults for NewService: reads at a time, and the longest a stats call
// waits for them (the kubelet's own timeout is 2 minutes; eviction needs an
// answer far sooner).
const (
	DefaultConcurrency = 8
	DefaultTimeout     = 5 * time.Second
)

// NewService returns the stats service; it fails if the cgroup hierarchy
// cannot be found. Disk usage is reported once Start runs its walker.
func NewService(containers Containers, pods Pods, log *slog.Logger) (*Service, error) {
	r, err := NewReader()
	if err != nil {
		return nil, err
	}
	return newService(r, containers, pods, UsageOptions{}, log), nil
}

func newService(r *Reader, containers Containers, pods Pods, opt UsageOptions, log *slog.Logger) *Service {
	usage := NewUsageCache(containers.LayersDir(), opt, log)
	coll := NewCollector(r, DefaultConcurrency, DefaultTimeout)
	coll.layers = usage.Dir
	return &Service{coll: coll, reader: r, usage: usage, containers: containers, pods: pods, log: log}
}

// Start runs the disk usage walker until ctx ends or Close.
func (s *Service) Start(ctx context.Context) { s.usage.Start(ctx) }

// LayerMade tells the disk usage cache of a container's writable layer
// dir, made empty just now.
func (s *Service) LayerMade(dir string) {
	if filepath.Dir(filepath.Clean(dir)) == filepath.Clean(s.containers.LayersDir()) {
		s.usage.Made(filepath.Base(dir))
	}
}

// Close stops the disk usage walker and waits for it.
func (s *Service) Close() { s.usage.Close() }

// snapshot is the pods and containers at the start of a call.
type snapshot struct {
	pods map[string]*sandbox.Sandbox
	cs   []container.Container
}

func (s *Service) snapshot() snapshot {
	sn := snapshot{pods: map[string]*sandbox.Sandbox{}, cs: container.Sorted(s.containers.List())}
	for _, sb := range s.pods.List() {
		sn.pods[sb.ID] = &sb
	}
	return sn
}

// hasCgroup: created and running containers have one; runc removes an
// exited container's.
func hasCgroup(c *container.Container) bool {
	return c.State == container.StateRunning || c.State == container.StateCreated
}

func (s *Service) containerTarget(sb *sandbox.Sandbox, c *container.Container) Target {
	cg, upper := s.containers.StatsPaths(sb, c)
	t := Target{Key: c.ID, Layer: upper}
	if hasCgroup(c) {
		t.Cgroup = cg
	}
	return t
}

// ContainerStats is the stats of one container.
func (s *Service) ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error) {
	out, err := s.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{Id: id})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return out[0], nil
}

// ListContainerStats is the stats of the containers that pass f.
func (s *Service) ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	sn := s.snapshot()
	cf := &runtimeapi.ContainerFilter{Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()}
	var cs []container.Container
	var targets []Target
	for _, c := range sn.cs {
		sb, ok := sn.pods[c.SandboxID]
		if !ok || !c.Match(cf) {
			continue
		}
		cs = append(cs, c)
		targets = append(targets, s.containerTarget(sb, &c))
	}
	res := s.coll.Collect(ctx, targets)
	out := make([]*runtimeapi.ContainerStats, len(cs))
	for i := range cs {
		s.logErr(res[i])
		out[i] = s.criContainerStats(&cs[i], res[i])
	}
	return out, nil
}

func (s *Service) logErr(r Result) {
	if r.Err != nil && !errdefs.IsNotFound(r.Err) {
		s.log.Debug("stats incomplete", "id", r.Key, "error", r.Err)
	}
}

func (s *Service) criContainerStats(c *container.Container, r Result) *runtimeapi.ContainerStats {
	cfg := c.ContainerConfig()
	out := &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{
		Id: c.ID, Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
	}}
	if cg := r.Cgroup; cg != nil {
		out.Cpu = criCPU(cg, r.NanoCores, r.HasRate)
		out.Memory = criMemory(cg)
		out.Io = criIO(cg)
		if cg.HasSwap {
			out.Swap = &runtimeapi.SwapUsage{
				Timestamp:      cg.Timestamp.UnixNano(),
				SwapUsageBytes: &runtimeapi.UInt64Value{Value: cg.Memory.Swap},
			}
		}
	}
	if r.Layer != nil {
		out.WritableLayer = &runtimeapi.FilesystemUsage{
			Timestamp:  time.Now().UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: s.containers.LayersDir()},
			UsedBytes:  &runtimeapi.UInt64Value{Value: r.Layer.Bytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: r.Layer.Inodes},
		}
	}
	return out
}

func criCPU(cg *Cgroup, nanoCores uint64, hasRate bool) *runtimeapi.CpuUsage {
	u := &runtimeapi.CpuUsage{
		Timestamp:            cg.Timestamp.UnixNano(),
		UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cg.CPU.Usage},
	}
	if hasRate {
		u.UsageNanoCores = &runtimeapi.UInt64Value{Value: nanoCores}
	}
	u.Psi = criPSI(cg.PSI.CPU)
	return u
}

// criIO is the cgroup's I/O reading: the kubelet takes only its pressure.
func criIO(cg *Cgroup) *runtimeapi.IoUsage {
	if cg.PSI.IO == nil {
		return nil
	}
	return &runtimeapi.IoUsage{Timestamp: cg.Timestamp.UnixNano(), Psi: criPSI(cg.PSI.IO)}
}

func criPSI(p *cgroups.PSIStats) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	data := func(d cgroups.PSIData) *runtimeapi.PsiData {
		return &runtimeapi.PsiData{Total: d.Total, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtimeapi.PsiStats{Full: data(p.Full), Some: data(p.Some)}
}

func criMemory(cg *Cgroup) *runtimeapi.MemoryUsage {
	m := cg.Memory
	return &runtimeapi.MemoryUsage{
		Timestamp:       cg.Timestamp.UnixNano(),
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: m.WorkingSet},
		AvailableBytes:  &runtimeapi.UInt64Value{Value: m.Available()},
		UsageBytes:      &runtimeapi.UInt64Value{Value: m.Usage},
		RssBytes:        &runtimeapi.UInt64Value{Value: m.RSS},
		PageFaults:      &runtimeapi.UInt64Value{Value: m.PgFault},
		MajorPageFaults: &runtimeapi.UInt64Value{Value: m.PgMajFault},
		Psi:             criPSI(cg.PSI.Memory),
	}
}

// podReading is everything read for one pod.
type podReading struct {
	sb         *sandbox.Sandbox
	pod        Result // its own cgroup (if it has a parent) and network
	containers []container.Container
	results    []Result
}

// readPods reads the pods that pass match and all their containers, in one
// concurrent collection.
func (s *Service) readPods(ctx context.Context, match func(*sandbox.Sandbox) bool) []podReading {
	sn := s.snapshot()
	var pods []podReading
	idx := map[string]int{}
	for _, sb := range sandbox.Sorted(valuesOf(sn.pods)) {
		if sb.State != sandbox.StateReady || !match(&sb) {
			continue
		}
		idx[sb.ID] = len(pods)
		pods = append(pods, podReading{sb: sn.pods[sb.ID]})
	}
	var targets []Target
	for i := range pods {
		p := &pods[i]
		t := Target{Key: "pod/" + p.sb.ID}
		// The pod's own cgroup: a cgroupfs path, or a slice the kubelet
		// made with the systemd driver.
		t.Cgroup, _ = cgroup.Dir(p.sb.CgroupParent)
		if path := p.sb.Namespaces[namespaces.Net]; path != "" {
			t.Net = s.netReader(p.sb.ID, path, sn.cs)
		}
		targets = append(targets, t)
	}
	// podOf[j] is the pod of targets[len(pods)+j]: the containers of pods
	// interleave in creation order.
	var podOf []int
	for _, c := range sn.cs {
		if i, ok := idx[c.SandboxID]; ok {
			pods[i].containers = append(pods[i].containers, c)
			targets = append(targets, s.containerTarget(pods[i].sb, &c))
			podOf = append(podOf, i)
		}
	}
	res := s.coll.Collect(ctx, targets)
	for i := range pods {
		pods[i].pod = res[i]
		s.logErr(res[i])
	}
	for j, i := range podOf {
		r := res[len(pods)+j]
		s.logErr(r)
		pods[i].results = append(pods[i].results, r)
	}
	return pods
}

func valuesOf(m map[string]*sandbox.Sandbox) []sandbox.Sandbox {
	out := make([]sandbox.Sandbox, 0, len(m))
	for _, sb := range m {
		out = append(out, *sb)
	}
	return out
}

// netReader reads the pod's network counters through a running container's
// /proc/<pid>/net/dev (no namespace switch), or from inside the pinned
// namespace when no container runs.
func (s *Service) netReader(podID, netns string, cs []container.Container) func() ([]Interface, error) {
	pid := 0
	for _, c := range cs {
		if c.SandboxID == podID && c.State == container.StateRunning && c.Pid > 0 {
			pid = c.Pid
			break
		}
	}
	return func() ([]Interface, error) {
		if pid > 0 {
			if ifs, err := ReadNetDev(fmt.Sprintf("/proc/%d/net/dev", pid)); err == nil {
				return ifs, nil
			}
		}
		var ifs []Interface
		err := namespaces.Do(netns, func() error {
			var err error
			ifs, err = ReadNetDev("/proc/thread-self/net/dev")
			return err
		})
		return ifs, err
	}
}

// PodSandboxStats is the stats of one pod.
func (s *Service) PodSandboxStats(ctx context.Context, id string) (*runtimeapi.PodSandboxStats, error) {
	out, err := s.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{Id: id})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return out[0], nil
}

// ListPodSandboxStats is the stats of the ready pods that pass f.
func (s *Service) ListPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	pf := &runtimeapi.PodSandboxFilter{Id: f.GetId(), LabelSelector: f.GetLabelSelector()}
	pods := s.readPods(ctx, func(sb *sandbox.Sandbox) bool { return sb.Match(pf) })
	out := make([]*runtimeapi.PodSandboxStats, 0, len(pods))
	for _, p := range pods {
		out = append(out, s.criPodStats(&p))
	}
	return out, nil
}

// podCgroup is the pod's own cgroup reading, or, for a pod without a
// cgroup parent (critest's), the sum of its containers'.
func podCgroup(p *podReading) (cg *Cgroup, nanoCores uint64, hasRate bool) {
	if p.pod.Cgroup != nil {
		return p.pod.Cgroup, p.pod.NanoCores, p.pod.HasRate
	}
	var sum *Cgroup
	hasRate = true
	for _, r := range p.results {
		if r.Cgroup == nil {
			continue
		}
		if sum == nil {
			sum = &Cgroup{Timestamp: r.Cgroup.Timestamp}
		}
		c := r.Cgroup
		sum.CPU.Usage += c.CPU.Usage
		sum.CPU.User += c.CPU.User
		sum.CPU.System += c.CPU.System
		m := &sum.Memory
		m.Usage += c.Memory.Usage
		m.WorkingSet += c.Memory.WorkingSet
		m.RSS += c.Memory.RSS
		m.PgFault += c.Memory.PgFault
		m.PgMajFault += c.Memory.PgMajFault
		m.Swap += c.Memory.Swap
		sum.Pids += c.Pids
		sum.HasSwap = sum.HasSwap || c.HasSwap
		nanoCores += r.NanoCores
		hasRate = hasRate && r.HasRate
	}
	return sum, nanoCores, hasRate && sum != nil
}

func (s *Service) criPodStats(p *podReading) *runtimeapi.PodSandboxStats {
	cfg := p.sb.PodConfig()
	out := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id: p.sb.ID, Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		},
		Linux: &runtimeapi.LinuxPodSandboxStats{},
	}
	l := out.Linux
	if cg, nc, ok := podCgroup(p); cg != nil {
		l.Cpu = criCPU(cg, nc, ok)
		l.Memory = criMemory(cg)
		l.Process = &runtimeapi.ProcessUsage{Timestamp: cg.Timestamp.UnixNano(), ProcessCount: &runtimeapi.UInt64Value{Value: cg.Pids}}
		l.Io = criIO(cg) // pressure of the pod's own cgroup; a sum has none
	}
	if ifs := p.pod.Net; ifs != nil {
		ts := time.Now().UnixNano()
		l.Network = &runtimeapi.NetworkUsage{Timestamp: ts}
		for i, in := range ifs {
			cu := &runtimeapi.NetworkInterfaceUsage{
				Name:     in.Name,
				RxBytes:  &runtimeapi.UInt64Value{Value: in.RxBytes},
				RxErrors: &runtimeapi.UInt64Value{Value: in.RxErrors},
				TxBytes:  &runtimeapi.UInt64Value{Value: in.TxBytes},
				TxErrors: &runtimeapi.UInt64Value{Value: in.TxErrors},
			}
			// Interfaces lists every interface, the default one too (the
			// kubelet's summary API does, as cAdvisor's stats do); that
			// one is eth0 by CNI convention, else the first.
			l.Network.Interfaces = append(l.Network.Interfaces, cu)
			if in.Name == "eth0" || (i == 0 && !hasIface(ifs, "eth0")) {
				l.Network.DefaultInterface = cu
			}
		}
	}
	for i := range p.containers {
		l.Containers = append(l.Containers, s.criContainerStats(&p.containers[i], p.results[i]))
	}
	return out
}

func hasIface(ifs []Interface, name string) bool {
	for _, in := range ifs {
		if in.Name == name {
			return true
		}
	}
	return false
}

// ContainerFs is the usage of the container filesystem (every writable
// layer), for ImageFsInfo: the cached readings, never a walk (zero until
// the walker's first pass ends).
func (s *Service) ContainerFs() (mountpoint string, u DirUsage, err error) {
	u, _ = s.usage.Total()
	return s.containers.LayersDir(), u, nil
}

// pidsOf lists the processes of a cgroup (for descriptor and thread counts).
func (s *Service) pidsOf(cgroup string) []int {
	dir := filepath.Join(s.reader.root, cgroup)
	if !s.reader.v2 {
		dir = filepath.Join(s.reader.mounts["pids"], cgroup)
	}
	pids, err := readPids(dir)
	if err != nil {
		return nil
	}
	return pids
}

func readPids(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	n, in := 0, false
	for _, b := range data {
		if b >= '0' && b <= '9' {
			n, in = n*10+int(b-'0'), true
			continue
		}
		if in {
			out = append(out, n)
		}
		n, in = 0, false
	}
	if in {
		out = append(out, n)
	}
	return out, nil
}
