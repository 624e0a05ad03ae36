package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Resources translates the resources of an UpdateContainerResources call,
// with the same validation Build applies at create time.
func Resources(r *runtimeapi.LinuxContainerResources, swapSupported bool) (*specs.LinuxResources, error) {
	s := &specs.Spec{Linux: &specs.Linux{}}
	if err := setResources(s, r, swapSupported); err != nil {
		return nil, err
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	return s.Linux.Resources, nil
}
