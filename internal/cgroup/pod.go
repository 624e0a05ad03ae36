package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
)

// ErrNoPodCgroup: the pod's cgroup does not exist (yet): the OCI runtime
// makes it with the pod's first container.
var ErrNoPodCgroup = errors.New("the pod's cgroup does not exist")

// UpdatePod writes res to the pod cgroup podParent (a cgroupfs path or a
// systemd slice name) through opencontainers/cgroups' cgroupfs managers,
// whichever the driver: the kubelet writes a pod's cgroup this way too.
// Device rules and the freezer are left alone.
func UpdatePod(podParent string, res *cgroups.Resources) error {
	dir, err := Dir(podParent)
	if err != nil {
		return err
	}
	res.SkipDevices = true
	if cgroups.IsCgroup2UnifiedMode() {
		full := filepath.Join("/sys/fs/cgroup", dir)
		if _, err := os.Stat(full); err != nil {
			return fmt.Errorf("%s: %w", full, ErrNoPodCgroup)
		}
		// The v2 manager leaves the conversion of shares to the caller
		// (runc's, which the containers get).
		if res.CpuShares != 0 {
			res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(res.CpuShares)
		}
		m, err := fs2.NewManager(&cgroups.Cgroup{Resources: res}, full)
		if err != nil {
			return err
		}
		return m.Set(res)
	}
	m, err := fs.NewManager(&cgroups.Cgroup{Path: dir, Resources: res}, nil)
	if err != nil {
		return err
	}
	if cpu := m.Path("cpu"); cpu != "" {
		if _, err := os.Stat(cpu); err != nil {
			return fmt.Errorf("%s: %w", cpu, ErrNoPodCgroup)
		}
	}
	return m.Set(res)
}
