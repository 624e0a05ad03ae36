package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// recorder wraps a handler and keeps what the tests assert on.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone(req.Context()))
	r.mu.Unlock()
	r.next.ServeHTTP(w, req)
}

func (r *recorder) requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

func newRegistry(t *testing.T, tlsServer bool) (*httptest.Server, *recorder) {
	t.Helper()
	rec := &recorder{next: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))}
	var srv *httptest.Server
	if tlsServer {
		srv = httptest.NewTLSServer(rec)
	} else {
		srv = httptest.NewServer(rec)
	}
	t.Cleanup(srv.Close)
	return srv, rec
}

// push writes a random image to ref through tr and returns its digest.
func push(t *testing.T, ref string, tr http.RoundTripper) v1.Hash {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithTransport(tr)); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pull fetches ref with the endpoint's transport, reading every layer.
func pull(ref string, ep Endpoint) (v1.Hash, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := remote.Image(r, remote.WithTransport(ep.Transport))
	if err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return v1.Hash{}, err
		}
	}
	return img.Digest()
}

// TestPullThroughOverridePathMirror is the case the package exists for: an
// image named registry.k8s.io/... served by a plain-http mirror that keeps it
// under /v2/registry.k8s.io/.
func TestPullThroughOverridePathMirror(t *testing.T) {
	srv, rec := newRegistry(t, false)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	want := push(t, hostPort+"/registry.k8s.io/test/img:v1", http.DefaultTransport)

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "registry.k8s.io/hosts.toml"), fmt.Sprintf(`
[host."%s/v2/registry.k8s.io"]
  capabilities = ["pull", "resolve"]
  override_path = true
  [host."%s/v2/registry.k8s.io".header]
    x-crid-test = "yes"
`, srv.URL, srv.URL))
	eps, err := NewHosts(dir).Endpoints("registry.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 || !eps[0].Mirror || eps[0].URL.String() != srv.URL+"/v2/registry.k8s.io" {
		t.Fatalf("endpoints %q", summary(eps))
	}
	before := len(rec.requests())
	got, err := pull("registry.k8s.io/test/img:v1", eps[0])
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("digest %s, want %s", got, want)
	}
	var sawManifest bool
	var paths []string
	for _, r := range rec.requests()[before:] {
		paths = append(paths, r.URL.Path)
		if r.Header.Get("X-Crid-Test") != "yes" {
			t.Errorf("%s %s without configured header", r.Method, r.URL)
		}
		if strings.Contains(r.URL.Path, "/manifests/") {
			sawManifest = true
			if r.URL.Path != "/v2/registry.k8s.io/test/img/manifests/v1" {
				t.Errorf("manifest path %s", r.URL.Path)
			}
			if ns := r.URL.Query().Get("ns"); ns != "registry.k8s.io" {
				t.Errorf("ns = %q, want registry.k8s.io", ns)
			}
		}
	}
	if !sawManifest {
		t.Error("no manifest request reached the mirror")
	}
	// go-containerregistry's version check goes to the API root first; this
	// registry only answers it at the host's /v2/, which is the fallback.
	if len(paths) < 2 || paths[0] != "/v2/registry.k8s.io/" || paths[1] != "/v2/" {
		t.Errorf("ping sequence %q", paths)
	}
}

func TestPullOverTLSWithCAFile(t *testing.T) {
	srv, _ := newRegistry(t, true)
	u, _ := url.Parse(srv.URL)
	want := push(t, u.Host+"/test/img:v1", srv.Client().Transport)

	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	writeFile(t, filepath.Join(dir, "registry.example/certs/mirror-ca.pem"), string(ca))
	writeFile(t, filepath.Join(dir, "registry.example/hosts.toml"), fmt.Sprintf(`
server = "%s"
ca = "certs/mirror-ca.pem"
`, srv.URL))
	eps, err := NewHosts(dir).Endpoints("registry.example")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pull("registry.example/test/img:v1", eps[0])
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("digest %s, want %s", got, want)
	}

	// The same server without the CA must fail verification.
	writeFile(t, filepath.Join(dir, "other.example/hosts.toml"), fmt.Sprintf("server = %q\n", srv.URL))
	eps, err = NewHosts(dir).Endpoints("other.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pull("other.example/test/img:v1", eps[0]); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("pull without CA: err %v, want a certificate error", err)
	}
}

