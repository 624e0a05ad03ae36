package stats

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/sandbox"
)

// baseLabels are the labels of every container metric, as the kubelet's
// /metrics/cadvisor labels cAdvisor's: container name, cgroup/ID, image,
// runtime name, pod namespace and pod name.
var baseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

type metricDesc struct {
	name, help string
	extra      []string // label keys after baseLabels
	counter    bool
}

// descs are the cAdvisor metric names the kubelet serves on
// /metrics/cadvisor when it takes metrics from the runtime
// (PodAndContainerStatsFromCRI). Left out until crid reads them: hugetlb,
// pressure (PSI), cpu quota and memory reservation specs, ulimits.
var descs = []metricDesc{
	{"container_blkio_device_usage_total", "Blkio device bytes usage", []string{"device", "major", "minor", "operation"}, true},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", nil, true},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", nil, true},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", nil, true},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", nil, true},
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", nil, true},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", nil, true},
	{"container_file_descriptors", "Number of open file descriptors for the container.", nil, false},
	{"container_fs_inodes_free", "Number of available Inodes", []string{"device"}, false},
	{"container_fs_inodes_total", "Number of Inodes", []string{"device"}, false},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", []string{"device"}, false},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", []string{"device"}, true},
	{"container_fs_reads_total", "Cumulative count of reads completed", []string{"device"}, true},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", []string{"device"}, false},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", []string{"device"}, true},
	{"container_fs_writes_total", "Cumulative count of writes completed", []string{"device"}, true},
	{"container_last_seen", "Last time a container was seen by the exporter", nil, false},
	{"container_memory_cache", "Number of bytes of page cache memory.", nil, false},
	{"container_memory_failcnt", "Number of memory usage hits limits", nil, true},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", []string{"failure_type", "scope"}, true},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", nil, false},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", nil, false},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", nil, false},
	{"container_memory_rss", "Size of RSS in bytes.", nil, false},
	{"container_memory_swap", "Container swap usage in bytes.", nil, false},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", nil, false},
	{"container_memory_working_set_bytes", "Current working set in bytes.", nil, false},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", []string{"interface"}, true},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", []string{"interface"}, true},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", []string{"interface"}, true},
	{"container_network_receive_packets_total", "Cumulative count of packets received", []string{"interface"}, true},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", []string{"interface"}, true},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", []string{"interface"}, true},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", []string{"interface"}, true},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", []string{"interface"}, true},
	{"container_oom_events_total", "Count of out of memory events observed for the container", nil, true},
	{"container_processes", "Number of processes running inside the container.", nil, false},
	{"container_sockets", "Number of open sockets for the container.", nil, false},
	{"container_spec_cpu_period", "CPU period of the container.", nil, false},
	{"container_spec_cpu_shares", "CPU share of the container.", nil, false},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", nil, false},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", nil, false},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", nil, false},
	{"container_threads", "Number of threads running inside the container", nil, false},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", nil, false},
}

// MetricDescriptors describes every metric ListPodSandboxMetrics returns.
func MetricDescriptors() []*runtimeapi.MetricDescriptor {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(descs))
	for _, d := range descs {
		out = append(out, &runtimeapi.MetricDescriptor{
			Name: d.name, Help: d.help, LabelKeys: append(append([]string(nil), baseLabels...), d.extra...),
		})
	}
	return out
}

// metricSet builds the metrics of one container (or the pod's network).
type metricSet struct {
	base []string
	out  []*runtimeapi.Metric
}

func (m *metricSet) add(name string, counter bool, v uint64, extra ...string) {
	t := runtimeapi.MetricType_GAUGE
	if counter {
		t = runtimeapi.MetricType_COUNTER
	}
	m.out = append(m.out, &runtimeapi.Metric{
		Name:        name,
		MetricType:  t,
		LabelValues: append(append([]string(nil), m.base...), extra...),
		Value:       &runtimeapi.UInt64Value{Value: v},
	})
}

// seconds turns nanoseconds into the whole seconds a UInt64Value can carry.
// CRI metric values are integers; the kubelet exports them as they are.
func seconds(ns uint64) uint64 { return ns / uint64(time.Second) }

