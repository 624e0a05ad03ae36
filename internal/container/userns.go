package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/crid-project/crid/internal/container/spec"
	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/sandbox"
)

// A pod with a user namespace of its own (hostUsers: false) runs its
// containers as IDs that are nobody on the host. Their rootfs must still
// look as the image says, root's files owned by root: each image layer is
// given to the overlay as an idmapped mount (Linux 5.19), made by the
// pod's user namespace, and the container's upper dir belongs to the
// pod's root. The layers on disk are the same for every pod; nothing is
// copied or chowned.

// podUserNS is a pod's user namespace: its pin, and the host IDs of its
// root.
type podUserNS struct {
	path     string
	uid, gid uint32
}

// userNSOf returns the pod's user namespace, nil for a pod in the host's.
func userNSOf(sb *sandbox.Sandbox) (*podUserNS, error) {
	u, err := spec.PodUserNS(sb.PodConfig().GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil || u == nil {
		return nil, err
	}
	p := sb.Namespaces[namespaces.User]
	if p == "" {
		return nil, fmt.Errorf("pod %s has user namespace options but no user namespace", sb.ID)
	}
	uid, gid := u.HostRoot()
	return &podUserNS{path: p, uid: uid, gid: gid}, nil
}

// idmapDir holds the idmapped layer mounts while the rootfs is mounted.
func (m *Manager) idmapDir(id string) string { return filepath.Join(m.layerDir(id), "idmap") }

// idmapLayers mounts each of lowers idmapped by the user namespace at
// idmapDir/<prefix><n> and returns those paths. The overlay keeps its own
// references to its layers, so the caller removes these mounts
// (removeIDMapped) once the overlay is mounted, or failed.
func (m *Manager) idmapLayers(id, prefix string, lowers []string, userns *podUserNS) ([]string, error) {
	ns, err := os.Open(userns.path)
	if err != nil {
		return nil, fmt.Errorf("open the pod's user namespace: %w", err)
	}
	defer ns.Close()
	dir := m.idmapDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	mapped := make([]string, len(lowers))
	for i, lower := range lowers {
		target := filepath.Join(dir, prefix+strconv.Itoa(i))
		if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		tree, err := namespaces.IDMappedTree(lower, ns)
		if err != nil {
			return nil, err
		}
		err = unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
		unix.Close(tree)
		if err != nil {
			return nil, fmt.Errorf("attach idmapped layer at %s: %w", target, err)
		}
		mapped[i] = target
	}
	return mapped, nil
}

// removeIDMapped unmounts and removes the idmapped layer mounts under
// layerDir/idmap, if any: after the overlay is mounted, and on undo after
// a crash between the two.
func removeIDMapped(layerDir string) error {
	return unmountAllIn(filepath.Join(layerDir, "idmap"))
}