// TestLocalhostFallsBackToHTTP follows containerd: a localhost registry on a
// port is tried over https and then plain http.
func TestLocalhostFallsBackToHTTP(t *testing.T) {
	srv, _ := newRegistry(t, false)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	want := push(t, hostPort+"/test/img:v1", http.DefaultTransport)
	eps, err := NewHosts(t.TempDir()).Endpoints(hostPort)
	if err != nil {
		t.Fatal(err)
	}
	if eps[0].URL.Scheme != "https" {
		t.Fatalf("URL %s, want https first", eps[0].URL)
	}
	got, err := pull(hostPort+"/test/img:v1", eps[0])
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("digest %s, want %s", got, want)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRewrite(t *testing.T) {
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name, upstream, ep, in, want string
	}{
		{"docker.io upstream via index.docker.io", "docker.io", "https://registry-1.docker.io/v2",
			"https://index.docker.io/v2/library/busybox/manifests/latest", "https://registry-1.docker.io/v2/library/busybox/manifests/latest"},
		{"docker.io mirror gets ns", "docker.io", "https://mirror.example/v2",
			"https://index.docker.io/v2/library/busybox/blobs/sha256:ab", "https://mirror.example/v2/library/busybox/blobs/sha256:ab?ns=docker.io"},
		{"ping has no ns", "docker.io", "https://mirror.example/v2", "https://index.docker.io/v2/", "https://mirror.example/v2/"},
		{"override path", "registry.k8s.io", "http://127.0.0.1:5000/v2/registry.k8s.io",
			"https://registry.k8s.io/v2/pause/manifests/3.10", "http://127.0.0.1:5000/v2/registry.k8s.io/pause/manifests/3.10?ns=registry.k8s.io"},
		{"path gets /v2", "quay.io", "https://m.example/quay/v2",
			"https://quay.io/v2/a/b/tags/list?n=10", "https://m.example/quay/v2/a/b/tags/list?n=10&ns=quay.io"},
		{"explicit default port still matches", "quay.io", "https://m.example/v2",
			"https://quay.io:443/v2/a/manifests/x", "https://m.example/v2/a/manifests/x?ns=quay.io"},
		{"http from go-containerregistry is rewritten too", "localhost:5000", "https://localhost:5000/v2",
			"http://localhost:5000/v2/a/manifests/x", "https://localhost:5000/v2/a/manifests/x"},
		{"token realm untouched", "docker.io", "https://mirror.example/v2",
			"https://auth.docker.io/token?scope=repository:library/busybox:pull", "https://auth.docker.io/token?scope=repository:library/busybox:pull"},
		{"non-API path untouched", "registry.k8s.io", "https://m.example/v2",
			"https://registry.k8s.io/token", "https://registry.k8s.io/token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent *http.Request
			inner := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				sent = r
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
			})
			tr := newRewriteTransport(inner, tt.upstream, mustURL(tt.ep), http.Header{"X-A": {"1"}}, false)
			req, _ := http.NewRequest(http.MethodGet, tt.in, nil)
			if _, err := tr.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
			if sent.URL.String() != tt.want {
				t.Errorf("sent %s, want %s", sent.URL, tt.want)
			}
			if sent.Host != "" && sent.Host != sent.URL.Host {
				t.Errorf("Host header %q for %s", sent.Host, sent.URL)
			}
			if sent.Header.Get("X-A") != "1" {
				t.Error("configured header missing")
			}
			if req.URL.String() != tt.in || req.Header.Get("X-A") != "" {
				t.Error("caller's request was modified")
			}
		})
	}
}

func TestRewriteLocation(t *testing.T) {
	ep, _ := url.Parse("http://127.0.0.1:5000/v2/registry.k8s.io")
	tests := []struct{ loc, want string }{
		{"/v2/registry.k8s.io/a/blobs/uploads/123?_state=x", "https://registry.k8s.io/v2/a/blobs/uploads/123?_state=x"},
		{"http://127.0.0.1:5000/v2/registry.k8s.io/a/blobs/sha256:1?ns=registry.k8s.io", "https://registry.k8s.io/v2/a/blobs/sha256:1"},
		{"https://cdn.example/blob?sig=1", "https://cdn.example/blob?sig=1"},
		{"/elsewhere", "http://127.0.0.1:5000/elsewhere"},
	}
	for _, tt := range tests {
		inner := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 307, Header: http.Header{"Location": {tt.loc}}, Body: http.NoBody, Request: r}, nil
		})
		tr := newRewriteTransport(inner, "registry.k8s.io", ep, nil, false)
		req, _ := http.NewRequest(http.MethodGet, "https://registry.k8s.io/v2/a/blobs/sha256:1", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("Location"); got != tt.want {
			t.Errorf("Location %q became %q, want %q", tt.loc, got, tt.want)
		}
	}
}

// testPKI returns PEM for a self-signed CA and a client certificate and key.
func testPKI(t *testing.T) (caPEM, certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "crid test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return c, c, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

func TestPingOverridePathNotFound(t *testing.T) {
	ep, _ := url.Parse("https://m.example/prefix")
	var paths []string
	inner := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		paths = append(paths, r.URL.Path)
		return &http.Response{StatusCode: 404, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	tr := newRewriteTransport(inner, "quay.io", ep, nil, false)
	req, _ := http.NewRequest(http.MethodGet, "https://quay.io/v2/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || strings.Join(paths, " ") != "/prefix/ /v2/" {
		t.Errorf("status %d after %q, want a synthetic 200 after /prefix/ and /v2/", resp.StatusCode, paths)
	}
}
