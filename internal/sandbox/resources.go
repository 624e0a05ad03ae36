package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/cgroup"
)

// UpdateResources applies new pod-level resources (UpdatePodSandboxResources,
// an in-place resize): the NRI plugins are asked first (an error refuses
// them), then the pod's cgroup gets the sum of resources and overhead, as
// the kubelet computes a pod cgroup's limits, and the pod's config records
// them. A pod without a cgroup parent of its own (crictl's) shares crid's
// default parent, which is left alone; so is a pod cgroup the runtime has
// not made yet (no container ran).
func (m *Manager) UpdateResources(ctx context.Context, id string, overhead, resources *runtimeapi.LinuxContainerResources) error {
	sb, err := m.Get(id)
	if err != nil {
		return err
	}
	if err := m.checkRecovered(sb.ID); err != nil {
		return err
	}
	unlock := m.recs.Lock(sb.ID)
	defer unlock()
	if sb, err = m.Get(sb.ID); err != nil {
		return err
	}
	if sb.State != StateReady {
		return fmt.Errorf("pod %s is %s: %w", sb.ID, sb.State, errdefs.ErrFailedPrecondition)
	}
	// What is not sent stays as recorded.
	if overhead == nil {
		overhead = sb.PodConfig().GetLinux().GetOverhead()
	}
	if resources == nil {
		resources = sb.PodConfig().GetLinux().GetResources()
	}
	res, err := podResources(overhead, resources)
	if err != nil {
		return err
	}
	if m.Plugins != nil {
		if err := m.Plugins.UpdatePodSandbox(ctx, &sb, overhead, resources); err != nil {
			return fmt.Errorf("update resources of pod %s: NRI: %w", sb.ID, err)
		}
	}
	applied := false
	if sb.CgroupParent != "" {
		err := cgroup.UpdatePod(sb.CgroupParent, res)
		switch {
		case err == nil:
			applied = true
		case !errors.Is(err, cgroup.ErrNoPodCgroup):
			return fmt.Errorf("update the cgroup of pod %s: %w", sb.ID, err)
		}
	}
	sb, err = m.recs.Update(sb.ID, func(s *Sandbox) error {
		cfg := proto.Clone(s.PodConfig()).(*runtimeapi.PodSandboxConfig)
		if cfg.Linux == nil {
			cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{}
		}
		if overhead != nil {
			cfg.Linux.Overhead = overhead
		}
		if resources != nil {
			cfg.Linux.Resources = resources
		}
		raw, err := proto.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("encode pod config: %w", err)
		}
		s.Config, s.config = raw, nil
		return nil
	})
	if err != nil {
		return err
	}
	m.log.Info("pod resources updated", "pod", sb.ID, "cgroup", sb.CgroupParent, "cgroup_written", applied)
	if m.Plugins != nil {
		if err := m.Plugins.PostUpdatePodSandbox(ctx, &sb); err != nil {
			m.log.Warn("NRI plugin failed on PostUpdatePodSandbox", "pod", sb.ID, "error", err)
		}
	}
	return nil
}

// podResources is the pod cgroup's share of resources plus overhead:
// limits add up where the pod has one (a zero limit is none, and stays
// none), shares add up, the cpuset and unified settings are the pod's.
func podResources(overhead, pod *runtimeapi.LinuxContainerResources) (*cgroups.Resources, error) {
	for name, r := range map[string]*runtimeapi.LinuxContainerResources{"overhead": overhead, "resources": pod} {
		switch {
		case r.GetMemoryLimitInBytes() < 0, r.GetCpuQuota() < -1, r.GetCpuPeriod() < 0, r.GetCpuShares() < 0, r.GetMemorySwapLimitInBytes() < -1:
			return nil, fmt.Errorf("%s: negative limits: %w", name, errdefs.ErrInvalidArgument)
		}
	}
	res := &cgroups.Resources{
		CpuShares:  uint64(pod.GetCpuShares() + overhead.GetCpuShares()),
		CpuPeriod:  uint64(pod.GetCpuPeriod()),
		CpusetCpus: pod.GetCpusetCpus(),
		CpusetMems: pod.GetCpusetMems(),
		Unified:    pod.GetUnified(),
	}
	if l := pod.GetMemoryLimitInBytes(); l > 0 {
		res.Memory = l + overhead.GetMemoryLimitInBytes()
	}
	if s := pod.GetMemorySwapLimitInBytes(); s > 0 {
		res.MemorySwap = s + overhead.GetMemoryLimitInBytes()
	}
	if q := pod.GetCpuQuota(); q > 0 {
		res.CpuQuota = q + max(overhead.GetCpuQuota(), 0)
	}
	for _, h := range pod.GetHugepageLimits() {
		l := h.GetLimit()
		for _, o := range overhead.GetHugepageLimits() {
			if o.GetPageSize() == h.GetPageSize() {
				l += o.GetLimit()
			}
		}
		res.HugetlbLimit = append(res.HugetlbLimit, &cgroups.HugepageLimit{Pagesize: h.GetPageSize(), Limit: l})
	}
	return res, nil
}
