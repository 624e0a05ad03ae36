package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateResources records the pod-level resources the kubelet has just
// applied to the pod's cgroup (UpdatePodSandboxResources, an in-place
// resize) in the pod's config: overhead and resources replace the
// recorded ones where given. The cgroup itself is the kubelet's; crid's
// record is what later readers of the pod's config (PodSandboxStatus's
// callers, plugins) see.
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
	_, err = m.recs.Update(sb.ID, func(s *Sandbox) error {
		if s.State != StateReady {
			return fmt.Errorf("pod %s is %s: %w", s.ID, s.State, errdefs.ErrFailedPrecondition)
		}
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
	if err == nil {
		m.log.Info("pod resources updated", "pod", sb.ID)
	}
	return err
}