// ListPodSandboxMetrics returns the metrics of every ready pod and its
// containers.
func (s *Service) ListPodSandboxMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	pods := s.readPods(ctx, func(*sandbox.Sandbox) bool { return true })
	fs, err := Statfs(s.containers.LayersDir())
	if err != nil {
		return nil, fmt.Errorf("statfs container filesystem: %w", err)
	}
	now := uint64(time.Now().Unix())
	out := make([]*runtimeapi.PodSandboxMetrics, 0, len(pods))
	for _, p := range pods {
		md := p.sb.PodConfig().GetMetadata()
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: p.sb.ID}
		// The pod's network, labelled as cAdvisor labels a pod's infra
		// container: container "POD".
		pod := metricSet{base: []string{"POD", p.sb.ID, "", p.sb.ID, md.GetNamespace(), md.GetName()}}
		for _, in := range p.pod.Net {
			pod.add("container_network_receive_bytes_total", true, in.RxBytes, in.Name)
			pod.add("container_network_receive_errors_total", true, in.RxErrors, in.Name)
			pod.add("container_network_receive_packets_dropped_total", true, in.RxDropped, in.Name)
			pod.add("container_network_receive_packets_total", true, in.RxPackets, in.Name)
			pod.add("container_network_transmit_bytes_total", true, in.TxBytes, in.Name)
			pod.add("container_network_transmit_errors_total", true, in.TxErrors, in.Name)
			pod.add("container_network_transmit_packets_dropped_total", true, in.TxDropped, in.Name)
			pod.add("container_network_transmit_packets_total", true, in.TxPackets, in.Name)
		}
		pm.Metrics = pod.out
		for i := range p.containers {
			c := &p.containers[i]
			r := p.results[i]
			name := c.ContainerConfig().GetMetadata().GetName()
			ms := metricSet{base: []string{name, c.ID, c.ImageName, c.ID, md.GetNamespace(), md.GetName()}}
			s.containerMetrics(&ms, c, r, fs, now)
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{ContainerId: c.ID, Metrics: ms.out})
		}
		out = append(out, pm)
	}
	return out, nil
}

func (s *Service) containerMetrics(ms *metricSet, c *container.Container, r Result, fs Filesystem, now uint64) {
	dev := fs.Mountpoint
	if r.Layer != nil {
		ms.add("container_fs_usage_bytes", false, r.Layer.Bytes, dev)
	}
	ms.add("container_fs_inodes_free", false, fs.InodesFree, dev)
	ms.add("container_fs_inodes_total", false, fs.Inodes, dev)
	ms.add("container_fs_limit_bytes", false, fs.CapacityBytes, dev)
	ms.add("container_last_seen", false, now)
	if !c.StartedAt.IsZero() {
		ms.add("container_start_time_seconds", false, uint64(c.StartedAt.Unix()))
	}
	res := c.ContainerConfig().GetLinux().GetResources()
	ms.add("container_spec_cpu_period", false, uint64(max(res.GetCpuPeriod(), 0)))
	ms.add("container_spec_cpu_shares", false, uint64(max(res.GetCpuShares(), 0)))
	ms.add("container_spec_memory_limit_bytes", false, uint64(max(res.GetMemoryLimitInBytes(), 0)))
	ms.add("container_spec_memory_swap_limit_bytes", false, uint64(max(res.GetMemorySwapLimitInBytes(), 0)))
	cg := r.Cgroup
	if cg == nil {
		return
	}
	ms.add("container_cpu_usage_seconds_total", true, seconds(cg.CPU.Usage))
	ms.add("container_cpu_user_seconds_total", true, seconds(cg.CPU.User))
	ms.add("container_cpu_system_seconds_total", true, seconds(cg.CPU.System))
	ms.add("container_cpu_cfs_periods_total", true, cg.CPU.Periods)
	ms.add("container_cpu_cfs_throttled_periods_total", true, cg.CPU.ThrottledPeriods)
	ms.add("container_cpu_cfs_throttled_seconds_total", true, seconds(cg.CPU.ThrottledTime))
	m := cg.Memory
	ms.add("container_memory_cache", false, m.Cache)
	ms.add("container_memory_failcnt", true, m.Failcnt)
	ms.add("container_memory_kernel_usage", false, m.Kernel)
	ms.add("container_memory_mapped_file", false, m.MappedFile)
	ms.add("container_memory_max_usage_bytes", false, m.MaxUsage)
	ms.add("container_memory_rss", false, m.RSS)
	ms.add("container_memory_swap", false, m.Swap)
	ms.add("container_memory_usage_bytes", false, m.Usage)
	ms.add("container_memory_working_set_bytes", false, m.WorkingSet)
	ms.add("container_oom_events_total", true, m.OOMKills)
	// cAdvisor's failure types: pgfault is every fault, pgmajfault the
	// major ones; "container" scope is the cgroup's own, "hierarchy" with
	// its children (the same for a leaf container).
	for _, scope := range []string{"container", "hierarchy"} {
		ms.add("container_memory_failures_total", true, m.PgFault, "pgfault", scope)
		ms.add("container_memory_failures_total", true, m.PgMajFault, "pgmajfault", scope)
	}
	ms.add("container_processes", false, cg.Pids)
	ms.add("container_threads_max", false, cg.PidsLimit)
	fds, sockets, threads := processCounts(s.pidsOf(r.CgroupPath))
	ms.add("container_file_descriptors", false, fds)
	ms.add("container_sockets", false, sockets)
	ms.add("container_threads", false, threads)
}

// processCounts counts the open descriptors, sockets and threads of pids.
func processCounts(pids []int) (fds, sockets, threads uint64) {
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d", pid)
		if ents, err := os.ReadDir(filepath.Join(dir, "fd")); err == nil {
			for _, e := range ents {
				fds++
				if l, err := os.Readlink(filepath.Join(dir, "fd", e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
					sockets++
				}
			}
		}
		if ents, err := os.ReadDir(filepath.Join(dir, "task")); err == nil {
			threads += uint64(len(ents))
		}
	}
	return fds, sockets, threads
}
