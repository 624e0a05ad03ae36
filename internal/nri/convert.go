package nri

import (
	"fmt"

	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/sandbox"
)

// podOf is the NRI view of a pod.
func podOf(sb *sandbox.Sandbox) *api.PodSandbox {
	cfg := sb.PodConfig()
	md := cfg.GetMetadata()
	linux := &api.LinuxPodSandbox{
		PodOverhead:  resourcesOf(cfg.GetLinux().GetOverhead()),
		PodResources: resourcesOf(cfg.GetLinux().GetResources()),
		CgroupParent: sb.CgroupParent,
		CgroupsPath:  sb.CgroupParent,
		Resources:    resourcesOf(cfg.GetLinux().GetResources()),
	}
	for kind, path := range sb.Namespaces {
		if t, ok := nsTypes[kind]; ok {
			linux.Namespaces = append(linux.Namespaces, &api.LinuxNamespace{Type: t, Path: path})
		}
	}
	return &api.PodSandbox{
		Id:             sb.ID,
		Name:           md.GetName(),
		Uid:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: sb.RuntimeHandler,
		Linux:          linux,
		Pid:            uint32(max(sb.InfraPID, 0)),
		Ips:            sb.IPs,
	}
}

var nsTypes = map[namespaces.Kind]string{
	namespaces.Net: "network", namespaces.IPC: "ipc", namespaces.UTS: "uts",
	namespaces.User: "user", namespaces.PID: "pid",
}

// resourcesOf is the NRI view of CRI resources.
func resourcesOf(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{
		Cpu: &api.LinuxCPU{
			Shares: api.UInt64(r.GetCpuShares()),
			Quota:  api.Int64(r.GetCpuQuota()),
			Period: api.UInt64(r.GetCpuPeriod()),
			Cpus:   r.GetCpusetCpus(),
			Mems:   r.GetCpusetMems(),
		},
		Memory: &api.LinuxMemory{
			Limit: api.Int64(r.GetMemoryLimitInBytes()),
			Swap:  api.Int64(r.GetMemorySwapLimitInBytes()),
		},
		Unified: r.GetUnified(),
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return out
}

// containerOf is the NRI view of a container made from spec; nil reads
// the spec from its bundle (a container whose spec is gone is described
// by its record alone).
func (s *Service) containerOf(c *container.Container, spec *specs.Spec) *api.Container {
	if spec == nil {
		var err error
		if spec, err = s.state.Spec(c.ID); err != nil {
			s.log.Debug("NRI: container spec unreadable", "container", c.ID, "error", err)
			spec = &specs.Spec{}
		}
	}
	cfg := c.ContainerConfig()
	out := &api.Container{
		Id:            c.ID,
		PodSandboxId:  c.SandboxID,
		Name:          cfg.GetMetadata().GetName(),
		State:         stateOf(c.State),
		Labels:        cfg.GetLabels(),
		Annotations:   spec.Annotations,
		Mounts:        api.FromOCIMounts(spec.Mounts),
		Hooks:         api.FromOCIHooks(spec.Hooks),
		Pid:           uint32(max(c.Pid, 0)),
		CreatedAt:     c.CreatedAt.UnixNano(),
		ExitCode:      c.ExitCode,
		StatusReason:  c.Reason,
		StatusMessage: c.Message,
		Image:         &api.Image{Name: c.ImageName, Digest: c.ImageID.String()},
	}
	if out.Annotations == nil {
		out.Annotations = cfg.GetAnnotations()
	}
	if !c.StartedAt.IsZero() {
		out.StartedAt = c.StartedAt.UnixNano()
	}
	if !c.FinishedAt.IsZero() {
		out.FinishedAt = c.FinishedAt.UnixNano()
	}
	for _, d := range cfg.GetCDIDevices() {
		out.CDIDevices = append(out.CDIDevices, &api.CDIDevice{Name: d.GetName()})
	}
	if p := spec.Process; p != nil {
		out.Args, out.Env = p.Args, p.Env
		out.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: p.User.AdditionalGids}
		for _, r := range p.Rlimits {
			out.Rlimits = append(out.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
	}
	if l := spec.Linux; l != nil {
		out.Linux = &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, nil),
			CgroupsPath: l.CgroupsPath,
			Sysctl:      l.Sysctl,
		}
		if l.Seccomp != nil { // unlike the other conversions, this one takes no nil
			out.Linux.SeccompPolicy = api.FromOCILinuxSeccomp(l.Seccomp)
		}
		if p := spec.Process; p != nil {
			if p.OOMScoreAdj != nil {
				out.Linux.OomScoreAdj = api.Int(*p.OOMScoreAdj)
			}
			out.Linux.IoPriority = api.FromOCILinuxIOPriority(p.IOPriority)
			out.Linux.Scheduler = api.FromOCILinuxScheduler(p.Scheduler)
		}
	}
	return out
}

func stateOf(s container.State) api.ContainerState {
	switch s {
	case container.StateCreating, container.StateCreated:
		return api.ContainerState_CONTAINER_CREATED
	case container.StateRunning:
		return api.ContainerState_CONTAINER_RUNNING
	case container.StateExited:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// adjust applies the plugins' merged adjustment to spec. What crid cannot
// honour is an error, never dropped: it has no block I/O or RDT classes.
func (s *Service) adjust(spec *specs.Spec, adj *api.ContainerAdjustment) error {
	if adj == nil {
		return nil
	}
	g := nrigen.SpecGenerator(specEditor{spec},
		nrigen.WithBlockIOResolver(func(class string) (*specs.LinuxBlockIO, error) {
			return nil, fmt.Errorf("block I/O class %q: crid defines no block I/O classes", class)
		}),
		nrigen.WithRdtResolver(func(class string) (*specs.LinuxIntelRdt, error) {
			return nil, fmt.Errorf("RDT class %q: crid defines no RDT classes", class)
		}),
		nrigen.WithResourceChecker(s.state.FitResources),
		nrigen.WithCDIDeviceInjector(s.state.InjectCDI),
	)
	return g.Adjust(adj)
}
