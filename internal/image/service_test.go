package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/crid-project/crid/internal/config"
	"github.com/crid-project/crid/internal/store"
)

// testRegistry is a real OCI registry on loopback that serves each upstream
// registry's repositories under /v2/<upstream host>/, as the test rig does.
type testRegistry struct {
	t         *testing.T
	srv       *httptest.Server
	hostsDir  string
	blobGets  sync.Map // digest → *atomic.Int32
	intercept atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
}

func newTestRegistry(t *testing.T, upstreams ...string) *testRegistry {
	t.Helper()
	tr := &testRegistry{t: t, hostsDir: t.TempDir()}
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := tr.intercept.Load(); f != nil && (*f)(w, r) {
			return
		}
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
			c, _ := tr.blobGets.LoadOrStore(r.URL.Path[i+len("/blobs/"):], new(atomic.Int32))
			c.(*atomic.Int32).Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	for _, up := range upstreams {
		tr.mirror(up, tr.srv.URL+"/v2/"+up)
	}
	return tr
}

// mirror writes hosts.toml for upstream with the given mirror URLs in order.
func (tr *testRegistry) mirror(upstream string, urls ...string) {
	var b strings.Builder
	fmt.Fprintf(&b, "server = %q\n", "https://"+upstream)
	for _, u := range urls {
		fmt.Fprintf(&b, "[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n", u)
	}
	dir := filepath.Join(tr.hostsDir, upstream)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(b.String()), 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

// push stores img as upstreamRef (e.g. "registry.example/a/b:v1").
func (tr *testRegistry) push(upstreamRef string, img v1.Image) {
	tr.t.Helper()
	ref, err := name.ParseReference(strings.TrimPrefix(tr.srv.URL, "http://") + "/" + upstreamRef)
	if err != nil {
		tr.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		tr.t.Fatalf("push %s: %v", upstreamRef, err)
	}
}

func (tr *testRegistry) pushIndex(upstreamRef string, idx v1.ImageIndex) {
	tr.t.Helper()
	ref, err := name.ParseReference(strings.TrimPrefix(tr.srv.URL, "http://") + "/" + upstreamRef)
	if err != nil {
		tr.t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		tr.t.Fatalf("push %s: %v", upstreamRef, err)
	}
}

func newService(t *testing.T, root, hostsDir string, mod ...func(*config.ImageConfig)) *Service {
	t.Helper()
	db, err := store.Open(filepath.Join(root, "crid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := config.Default().Image
	cfg.RegistryConfigDir = hostsDir
	for _, m := range mod {
		m(&cfg)
	}
	s, err := New(root, db, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomImage(t *testing.T, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(2048, layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func configDigest(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

func manifestDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func layerDirs(t *testing.T, s *Service) []string {
	t.Helper()
	entries, err := os.ReadDir(s.layerRoot())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// settle waits for background removals to finish.
func settle(t *testing.T, s *Service) {
	t.Helper()
	for range 200 {
		if entries, _ := os.ReadDir(s.tmpDir()); len(entries) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("tmp dir never emptied")
}

func TestPullStatusRemove(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	img := randomImage(t, 3)
	reg.push("registry.example/team/app:v1", img)
	s := newService(t, t.TempDir(), reg.hostsDir)
	ctx := context.Background()

	id, err := s.Pull(ctx, "registry.example/team/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := configDigest(t, img); id != want {
		t.Fatalf("ID %s, want config digest %s", id, want)
	}
	digestRef := "registry.example/team/app@" + manifestDigest(t, img)
	for _, ref := range []string{"registry.example/team/app:v1", id.String(), id.Encoded(), id.Encoded()[:12], digestRef} {
		got, err := s.Get(ref)
		if err != nil {
			t.Fatalf("Get(%q): %v", ref, err)
		}
		if got.ID != id {
			t.Fatalf("Get(%q) = %s", ref, got.ID)
		}
	}
	got, _ := s.Get(id.String())
	if len(got.RepoTags) != 1 || got.RepoTags[0] != "registry.example/team/app:v1" {
		t.Errorf("RepoTags = %v", got.RepoTags)
	}
	if len(got.RepoDigests) != 1 || got.RepoDigests[0] != digestRef {
		t.Errorf("RepoDigests = %v, want %s", got.RepoDigests, digestRef)
	}
	if got.Size <= 0 || len(got.Layers) != 3 || len(layerDirs(t, s)) != 3 {
		t.Errorf("size %d, layers %d, dirs %v", got.Size, len(got.Layers), layerDirs(t, s))
	}
	if u := s.Usage(); u.Bytes == 0 || u.Inodes == 0 {
		t.Errorf("usage %+v", u)
	}

	if err := s.Remove(ctx, "registry.example/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(id.String()); !errdefs.IsNotFound(err) {
		t.Fatalf("after remove: %v", err)
	}
	if err := s.Remove(ctx, id.String()); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	settle(t, s)
	if dirs := layerDirs(t, s); len(dirs) != 0 {
		t.Fatalf("layers left: %v", dirs)
	}
	if u := s.Usage(); u.Bytes != 0 {
		t.Errorf("usage after remove %+v", u)
	}
}

func TestRestartKeepsImages(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	img := randomImage(t, 2)
	reg.push("registry.example/app:v1", img)
	root := t.TempDir()
	s := newService(t, root, reg.hostsDir)
	id, err := s.Pull(context.Background(), "registry.example/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.Get(id.String())
	s.db.Close()

	s2 := newService(t, root, reg.hostsDir)
	after, err := s2.Get("registry.example/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) || len(layerDirs(t, s2)) != 2 {
		t.Fatalf("before %+v\nafter %+v", before, after)
	}
}

func TestSameImageTwoNamesOneID(t *testing.T) {
	reg := newTestRegistry(t, "registry.k8s.io", "k8s.gcr.io")
	img := randomImage(t, 1)
	reg.push("registry.k8s.io/pause:3.9", img)
	reg.push("k8s.gcr.io/pause:3.9", img)
	reg.push("registry.k8s.io/pause:other", img)
	s := newService(t, t.TempDir(), reg.hostsDir)
	ctx := context.Background()
	var ids []digest.Digest
	for _, ref := range []string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9", "registry.k8s.io/pause:other",
		"registry.k8s.io/pause@" + manifestDigest(t, img)} {
		id, err := s.Pull(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("IDs differ: %v", ids)
		}
	}
	got, _ := s.Get(ids[0].String())
	if len(got.RepoTags) != 3 || len(got.RepoDigests) != 2 {
		t.Fatalf("tags %v digests %v", got.RepoTags, got.RepoDigests)
	}
	if len(s.List()) != 1 {
		t.Fatalf("list has %d images", len(s.List()))
	}
	if err := s.Remove(ctx, "k8s.gcr.io/pause:3.9"); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"registry.k8s.io/pause:3.9", "registry.k8s.io/pause:other"} {
		if _, err := s.Get(ref); !errdefs.IsNotFound(err) {
			t.Errorf("%s after remove: %v", ref, err)
		}
	}
}

func TestTagMovesToNewImage(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	a, b := randomImage(t, 1), randomImage(t, 1)
	reg.push("registry.example/app:latest", a)
	s := newService(t, t.TempDir(), reg.hostsDir)
	ctx := context.Background()
	idA, err := s.Pull(ctx, "registry.example/app", nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.push("registry.example/app:latest", b)
	idB, err := s.Pull(ctx, "registry.example/app:latest", nil)
	if err != nil {
		t.Fatal(err)
	}
	if idA == idB {
		t.Fatal("same ID for different images")
	}
	oldImg, err := s.Get(idA.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(oldImg.RepoTags) != 0 {
		t.Fatalf("old image kept tag: %v", oldImg.RepoTags)
	}
	if got, _ := s.Get("registry.example/app:latest"); got.ID != idB {
		t.Fatalf("tag points at %s, want %s", got.ID, idB)
	}
}

func TestSharedLayersRemovedWithLastImage(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	base := randomImage(t, 2)
	extra, err := random.Layer(1024, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	child, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	reg.push("registry.example/base:1", base)
	reg.push("registry.example/child:1", child)
	s := newService(t, t.TempDir(), reg.hostsDir)
	ctx := context.Background()
	for _, ref := range []string{"registry.example/base:1", "registry.example/child:1"} {
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(layerDirs(t, s)); n != 3 {
		t.Fatalf("%d layer dirs, want 3 (shared layers stored once)", n)
	}
	if err := s.Remove(ctx, "registry.example/child:1"); err != nil {
		t.Fatal(err)
	}
	settle(t, s)
	if n := len(layerDirs(t, s)); n != 2 {
		t.Fatalf("%d layer dirs after removing child, want 2", n)
	}
	if err := s.Remove(ctx, "registry.example/base:1"); err != nil {
		t.Fatal(err)
	}
	settle(t, s)
	if n := len(layerDirs(t, s)); n != 0 {
		t.Fatalf("%d layer dirs after removing both", n)
	}
}

func TestManifestListResolvesPlatform(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	amd, arm := randomImage(t, 1), randomImage(t, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	reg.pushIndex("registry.example/multi:1", idx)
	s := newService(t, t.TempDir(), reg.hostsDir)
	id, err := s.Pull(context.Background(), "registry.example/multi:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := configDigest(t, amd); id != want {
		t.Fatalf("pulled %s, want the amd64 image %s", id, want)
	}
	idxDigest, _ := idx.Digest()
	got, _ := s.Get(id.String())
	if len(got.RepoDigests) != 1 || got.RepoDigests[0] != "registry.example/multi@"+idxDigest.String() {
		t.Fatalf("RepoDigests %v, want the index digest", got.RepoDigests)
	}
}

func TestConcurrentPullsShareOneDownload(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	img := randomImage(t, 3)
	reg.push("registry.example/app:v1", img)
	reg.blobGets.Clear()
	s := newService(t, t.TempDir(), reg.hostsDir)
	var wg sync.WaitGroup
	ids := make([]digest.Digest, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := s.Pull(context.Background(), "registry.example/app:v1", nil)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		c, ok := reg.blobGets.Load(d.String())
		if !ok || c.(*atomic.Int32).Load() != 1 {
			n := int32(0)
			if ok {
				n = c.(*atomic.Int32).Load()
			}
			t.Errorf("layer %s fetched %d times, want 1", d, n)
		}
	}
}

func TestInterruptedPullLeavesNothing(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	img := randomImage(t, 3)
	reg.push("registry.example/app:v1", img)
	layers, _ := img.Layers()
	last, _ := layers[2].Digest()
	// The registry dies in the middle of the last layer.
	cut := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, last.String()) {
			return false
		}
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 10))
		panic(http.ErrAbortHandler)
	}
	reg.intercept.Store(&cut)
	root := t.TempDir()
	s := newService(t, root, reg.hostsDir)
	if _, err := s.Pull(context.Background(), "registry.example/app:v1", nil); err == nil {
		t.Fatal("pull succeeded through a broken registry")
	}
	if len(s.List()) != 0 {
		t.Fatal("a failed pull left an image")
	}
	settle(t, s)
	s.db.Close()

	// What a crash would leave: the start-up sweep removes it.
	s = newService(t, root, reg.hostsDir)
	if dirs := layerDirs(t, s); len(dirs) != 0 {
		t.Fatalf("layers left after restart: %v", dirs)
	}
	reg.intercept.Store(nil)
	if _, err := s.Pull(context.Background(), "registry.example/app:v1", nil); err != nil {
		t.Fatalf("pull after the registry came back: %v", err)
	}
}

func TestPullErrors(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	s := newService(t, t.TempDir(), reg.hostsDir)
	ctx := context.Background()
	if _, err := s.Pull(ctx, "registry.example/missing:v1", nil); !errdefs.IsNotFound(err) {
		t.Errorf("missing image: %v, want NotFound", err)
	}
	if _, err := s.Pull(ctx, "Bad Ref", nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad ref: %v, want InvalidArgument", err)
	}
	tctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	time.Sleep(2 * time.Millisecond)
	if _, err := s.Pull(tctx, "registry.example/missing:v1", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired context: %v, want DeadlineExceeded", err)
	}
}

func TestMirrorsTriedInOrder(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 1)
	reg.push("registry.example/app:v1", img)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	reg.mirror("registry.example", deadURL+"/v2/registry.example", reg.srv.URL+"/v2/registry.example")
	s := newService(t, t.TempDir(), reg.hostsDir)
	if _, err := s.Pull(context.Background(), "registry.example/app:v1", nil); err != nil {
		t.Fatalf("pull with first mirror down: %v", err)
	}
}

func TestBasicAuth(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	img := randomImage(t, 1)
	reg.push("registry.example/private:v1", img)
	auth := func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "alice" && p == "secret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
	reg.intercept.Store(&auth)
	s := newService(t, t.TempDir(), reg.hostsDir)
	ctx := context.Background()
	if _, err := s.Pull(ctx, "registry.example/private:v1", nil); !errdefs.IsUnauthorized(err) && !errdefs.IsUnavailable(err) {
		t.Errorf("anonymous pull: %v", err)
	}
	if _, err := s.Pull(ctx, "registry.example/private:v1", &Auth{Username: "alice", Password: "secret"}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
}

func TestStalledPullIsCancelled(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	img := randomImage(t, 1)
	reg.push("registry.example/app:v1", img)
	stall := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			return false
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return true
	}
	reg.intercept.Store(&stall)
	s := newService(t, t.TempDir(), reg.hostsDir, func(c *config.ImageConfig) {
		c.PullProgressTimeout = config.Duration(500 * time.Millisecond)
	})
	start := time.Now()
	_, err := s.Pull(context.Background(), "registry.example/app:v1", nil)
	if err == nil || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("stalled pull: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("stalled pull took %s to cancel", time.Since(start))
	}
}

func TestAuthVariants(t *testing.T) {
	reg := newTestRegistry(t, "registry.example")
	reg.push("registry.example/private:v1", randomImage(t, 1))
	// The registry accepts exactly one credential per test case.
	var want atomic.Value
	check := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") == want.Load().(string) {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
	reg.intercept.Store(&check)
	for name, tc := range map[string]struct {
		auth   Auth
		header string
	}{
		"username and password": {Auth{Username: "alice", Password: "secret"}, "Basic YWxpY2U6c2VjcmV0"},
		"auth field":            {Auth{Auth: "Ym9iOnB3"}, "Basic Ym9iOnB3"},
		"registry token":        {Auth{RegistryToken: "tok123"}, "Bearer tok123"},
	} {
		t.Run(name, func(t *testing.T) {
			want.Store(tc.header)
			s := newService(t, t.TempDir(), reg.hostsDir)
			if _, err := s.Pull(context.Background(), "registry.example/private:v1", &tc.auth); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPinned(t *testing.T) {
	reg := newTestRegistry(t, "registry.k8s.io")
	reg.push("registry.k8s.io/pause:3.10", randomImage(t, 1))
	reg.push("registry.k8s.io/keep:1", randomImage(t, 1))
	reg.push("registry.k8s.io/other:1", randomImage(t, 1))
	s := newService(t, t.TempDir(), reg.hostsDir, func(c *config.ImageConfig) {
		c.SandboxImage = "registry.k8s.io/pause:3.10"
		c.PinnedImages = []string{"registry.k8s.io/keep:1"}
	})
	for ref, pinned := range map[string]bool{"registry.k8s.io/pause:3.10": true, "registry.k8s.io/keep:1": true, "registry.k8s.io/other:1": false} {
		if _, err := s.Pull(context.Background(), ref, nil); err != nil {
			t.Fatal(err)
		}
		img, _ := s.Get(ref)
		if s.Pinned(img) != pinned {
			t.Errorf("%s pinned = %v", ref, !pinned)
		}
	}
}
