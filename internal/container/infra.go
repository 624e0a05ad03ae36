package container

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/sandbox"
)

// infraName is the container name of a pod's infra process.
const infraName = "POD"

// StartInfra runs the pause process of a pod that shares one PID namespace
// among its containers: the namespace needs a process to live in. Pods that
// do not share it have no such process (crid pins their other namespaces
// itself). The infra container is a container record like any other, so
// crash recovery covers it, but it is hidden from the CRI calls.
func (m *Manager) StartInfra(ctx context.Context, sb *sandbox.Sandbox) (int, error) {
	ref := m.cfg.SandboxImage
	if _, err := m.images.Get(ref); err != nil {
		if _, err := m.images.Pull(ctx, ref, nil); err != nil {
			return 0, fmt.Errorf("pull sandbox image %s: %w", ref, err)
		}
	}
	podCfg := sb.PodConfig()
	sc := podCfg.GetLinux().GetSecurityContext()
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: infraName},
		Image:    &runtimeapi.ImageSpec{Image: ref},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				// The infra process creates the pod's PID namespace.
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: sc.GetNamespaceOptions().GetNetwork(),
					Ipc:     sc.GetNamespaceOptions().GetIpc(),
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					// In the pod's user namespace, if it has one.
					UsernsOptions: sc.GetNamespaceOptions().GetUsernsOptions(),
				},
				ReadonlyRootfs:     true,
				NoNewPrivs:         true,
				RunAsUser:          sc.GetRunAsUser(),
				RunAsGroup:         sc.GetRunAsGroup(),
				Capabilities:       &runtimeapi.Capability{DropCapabilities: []string{"ALL"}},
				Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
				SupplementalGroups: sc.GetSupplementalGroups(),
			},
		},
	}
	id := sb.InfraID
	if id == "" {
		return 0, fmt.Errorf("pod sandbox %s: no infra container ID recorded", sb.ID)
	}
	if err := m.create(ctx, id, infraName+"_"+sb.ID, sb, cfg, true, nil); err != nil {
		return 0, err
	}
	if err := m.Start(ctx, id); err != nil {
		return 0, err // the pod's rollback removes it
	}
	c, ok := m.recs.Get(id)
	if !ok || c.State != StateRunning {
		return 0, fmt.Errorf("infra container %s of pod %s exited at once", id, sb.ID)
	}
	return c.Pid, nil
}

// StopInfra stops and removes the pod's infra process.
func (m *Manager) StopInfra(ctx context.Context, sb *sandbox.Sandbox) error {
	return m.removeAny(ctx, sb.InfraID)
}
