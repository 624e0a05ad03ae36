package spec

import (
	"fmt"
	"math"

	"github.com/containerd/errdefs"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UserNS is a pod's user namespace (hostUsers: false): one uid and one gid
// range, each starting at the container's ID 0.
type UserNS struct {
	UIDs, GIDs []specs.LinuxIDMapping
}

// HostRoot is the host uid and gid of the namespace's root.
func (u *UserNS) HostRoot() (uid, gid uint32) { return u.UIDs[0].HostID, u.GIDs[0].HostID }

const usernsField = "linux.security_context.namespace_options.userns_options"

// PodUserNS validates the pod's user namespace options and returns its
// maps, or nil when the pod uses the host's user namespace (mode NODE, or
// no options). As the CRI says: mode POD takes exactly one uid and one gid
// mapping, each mapping the container's ID 0; NODE takes none; CONTAINER
// and TARGET are not pod modes.
func PodUserNS(opts *runtimeapi.NamespaceOption) (*UserNS, error) {
	u := opts.GetUsernsOptions()
	if u == nil {
		return nil, nil
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids()) > 0 || len(u.GetGids()) > 0 {
			return nil, invalid(usernsField, "mode NODE takes no uid or gid mappings")
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, invalid(usernsField+".mode", "%s is not supported for a pod's user namespace (NODE or POD)", u.GetMode())
	}
	uids, err := idMapping(usernsField+".uids", u.GetUids())
	if err != nil {
		return nil, err
	}
	gids, err := idMapping(usernsField+".gids", u.GetGids())
	if err != nil {
		return nil, err
	}
	return &UserNS{UIDs: uids, GIDs: gids}, nil
}

func idMapping(field string, in []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
	if len(in) != 1 {
		return nil, invalid(field, "%d mappings: exactly one is supported", len(in))
	}
	m := in[0]
	switch {
	case m.GetContainerId() != 0:
		return nil, invalid(field, "container ID 0 must be mapped (the mapping starts at %d)", m.GetContainerId())
	case m.GetLength() == 0:
		return nil, invalid(field, "length 0")
	case uint64(m.GetHostId())+uint64(m.GetLength()) > math.MaxUint32:
		return nil, invalid(field, "host IDs %d+%d overflow 32 bits", m.GetHostId(), m.GetLength())
	case m.GetHostId() == 0:
		// The namespace's root would be the host's root.
		return nil, invalid(field, "host ID 0 is mapped")
	}
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.GetHostId(), Size: m.GetLength()}}, nil
}

// setUserNamespace joins the pod's user namespace, if it has one. A
// container's own userns options, when sent, must be the pod's: a container
// cannot have a user namespace apart from its pod's.
func setUserNamespace(s *specs.Spec, in Input) error {
	podNS := in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions()
	pod, err := PodUserNS(podNS)
	if err != nil {
		return err
	}
	if ctrNS := in.Config.GetLinux().GetSecurityContext().GetNamespaceOptions(); ctrNS.GetUsernsOptions() != nil {
		ctr, err := PodUserNS(ctrNS)
		if err != nil {
			return err
		}
		if !sameUserNS(pod, ctr) {
			return invalid(usernsField, "differs from the pod's: a container shares its pod's user namespace")
		}
	}
	if pod == nil {
		return nil
	}
	if in.Namespaces.User == "" {
		return fmt.Errorf("pod has user namespace options but no user namespace: %w", errdefs.ErrFailedPrecondition)
	}
	// Joined by path alone: the runtimes that can run such pods (runc 1.2
	// and crun 1.9 and later, which can idmap mounts) read the maps from
	// the namespace, and runc warns when they are given too.
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: in.Namespaces.User})
	return nil
}

func sameUserNS(a, b *UserNS) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.UIDs[0] == b.UIDs[0] && a.GIDs[0] == b.GIDs[0]
}
