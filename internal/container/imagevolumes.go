package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
	crierrors "k8s.io/cri-api/pkg/errors"

	"github.com/crid-project/crid/internal/container/spec"
	"github.com/crid-project/crid/internal/image"
)

// Image volumes (KEP-4639): a CRI mount may name an image instead of a
// host path. crid mounts the image's layers as a read-only overlay (lower
// dirs only, no upper) at a dir of the container's own, one per mount,
// and binds that dir (or a sub path inside it) read-only into the
// container. The mounts are the container's stepImageVolumes.

// ImageVolume is an image a container mounts for one of its CRI mounts.
type ImageVolume struct {
	Mount   int           `json:"mount"` // index in the config's mounts
	ImageID digest.Digest `json:"imageID"`
}

// volumesDir holds the container's image volume mounts: volumes/<index>
// for each, and the empty lower dirs an image of fewer than two layers
// needs.
func (m *Manager) volumesDir(id string) string { return filepath.Join(m.layerDir(id), "volumes") }

func (m *Manager) volumeDir(id string, mount int) string {
	return filepath.Join(m.volumesDir(id), strconv.Itoa(mount))
}

// imageVolumes finds the images of the config's image mounts. They must be
// present already: the kubelet pulls them, with the pod's pull secrets,
// before CreateContainer, and a CRI Mount carries no credentials crid
// could pull with; containerd only looks them up too.
func (m *Manager) imageVolumes(mounts []spec.ImageMount) ([]ImageVolume, []image.Image, error) {
	vols := make([]ImageVolume, 0, len(mounts))
	imgs := make([]image.Image, 0, len(mounts))
	for _, im := range mounts {
		img, err := m.images.Get(im.Image)
		if errdefs.IsNotFound(err) {
			return nil, nil, fmt.Errorf("mounts[%d].image: image %q is not present: pull it first: %w", im.Index, im.Image, errdefs.ErrNotFound)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("mounts[%d].image: %w", im.Index, err)
		}
		vols = append(vols, ImageVolume{Mount: im.Index, ImageID: img.ID})
		imgs = append(imgs, img)
	}
	return vols, imgs, nil
}

// usesImage reports whether c's rootfs or one of its image volumes is
// made of the image's layers.
func (c *Container) usesImage(id digest.Digest) bool {
	return c.ImageID == id || slices.ContainsFunc(c.ImageVolumes, func(v ImageVolume) bool { return v.ImageID == id })
}

// mountImageVolumes mounts each image of mounts (imgs, in the same order)
// and returns, by mount index, the dir to bind: the mount, or its sub path
// resolved inside it.
func (m *Manager) mountImageVolumes(id string, mounts []spec.ImageMount, imgs []image.Image, userns *podUserNS) (map[int]string, error) {
	srcs := make(map[int]string, len(mounts))
	for i, im := range mounts {
		dir := m.volumeDir(id, im.Index)
		if err := m.mountImage(id, dir, imgs[i].Layers, userns, "volume"+strconv.Itoa(im.Index)+"-"); err != nil {
			return nil, fmt.Errorf("%w: mounts[%d]: mount image %s: %w", crierrors.ErrImageVolumeMountFailed, im.Index, imgs[i].ID, err)
		}
		src, err := subPath(dir, im.SubPath)
		if err != nil {
			return nil, fmt.Errorf("%w: mounts[%d].image_sub_path: %w", crierrors.ErrImageVolumeMountFailed, im.Index, err)
		}
		srcs[im.Index] = src
	}
	return srcs, nil
}

// mountImage mounts the layers (bottom first) read-only at dir: an
// overlay of lower dirs only, top first. Older kernels want two lower dirs
// for an overlay without an upper one, so an image of fewer layers gets
// empty ones below. In a pod with a user namespace the layers are
// idmapped by it, named with prefix under the idmap dir (see userns.go):
// an overlay itself cannot be idmapped.
func (m *Manager) mountImage(id, dir string, layers []digest.Digest, userns *podUserNS, prefix string) error {
	lowers := make([]string, 0, len(layers)+2)
	for i := len(layers) - 1; i >= 0; i-- {
		lowers = append(lowers, m.images.LayerDir(layers[i]))
	}
	for i := 0; len(lowers) < 2; i++ {
		empty := filepath.Join(m.volumesDir(id), ".empty"+strconv.Itoa(i))
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return err
		}
		lowers = append(lowers, empty)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return m.mountOverlay(id, dir, lowers, "", unix.MS_RDONLY, userns, prefix)
}

// subPath resolves sub inside the mounted image at root, symlinks
// included, never outside it; it must be a directory. The overlay is
// read-only and crid's own, so the resolved path cannot change before the
// runtime binds it.
func subPath(root, sub string) (string, error) {
	if sub == "" {
		return root, nil
	}
	p, err := securejoin.SecureJoin(root, sub)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", sub, err)
	}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%q does not exist in the image: %w", sub, errdefs.ErrInvalidArgument)
	case err != nil:
		return "", fmt.Errorf("resolve %q: %w", sub, err)
	case !fi.IsDir():
		return "", fmt.Errorf("%q is not a directory in the image: %w", sub, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// removeImageVolumes unmounts whatever is mounted in the volumes dir of a
// container's layer dir and removes it: the undo of stepImageVolumes,
// whether all, some or none of the mounts were made.
func removeImageVolumes(layerDir string) error {
	return unmountAllIn(filepath.Join(layerDir, "volumes"))
}

// unmountAllIn unmounts whatever is mounted on an entry of dir, then
// removes dir; a missing dir is no error.
func unmountAllIn(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := unmount(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return os.RemoveAll(dir)
}
