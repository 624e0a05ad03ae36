package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/crid-project/crid/internal/image/layer"
	"github.com/crid-project/crid/internal/store"
)

// Auth is the registry credential a pull may carry (the CRI AuthConfig).
type Auth struct {
	Username, Password, Auth, IdentityToken, RegistryToken string
}

func (a *Auth) authenticator() authn.Authenticator {
	if a == nil || *a == (Auth{}) {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		Auth:          a.Auth,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	})
}

type pullResult struct {
	id digest.Digest
}

// Pull fetches ref (normalized as the kubelet does) and returns the image ID.
// Concurrent pulls of one reference share one download.
func (s *Service) Pull(ctx context.Context, ref string, auth *Auth) (digest.Digest, error) {
	named, err := normalizeRef(ref)
	if err != nil {
		return "", err
	}
	res, err := s.pulls.Do(ctx, named.String(), func(ctx context.Context) (pullResult, error) {
		return s.pull(ctx, named, auth)
	})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", fmt.Errorf("pull %s: %w", named, ctxErr)
		}
		return "", err
	}
	return res.id, nil
}

func (s *Service) pull(ctx context.Context, named reference.Named, auth *Auth) (pullResult, error) {
	start := time.Now()
	ctx, stop, prog := s.watchProgress(ctx)
	defer stop()

	ref, err := name.ParseReference(named.String())
	if err != nil {
		return pullResult{}, fmt.Errorf("pull %s: %v: %w", named, err, errdefs.ErrInvalidArgument)
	}
	endpoints, err := s.hosts.Endpoints(reference.Domain(named))
	if err != nil {
		return pullResult{}, fmt.Errorf("pull %s: registry config: %w", named, err)
	}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	var errs []error
	for _, ep := range endpoints {
		if !slices.Contains(ep.Capabilities, "pull") {
			continue
		}
		// One authenticated transport per host, used for the manifests
		// (through go-containerregistry) and for the layer blobs. Being a
		// transport.Wrapper it is used as is: no retries, so a dead mirror
		// fails over to the next host at once.
		rt, err := transport.NewWithContext(ctx, ref.Context().Registry, auth.authenticator(), ep.Transport,
			[]string{ref.Context().Scope(transport.PullScope)})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep.URL, classify(err)))
			continue
		}
		desc, err := remote.Get(ref, remote.WithContext(ctx), remote.WithTransport(rt), remote.WithPlatform(platform))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep.URL, classify(err)))
			continue
		}
		img, err := desc.Image()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: resolve platform %s: %w", ep.URL, platform, classify(err)))
			continue
		}
		blobs := &blobFetcher{client: &http.Client{Transport: rt}, repo: ref.Context()}
		id, err := s.fetch(ctx, named, digest.Digest(desc.Digest.String()), img, blobs, prog)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				err = cause
			}
			return pullResult{}, fmt.Errorf("pull %s from %s: %w", named, ep.URL, err)
		}
		s.log.Info("pulled image", "image", named.String(), "id", id, "from", ep.URL.String(),
			"bytes", prog.bytes.Load(), "duration", time.Since(start))
		return pullResult{id: id}, nil
	}
	if len(errs) == 0 {
		return pullResult{}, fmt.Errorf("pull %s: no registry host with the pull capability: %w", named, errdefs.ErrFailedPrecondition)
	}
	err = errors.Join(errs...)
	if !allNotFound(errs) {
		// Keep a NotFound from masking an outage, and vice versa.
		err = fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	return pullResult{}, fmt.Errorf("pull %s: %w", named, err)
}

