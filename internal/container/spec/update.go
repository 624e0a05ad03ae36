package spec

import (
	"log/slog"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Resources translates the resources of an UpdateContainerResources call,
// with the same validation and host adjustments Build applies at create time.
func Resources(r *runtimeapi.LinuxContainerResources, swapSupported, hugetlbSupported bool) (*specs.LinuxResources, error) {
	s := &specs.Spec{Linux: &specs.Linux{}}
	if err := setResources(s, r, swapSupported); err != nil {
		return nil, err
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	DropUnsupportedLimits(s.Linux.Resources, hugetlbSupported)
	return s.Linux.Resources, nil
}

// DropUnsupportedLimits removes the hugepage limits when the host has no
// hugetlb cgroup controller: runc would fail the whole container over them
// (containerd and CRI-O skip them too). They were validated all the same, so
// a malformed request is an error whatever the host.
func DropUnsupportedLimits(res *specs.LinuxResources, hugetlbSupported bool) {
	if res != nil && !hugetlbSupported && len(res.HugepageLimits) > 0 {
		slog.Debug("no hugetlb cgroup controller: hugepage limits dropped")
		res.HugepageLimits = nil
	}
}
