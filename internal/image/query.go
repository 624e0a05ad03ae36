package image

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/crid-project/crid/internal/store"
)

// Get finds an image by ID ("sha256:<hex>" or bare hex), by a reference it
// was pulled as (normalized like the kubelet does), or by a unique prefix of
// its ID. The result is a copy.
func (s *Service) Get(ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.resolveLocked(ref)
	if err != nil {
		return Image{}, err
	}
	return img.clone(), nil
}

func (s *Service) resolveLocked(ref string) (*Image, error) {
	if id, ok := parseID(ref); ok {
		if img, ok := s.images[id]; ok {
			return img, nil
		}
	}
	named, refErr := normalizeRef(ref)
	if refErr == nil {
		if id, ok := s.refs[named.String()]; ok {
			return s.images[id], nil
		}
	}
	if isHexPrefix(ref) {
		var found *Image
		for id, img := range s.images {
			if strings.HasPrefix(id.Encoded(), ref) {
				if found != nil {
					return nil, fmt.Errorf("image ID prefix %q is ambiguous: %w", ref, errdefs.ErrInvalidArgument)
				}
				found = img
			}
		}
		if found != nil {
			return found, nil
		}
	}
	if refErr != nil && !isHexPrefix(ref) {
		return nil, refErr
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// List returns all images, in ID order.
func (s *Service) List() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.images))
	for _, id := range slices.Sorted(maps.Keys(s.images)) {
		out = append(out, s.images[id].clone())
	}
	return out
}

// Pinned reports whether the kubelet's image GC must keep img.
func (s *Service) Pinned(img Image) bool {
	for _, r := range slices.Concat(img.RepoTags, img.RepoDigests) {
		if s.pinned[r] {
			return true
		}
	}
	return false
}

// Config returns the image's raw OCI config.
func (s *Service) Config(img Image) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.blobDir(), img.ID.Encoded()))
}

// Remove deletes the image ref names, with all its tags, and the layers no
// other image uses. Removing an image that is not there succeeds: the
// kubelet retries removals.
func (s *Service) Remove(ctx context.Context, ref string) error {
	s.mu.Lock()
	img, err := s.resolveLocked(ref)
	if errdefs.IsNotFound(err) {
		s.mu.Unlock()
		return nil
	}
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if s.InUse != nil {
		if cid, ok := s.InUse(img.ID); ok {
			s.mu.Unlock()
			return fmt.Errorf("image %s is in use by container %s: %w", img.ID, cid, errdefs.ErrFailedPrecondition)
		}
	}
	used := map[digest.Digest]bool{}
	for id, other := range s.images {
		if id == img.ID {
			continue
		}
		for _, l := range other.Layers {
			used[l] = true
		}
	}
	var orphans []digest.Digest
	for _, l := range img.Layers {
		if !used[l] && s.pulling[l] == 0 && !slices.Contains(orphans, l) {
			orphans = append(orphans, l)
		}
	}
	err = s.db.Update(func(tx *store.Tx) error {
		if err := tx.Delete(bucketImages, img.ID.String()); err != nil {
			return err
		}
		for _, l := range orphans {
			if err := tx.Delete(bucketLayers, l.String()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("remove image %s: %w", img.ID, err)
	}
	delete(s.images, img.ID)
	for r, id := range s.refs {
		if id == img.ID {
			delete(s.refs, r)
		}
	}
	for _, l := range orphans {
		delete(s.layers, l)
	}
	s.mu.Unlock()

	for _, l := range orphans {
		s.removeLater(s.LayerDir(l))
	}
	s.removeLater(filepath.Join(s.blobDir(), img.ID.Encoded()))
	s.removeLater(filepath.Join(s.blobDir(), img.ManifestDigest.Encoded()))
	s.log.InfoContext(ctx, "removed image", "id", img.ID, "layers", len(orphans))
	return nil
}

// FsUsage is what the image store costs on its filesystem.
type FsUsage struct {
	Mountpoint    string
	Bytes, Inodes uint64
}

// Usage sums the unpacked layers and the stored blobs.
func (s *Service) Usage() FsUsage {
	s.mu.Lock()
	u := FsUsage{Mountpoint: s.dir}
	for _, l := range s.layers {
		u.Bytes += uint64(l.Usage.Bytes)
		u.Inodes += uint64(l.Usage.Inodes)
	}
	s.mu.Unlock()
	if entries, err := os.ReadDir(s.blobDir()); err == nil {
		for _, e := range entries {
			if info, err := e.Info(); err == nil {
				u.Bytes += uint64(info.Size())
				u.Inodes++
			}
		}
	}
	return u
}

// UserID splits the image's User into the numeric UID or the user name the
// kubelet wants (it checks runAsNonRoot with them); the group is dropped.
func (img Image) UserID() (uid *int64, username string) {
	user, _, _ := strings.Cut(img.User, ":")
	if user == "" {
		return nil, ""
	}
	if n, err := strconv.ParseInt(user, 10, 64); err == nil {
		return &n, ""
	}
	return nil, user
}

func (img *Image) clone() Image {
	c := *img
	c.RepoTags = slices.Clone(img.RepoTags)
	c.RepoDigests = slices.Clone(img.RepoDigests)
	c.Layers = slices.Clone(img.Layers)
	return c
}