// fetch unpacks the layers of img that are missing and commits the image.
func (s *Service) fetch(ctx context.Context, named reference.Named, topDigest digest.Digest, img v1.Image, blobs *blobFetcher, prog *progress) (digest.Digest, error) {
	cfgName, err := img.ConfigName()
	if err != nil {
		return "", classify(err)
	}
	id := digest.Digest(cfgName.String())
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return "", classify(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("image config: %w", err)
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return "", classify(err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return "", classify(err)
	}
	manifest, err := img.Manifest()
	if err != nil {
		return "", classify(err)
	}
	layers := manifest.Layers
	diffIDs := make([]digest.Digest, len(cfg.RootFS.DiffIDs))
	for i, d := range cfg.RootFS.DiffIDs {
		diffIDs[i] = digest.Digest(d.String())
		if err := diffIDs[i].Validate(); err != nil {
			return "", fmt.Errorf("image config diff_ids[%d]: %w", i, err)
		}
	}
	if len(layers) != len(diffIDs) {
		return "", fmt.Errorf("manifest has %d layers, config %d diff_ids", len(layers), len(diffIDs))
	}

	release := s.lease(diffIDs)
	defer release()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.MaxConcurrentDownloads)
	for i, l := range layers {
		diffID := diffIDs[i]
		if s.hasLayer(diffID) {
			continue
		}
		g.Go(func() error {
			_, err := s.unpacks.Do(gctx, diffID, func(ctx context.Context) (Layer, error) {
				return s.unpack(ctx, blobs, l, diffID, prog)
			})
			if err != nil {
				return fmt.Errorf("layer %s: %w", diffID, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	if err := s.writeBlob(manifestDigest.String(), rawManifest); err != nil {
		return "", err
	}
	if err := s.writeBlob(id.String(), rawConfig); err != nil {
		return "", err
	}
	rec := &Image{
		ID:             id,
		ManifestDigest: digest.Digest(manifestDigest.String()),
		Layers:         diffIDs,
		User:           cfg.Config.User,
		Annotations:    manifest.Annotations,
		Pulled:         time.Now().UTC(),
	}
	refs := []string{named.Name() + "@" + topDigest.String()}
	if tagged, ok := named.(reference.Tagged); ok {
		refs = append(refs, named.Name()+":"+tagged.Tag())
	}
	if err := s.commit(rec, refs); err != nil {
		return "", err
	}
	return id, nil
}

// unpack fetches one layer blob and unpacks it into its directory.
func (s *Service) unpack(ctx context.Context, blobs *blobFetcher, desc v1.Descriptor, diffID digest.Digest, prog *progress) (Layer, error) {
	start := time.Now()
	rc, err := blobs.open(ctx, desc)
	if err != nil {
		return Layer{}, classify(err)
	}
	defer rc.Close()
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return Layer{}, err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	usage, err := layer.Apply(ctx, tmp, prog.reader(rc), diffID)
	if err != nil {
		return Layer{}, classify(err)
	}
	if err := os.Rename(tmp, s.LayerDir(diffID)); err != nil {
		return Layer{}, fmt.Errorf("install layer: %w", err)
	}
	rec := Layer{DiffID: diffID, Usage: usage}
	if err := s.db.Update(func(tx *store.Tx) error { return tx.Put(bucketLayers, diffID.String(), rec) }); err != nil {
		return Layer{}, err
	}
	s.mu.Lock()
	s.layers[diffID] = rec
	s.mu.Unlock()
	s.log.Debug("unpacked layer", "diffID", diffID, "bytes", usage.Bytes, "duration", time.Since(start))
	return rec, nil
}

// blobFetcher GETs layer blobs from one registry host. Unlike
// go-containerregistry's Layer.Compressed it does not hash the compressed
// bytes: layer.Apply verifies every layer's diffID, which the config lists and
// the image ID (the config's digest) pins, so the content is verified end to
// end, and crid keeps no compressed blobs whose digest would matter. On CPUs
// without SHA instructions the second SHA-256 pass was a third of a pull's
// CPU time (bench/README.md).
type blobFetcher struct {
	client *http.Client
	repo   name.Repository
}

func (b *blobFetcher) open(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	u := url.URL{
		Scheme: b.repo.Scheme(),
		Host:   b.repo.RegistryStr(),
		Path:   "/v2/" + b.repo.RepositoryStr() + "/blobs/" + desc.Digest.String(),
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, err
	}
	if resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
		resp.Body.Close()
		return nil, fmt.Errorf("blob %s: registry sends %d bytes, manifest says %d", desc.Digest, resp.ContentLength, desc.Size)
	}
	// Never read more than the manifest promised.
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, desc.Size), resp.Body}, nil
}

func (s *Service) hasLayer(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.layers[d]
	return ok
}

// lease keeps diffIDs from being removed until the pull that uses them has
// committed its image (or failed).
func (s *Service) lease(diffIDs []digest.Digest) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range diffIDs {
		s.pulling[d]++
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, d := range diffIDs {
			if s.pulling[d]--; s.pulling[d] == 0 {
				delete(s.pulling, d)
			}
		}
	}
}

// writeBlob stores content by digest, atomically.
func (s *Service) writeBlob(dgst string, data []byte) error {
	d, err := digest.Parse(dgst)
	if err != nil {
		return err
	}
	if d.Algorithm().FromBytes(data) != d {
		return fmt.Errorf("blob %s: content does not match its digest", d)
	}
	path := filepath.Join(s.blobDir(), d.Encoded())
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	f, err := os.CreateTemp(s.tmpDir(), "blob-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// commit records the image and points refs at it, taking them from any other
// image they named before (a tag moves to the newly pulled image).
func (s *Service) commit(rec *Image, refs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range rec.Layers {
		rec.Size += s.layers[d].Usage.Bytes
	}
	if old, ok := s.images[rec.ID]; ok {
		rec.RepoTags = slices.Clone(old.RepoTags)
		rec.RepoDigests = slices.Clone(old.RepoDigests)
		rec.Pulled = old.Pulled
	}
	changed := map[digest.Digest]*Image{rec.ID: rec}
	for _, r := range refs {
		if prev, ok := s.refs[r]; ok && prev != rec.ID {
			other := changed[prev]
			if other == nil {
				c := *s.images[prev]
				other = &c
				changed[prev] = other
			}
			other.RepoTags = slices.DeleteFunc(slices.Clone(other.RepoTags), func(t string) bool { return t == r })
			other.RepoDigests = slices.DeleteFunc(slices.Clone(other.RepoDigests), func(t string) bool { return t == r })
		}
		if isDigestRef(r) {
			if !slices.Contains(rec.RepoDigests, r) {
				rec.RepoDigests = append(rec.RepoDigests, r)
			}
		} else if !slices.Contains(rec.RepoTags, r) {
			rec.RepoTags = append(rec.RepoTags, r)
		}
	}
	err := s.db.Update(func(tx *store.Tx) error {
		for id, img := range changed {
			if err := tx.Put(bucketImages, id.String(), img); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record image %s: %w", rec.ID, err)
	}
	for id, img := range changed {
		s.images[id] = img
	}
	for _, r := range refs {
		s.refs[r] = rec.ID
	}
	return nil
}

func isDigestRef(r string) bool {
	named, err := reference.ParseNormalizedNamed(r)
	if err != nil {
		return false
	}
	_, ok := named.(reference.Digested)
	return ok
}

// classify maps registry and network errors onto crid's error kinds.
func classify(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
		case terr.StatusCode == http.StatusUnauthorized:
			return fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
		case terr.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
		}
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
			}
		}
		return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	var nerr net.Error
	if errors.As(err, &nerr) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	return err
}

func allNotFound(errs []error) bool {
	for _, err := range errs {
		if !errdefs.IsNotFound(err) {
			return false
		}
	}
	return true
}

// progress counts the bytes a pull has read and when it last read any.
type progress struct {
	bytes atomic.Int64
	last  atomic.Int64 // unix nanoseconds
}

func (p *progress) reader(r io.Reader) io.Reader { return &progressReader{r: r, p: p} }

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	if n > 0 {
		pr.p.bytes.Add(int64(n))
		pr.p.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// watchProgress cancels ctx when the pull reads nothing for the configured
// progress timeout; a slow but moving pull is left alone, however long.
func (s *Service) watchProgress(ctx context.Context) (context.Context, func(), *progress) {
	p := &progress{}
	p.last.Store(time.Now().UnixNano())
	ctx, cancel := context.WithCancelCause(ctx)
	timeout := time.Duration(s.cfg.PullProgressTimeout)
	if timeout <= 0 {
		return ctx, func() { cancel(nil) }, p
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(min(timeout/4, time.Second))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if idle := time.Since(time.Unix(0, p.last.Load())); idle > timeout {
					cancel(fmt.Errorf("no progress for %s: %w", idle.Round(time.Second), errdefs.ErrUnavailable))
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }, p
}
