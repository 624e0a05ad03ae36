// Package registry is a read-only OCI distribution (Docker registry HTTP API
// v2) server for the test rig's prebuilt content.
//
// It is written here rather than taken from go-containerregistry's
// pkg/registry because that one answers open-ended Range requests
// ("bytes=N-", what containerd-style resumable pulls send) with 416, buffers
// whole blobs per request, and can only be filled through its push API. This
// one serves blobs with http.ServeContent (HEAD, any Range, Content-Length)
// and can throttle them for the kill-during-pull test.
package registry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Content is what the registry serves. Repository names may contain dots and
// any number of components ("registry.k8s.io/e2e-test-images/busybox").
type Content interface {
	Manifest(repo, ref string) (mediaType string, data []byte, ok bool)
	Blob(repo, digest string) ([]byte, bool)
	Tags(repo string) ([]string, bool)
}

// Options tune the server.
type Options struct {
	// Throttle limits each blob response to this many bytes per second;
	// 0 means unlimited. Manifests are never throttled.
	Throttle int64
	Log      *slog.Logger
}

type server struct {
	content Content
	opts    Options
}

// New returns the registry's HTTP handler.
func New(c Content, opts Options) http.Handler {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &server{content: c, opts: opts}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	s.serve(rec, r)
	s.opts.Log.Debug("request", "method", r.Method, "path", r.URL.Path, "range", r.Header.Get("Range"),
		"status", rec.status, "bytes", rec.bytes, "took", time.Since(start).Round(time.Millisecond))
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		apiError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry is read-only")
		return
	}
	p := r.URL.Path
	if p == "/v2/" || p == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "not an API v2 path")
		return
	}
	// Split on the last /manifests/, /blobs/ or /tags/ so that repository
	// names are unrestricted.
	if repo, ref, ok := cutLast(rest, "/manifests/"); ok {
		s.manifest(w, r, repo, ref)
		return
	}
	if repo, dgst, ok := cutLast(rest, "/blobs/"); ok {
		s.blob(w, r, repo, dgst)
		return
	}
	if repo, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		s.tags(w, repo)
		return
	}
	apiError(w, http.StatusNotFound, "NOT_FOUND", "unknown API path")
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i <= 0 || i+len(sep) == len(s) {
		return "", "", false
	}
	return s[:i], s[i+len(sep):], true
}

// manifest ignores Accept: every manifest exists in exactly one media type
// and clients (containerd, crid) accept all four the rig uses.
func (s *server) manifest(w http.ResponseWriter, r *http.Request, repo, ref string) {
	mt, data, ok := s.content.Manifest(repo, ref)
	if !ok {
		if _, known := s.content.Tags(repo); !known {
			apiError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry: "+repo)
			return
		}
		apiError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown: "+repo+":"+ref)
		return
	}
	h := w.Header()
	h.Set("Content-Type", mt)
	h.Set("Docker-Content-Digest", digestOf(data))
	h.Set("Etag", `"`+digestOf(data)+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func (s *server) blob(w http.ResponseWriter, r *http.Request, repo, dgst string) {
	data, ok := s.content.Blob(repo, dgst)
	if !ok {
		apiError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry: "+dgst)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", dgst)
	h.Set("Etag", `"`+dgst+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	if s.opts.Throttle > 0 && r.Method == http.MethodGet {
		w = &throttled{ResponseWriter: w, rate: s.opts.Throttle, ctx: r.Context().Done()}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func (s *server) tags(w http.ResponseWriter, repo string) {
	tags, ok := s.content.Tags(repo)
	if !ok {
		apiError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry: "+repo)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": tags})
}

func digestOf(b []byte) string { return digest.FromBytes(b).String() }

// apiError writes the distribution spec's error body.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// throttled paces writes to rate bytes per second in small chunks, flushing
// each one, so a client sees a steady trickle it can be killed in the middle
// of.
type throttled struct {
	http.ResponseWriter
	rate int64
	ctx  <-chan struct{}
}

func (t *throttled) Write(b []byte) (int, error) {
	chunk := max(int(t.rate/20), 512) // ~20 writes per second
	written := 0
	for len(b) > 0 {
		n := min(chunk, len(b))
		m, err := t.ResponseWriter.Write(b[:n])
		written += m
		if err != nil {
			return written, err
		}
		if f, ok := t.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		b = b[n:]
		select {
		case <-t.ctx:
			return written, http.ErrHandlerTimeout
		case <-time.After(time.Duration(int64(n) * int64(time.Second) / t.rate)):
		}
	}
	return written, nil
}

// Flush lets ServeContent's writer reach the connection.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
