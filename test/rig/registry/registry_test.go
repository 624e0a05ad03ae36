package registry

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

type fake struct {
	manifests map[string]map[string][]byte
	blobs     map[string][]byte
}

func (f *fake) Manifest(repo, ref string) (string, []byte, bool) {
	b, ok := f.manifests[repo][ref]
	return "application/vnd.oci.image.manifest.v1+json", b, ok
}

func (f *fake) Blob(_, d string) ([]byte, bool) { b, ok := f.blobs[d]; return b, ok }

func (f *fake) Tags(repo string) ([]string, bool) {
	m, ok := f.manifests[repo]
	var tags []string
	for t := range m {
		tags = append(tags, t)
	}
	return tags, ok
}

func newFake() (*fake, string, string) {
	man := []byte(`{"schemaVersion":2}`)
	blob := []byte(strings.Repeat("0123456789", 1000))
	bd := digest.FromBytes(blob).String()
	md := digest.FromBytes(man).String()
	return &fake{
		manifests: map[string]map[string][]byte{"registry.k8s.io/e2e-test-images/busybox": {"1.29-2": man, md: man}},
		blobs:     map[string][]byte{bd: blob},
	}, md, bd
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestManifestsWithDottedRepo(t *testing.T) {
	f, md, _ := newFake()
	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	base := srv.URL + "/v2/registry.k8s.io/e2e-test-images/busybox/manifests/"

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for _, ref := range []string{"1.29-2", md} {
			resp, body := do(t, method, base+ref, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: status %d", method, ref, resp.StatusCode)
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != md {
				t.Errorf("%s %s: Docker-Content-Digest %q, want %q", method, ref, got, md)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/vnd.oci.image.manifest.v1+json" {
				t.Errorf("%s %s: Content-Type %q", method, ref, got)
			}
			if resp.ContentLength != int64(len(`{"schemaVersion":2}`)) {
				t.Errorf("%s %s: Content-Length %d", method, ref, resp.ContentLength)
			}
			if method == http.MethodHead && len(body) != 0 {
				t.Errorf("HEAD returned a body")
			}
		}
	}

	resp, body := do(t, http.MethodGet, base+"nope", nil)
	var e struct{ Errors []struct{ Code string } }
	if resp.StatusCode != http.StatusNotFound || json.Unmarshal(body, &e) != nil || e.Errors[0].Code != "MANIFEST_UNKNOWN" {
		t.Errorf("unknown tag: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodGet, srv.URL+"/v2/nowhere/manifests/x", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "NAME_UNKNOWN") {
		t.Errorf("unknown repo: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, http.MethodPut, base+"x", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d, want 405", resp.StatusCode)
	}
	resp, _ = do(t, http.MethodGet, srv.URL+"/v2/", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("/v2/: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestBlobRanges(t *testing.T) {
	f, _, bd := newFake()
	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	url := srv.URL + "/v2/gcr.io/k8s-staging-cri-tools/test-image-1/blobs/" + bd
	blob := f.blobs[bd]

	resp, body := do(t, http.MethodGet, url, nil)
	if resp.StatusCode != 200 || string(body) != string(blob) || resp.Header.Get("Docker-Content-Digest") != bd {
		t.Fatalf("GET blob: %d, %d bytes, digest %q", resp.StatusCode, len(body), resp.Header.Get("Docker-Content-Digest"))
	}
	resp, body = do(t, http.MethodHead, url, nil)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(blob)) || len(body) != 0 {
		t.Errorf("HEAD blob: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	// Resumed pulls ask for an open-ended range.
	resp, body = do(t, http.MethodGet, url, map[string]string{"Range": "bytes=9000-"})
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(blob[9000:]) {
		t.Errorf("open range: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = do(t, http.MethodGet, url, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(blob[10:20]) {
		t.Errorf("closed range: %d, %q", resp.StatusCode, body)
	}
	resp, _ = do(t, http.MethodGet, srv.URL+"/v2/x/blobs/"+digest.FromString("no").String(), nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown blob: %d", resp.StatusCode)
	}
}

func TestThrottle(t *testing.T) {
	f, _, bd := newFake() // 10,000-byte blob
	srv := httptest.NewServer(New(f, Options{Throttle: 40000}))
	defer srv.Close()
	start := time.Now()
	_, body := do(t, http.MethodGet, srv.URL+"/v2/r/blobs/"+bd, nil)
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("10 kB at 40 kB/s took %v, want >= 250ms", took)
	}
	if len(body) != 10000 {
		t.Errorf("throttled body: %d bytes", len(body))
	}
}
