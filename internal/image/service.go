// Package image owns crid's images: pulling them from registries, keeping
// their manifests and configs by digest, unpacking each layer once (keyed by
// its diffID) into a directory ready to be an overlayfs lower layer, and
// answering the kubelet's questions about them.
//
// Layout under <root>/image:
//
//	blobs/sha256/<hex>   manifests, indexes and configs, by digest
//	layers/<hex>/        one unpacked layer per diffID
//	tmp/                 work in progress; emptied at start
//
// The metadata database records an image only once all its layers are
// unpacked, so a pull interrupted at any point leaves no image, and the
// start-up sweep removes whatever it had written.
package image

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/crid-project/crid/internal/config"
	"github.com/crid-project/crid/internal/image/layer"
	"github.com/crid-project/crid/internal/image/registry"
	"github.com/crid-project/crid/internal/store"
)

const (
	bucketImages = "images"
	bucketLayers = "layers"
)

// Image is the stored record of one image, keyed by its ID (the config digest).
type Image struct {
	ID             digest.Digest   `json:"id"`
	RepoTags       []string        `json:"repoTags,omitempty"`
	RepoDigests    []string        `json:"repoDigests,omitempty"`
	ManifestDigest digest.Digest   `json:"manifestDigest"`
	Layers         []digest.Digest `json:"layers"` // diffIDs, bottom first
	User           string          `json:"user,omitempty"`
	// Annotations are the manifest's: a checkpoint image is marked there.
	Annotations map[string]string `json:"annotations,omitempty"`
	Size        int64             `json:"size"` // unpacked bytes of all layers
	Pulled      time.Time         `json:"pulled"`
}

// Layer is the stored record of one unpacked layer.
type Layer struct {
	DiffID digest.Digest `json:"diffID"`
	Usage  layer.Usage   `json:"usage"`
}

// Service is the image store and puller.
type Service struct {
	dir    string
	db     *store.Store
	hosts  *registry.Hosts
	cfg    config.ImageConfig
	log    *slog.Logger
	pinned map[string]bool // normalized references

	mu      sync.Mutex
	images  map[digest.Digest]*Image
	refs    map[string]digest.Digest // tag or digest reference → image ID
	layers  map[digest.Digest]Layer
	pulling map[digest.Digest]int // diffIDs in use by pulls not yet committed

	// InUse, when set, names a container using the image: its layers are
	// that container's overlayfs lower dirs, so the image must stay.
	InUse func(id digest.Digest) (containerID string, used bool)

	pulls   flights[string, pullResult]
	unpacks flights[digest.Digest, Layer]
}

// New opens the image store under root, loads its records and removes what
// an interrupted pull or removal left behind.
func New(root string, db *store.Store, cfg config.ImageConfig, log *slog.Logger) (*Service, error) {
	s := &Service{
		dir:     filepath.Join(root, "image"),
		db:      db,
		hosts:   registry.NewHosts(cfg.RegistryConfigDir),
		cfg:     cfg,
		log:     log,
		pinned:  map[string]bool{},
		images:  map[digest.Digest]*Image{},
		refs:    map[string]digest.Digest{},
		layers:  map[digest.Digest]Layer{},
		pulling: map[digest.Digest]int{},
	}
	for _, ref := range append(slices.Clone(cfg.PinnedImages), cfg.SandboxImage) {
		if ref == "" {
			continue
		}
		named, err := normalizeRef(ref)
		if err != nil {
			return nil, fmt.Errorf("pinned image: %w", err)
		}
		s.pinned[named.String()] = true
	}
	for _, d := range []string{s.blobDir(), s.layerRoot(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	if err := s.sweep(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Service) blobDir() string   { return filepath.Join(s.dir, "blobs", "sha256") }
func (s *Service) layerRoot() string { return filepath.Join(s.dir, "layers") }
func (s *Service) tmpDir() string    { return filepath.Join(s.dir, "tmp") }

// LayerDir is the unpacked directory of the layer with diffID: an overlayfs
// lower directory.
func (s *Service) LayerDir(diffID digest.Digest) string {
	return filepath.Join(s.layerRoot(), diffID.Encoded())
}

func (s *Service) load() error {
	return s.db.View(func(tx *store.Tx) error {
		images, err := store.List[Image](tx, bucketImages)
		if err != nil {
			return err
		}
		for i := range images {
			img := &images[i]
			s.images[img.ID] = img
			for _, r := range img.RepoTags {
				s.refs[r] = img.ID
			}
			for _, r := range img.RepoDigests {
				s.refs[r] = img.ID
			}
		}
		layers, err := store.List[Layer](tx, bucketLayers)
		if err != nil {
			return err
		}
		for _, l := range layers {
			s.layers[l.DiffID] = l
		}
		return nil
	})
}

// sweep removes everything no image record references: the layers and blobs
// of pulls that never committed, and the work dirs of interrupted pulls and
// removals. It runs before crid serves, so no pull is in flight.
func (s *Service) sweep() error {
	usedLayers := map[string]bool{}
	usedBlobs := map[string]bool{}
	for _, img := range s.images {
		usedBlobs[img.ID.Encoded()] = true
		usedBlobs[img.ManifestDigest.Encoded()] = true
		for _, l := range img.Layers {
			usedLayers[l.Encoded()] = true
		}
	}
	var stale []digest.Digest
	for d := range s.layers {
		if !usedLayers[d.Encoded()] {
			stale = append(stale, d)
		}
	}
	if len(stale) > 0 {
		if err := s.db.Update(func(tx *store.Tx) error {
			for _, d := range stale {
				if err := tx.Delete(bucketLayers, d.String()); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("sweep layer records: %w", err)
		}
		for _, d := range stale {
			delete(s.layers, d)
		}
	}
	var errs []error
	removeUnused := func(dir string, used map[string]bool) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, e := range entries {
			if !used[e.Name()] {
				s.log.Info("removing unreferenced image data", "path", filepath.Join(dir, e.Name()))
				errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
			}
		}
	}
	removeUnused(s.layerRoot(), usedLayers)
	removeUnused(s.blobDir(), usedBlobs)
	removeUnused(s.tmpDir(), nil)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep image store: %w", err)
	}
	return nil
}

// removeLater moves path into tmp/ (atomic) and deletes it in the
// background; a crash in between is finished by the next start's sweep.
func (s *Service) removeLater(path string) {
	tmp, err := os.MkdirTemp(s.tmpDir(), "rm-")
	if err != nil {
		s.log.Warn("remove image data", "path", path, "error", err)
		return
	}
	dst := filepath.Join(tmp, "x")
	if err := os.Rename(path, dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove image data", "path", path, "error", err)
	}
	go func() {
		if err := os.RemoveAll(tmp); err != nil {
			s.log.Warn("remove image data", "path", tmp, "error", err)
		}
	}()
}
