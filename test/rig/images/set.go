package images

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one platform's image before it is serialised.
type Image struct {
	Format  Format
	Arch    string // GOARCH name; "amd64" if empty
	Layers  []Layer
	Config  ocispec.ImageConfig
	Comment string // recorded in the config history, to explain the stand-in
}

// Manifest is a serialised manifest or index as the registry serves it.
type Manifest struct {
	MediaType string
	Data      []byte
	Digest    digest.Digest
}

// Ref is one name the rig serves: "registry.k8s.io/pause:3.9" and the digest
// of what that tag resolves to.
type Ref struct {
	Name      string // host/repo:tag
	Digest    digest.Digest
	MediaType string
}

// Set is the built content: blobs by digest and manifests by repository and
// reference. Repositories are named with their upstream host as the first
// component ("registry.k8s.io/e2e-test-images/busybox"), which is the layout
// the generated hosts.toml files point crid at.
type Set struct {
	blobs map[digest.Digest][]byte
	repos map[string]map[string]Manifest
	refs  []Ref
}

// NewSet returns an empty set.
func NewSet() *Set {
	return &Set{blobs: map[digest.Digest][]byte{}, repos: map[string]map[string]Manifest{}}
}

// Blob returns a blob by digest. Blobs are shared by all repositories, which
// a read-only registry may do: clients address them by content.
func (s *Set) Blob(_ string, d string) ([]byte, bool) {
	b, ok := s.blobs[digest.Digest(d)]
	return b, ok
}

// Manifest returns a manifest of repo by tag or by digest.
func (s *Set) Manifest(repo, ref string) (mediaType string, data []byte, ok bool) {
	m, ok := s.repos[repo][ref]
	return m.MediaType, m.Data, ok
}

// Tags lists a repository's tags, sorted.
func (s *Set) Tags(repo string) ([]string, bool) {
	ms, ok := s.repos[repo]
	if !ok {
		return nil, false
	}
	var tags []string
	for ref := range ms {
		if !strings.Contains(ref, ":") {
			tags = append(tags, ref)
		}
	}
	sort.Strings(tags)
	return tags, true
}

// Refs lists every tagged name with its digest, sorted by name.
func (s *Set) Refs() []Ref {
	out := append([]Ref(nil), s.refs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Hosts lists the upstream registry hosts the set has repositories for.
func (s *Set) Hosts() []string {
	seen := map[string]bool{}
	for repo := range s.repos {
		seen[strings.SplitN(repo, "/", 2)[0]] = true
	}
	var out []string
	for h := range seen {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// Lookup finds a tagged name's digest.
func (s *Set) Lookup(name string) (Ref, bool) {
	for _, r := range s.refs {
		if r.Name == name {
			return r, true
		}
	}
	return Ref{}, false
}

func (s *Set) addBlob(b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	s.blobs[d] = b
	return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
}

// put stores m in repo under its digest and every tag.
func (s *Set) put(name string, m Manifest, tags ...string) {
	repo := name
	if s.repos[repo] == nil {
		s.repos[repo] = map[string]Manifest{}
	}
	s.repos[repo][m.Digest.String()] = m
	for _, t := range tags {
		s.repos[repo][t] = m
		s.refs = append(s.refs, Ref{Name: repo + ":" + t, Digest: m.Digest, MediaType: m.MediaType})
	}
}

// build serialises one image: blobs go into the set, the manifest is
// returned (not yet stored under any repository).
func (s *Set) build(img Image) (Manifest, error) {
	arch := img.Arch
	if arch == "" {
		arch = "amd64"
	}
	created := Epoch
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: arch, OS: "linux"},
		Config:   img.Config,
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	for _, l := range img.Layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: "crid test rig", Comment: img.Comment})
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return Manifest{}, fmt.Errorf("marshal config: %w", err)
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}}
	m.Config = s.addBlob(cfgJSON)
	if img.Format == Docker {
		m.MediaType, m.Config.MediaType = MediaTypeDockerManifest, MediaTypeDockerConfig
	} else {
		m.MediaType, m.Config.MediaType = ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig
	}
	for _, l := range img.Layers {
		d := s.addBlob(l.Blob)
		if d.MediaType, err = l.mediaType(img.Format); err != nil {
			return Manifest{}, err
		}
		m.Layers = append(m.Layers, d)
	}
	data, err := json.MarshalIndent(m, "", "   ")
	if err != nil {
		return Manifest{}, fmt.Errorf("marshal manifest: %w", err)
	}
	return Manifest{MediaType: m.MediaType, Data: data, Digest: digest.FromBytes(data)}, nil
}

// AddImage serialises img and tags it in repo (a name like
// "registry.k8s.io/pause", without tag).
func (s *Set) AddImage(repo string, img Image, tags ...string) (Manifest, error) {
	m, err := s.build(img)
	if err != nil {
		return Manifest{}, fmt.Errorf("image %s: %w", repo, err)
	}
	s.put(repo, m, tags...)
	return m, nil
}

// AddIndex serialises one image per platform and an index (Docker manifest
// list or OCI image index, per format) over them, tagged in repo. The
// platform manifests are stored by digest only, as registries do.
func (s *Set) AddIndex(repo string, format Format, imgs []Image, tags ...string) (Manifest, error) {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	if format == Docker {
		idx.MediaType = MediaTypeDockerManifestList
	}
	for _, img := range imgs {
		img.Format = format
		m, err := s.build(img)
		if err != nil {
			return Manifest{}, fmt.Errorf("image %s (%s): %w", repo, img.Arch, err)
		}
		s.put(repo, m)
		arch := img.Arch
		if arch == "" {
			arch = "amd64"
		}
		p := &ocispec.Platform{Architecture: arch, OS: "linux"}
		if arch == "arm64" {
			p.Variant = "v8"
		}
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
			MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Data)), Platform: p,
		})
	}
	data, err := json.MarshalIndent(idx, "", "   ")
	if err != nil {
		return Manifest{}, fmt.Errorf("marshal index %s: %w", repo, err)
	}
	m := Manifest{MediaType: idx.MediaType, Data: data, Digest: digest.FromBytes(data)}
	s.put(repo, m, tags...)
	return m, nil
}
