// Package rig_test pulls every critest image through the generated
// hosts.toml files, the way crid will: resolve the mirror URL for the
// upstream host, then fetch manifest, platform manifest, config and layers,
// checking each digest.
package rig_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	toml "github.com/pelletier/go-toml/v2"

	"github.com/crid-project/crid/test/rig/images"
	"github.com/crid-project/crid/test/rig/mirror"
	"github.com/crid-project/crid/test/rig/registry"
)

type hostsFile struct {
	Server string `toml:"server"`
	Host   map[string]struct {
		Capabilities []string `toml:"capabilities"`
		OverridePath bool     `toml:"override_path"`
	} `toml:"host"`
}

// mirrorRoot reads hostsDir/<host>/hosts.toml and returns the API root to
// use with override_path semantics.
func mirrorRoot(t *testing.T, hostsDir, host string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(hostsDir, host, "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var hf hostsFile
	if err := toml.Unmarshal(data, &hf); err != nil {
		t.Fatalf("%s hosts.toml: %v", host, err)
	}
	if len(hf.Host) != 1 {
		t.Fatalf("%s: want one [host] entry, got %d", host, len(hf.Host))
	}
	for u, h := range hf.Host {
		if !h.OverridePath || strings.Join(h.Capabilities, ",") != "pull,resolve" {
			t.Fatalf("%s: host entry %+v", host, h)
		}
		return u
	}
	return ""
}

var accept = strings.Join([]string{
	images.MediaTypeDockerManifestList, images.MediaTypeDockerManifest,
	ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
}, ", ")

// get fetches url and checks the body against the expected digest (or, when
// empty, against Docker-Content-Digest).
func get(t *testing.T, url, want string) ([]byte, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, body)
	}
	sum := sha256.Sum256(body)
	got := "sha256:" + hex.EncodeToString(sum[:])
	if hdr := resp.Header.Get("Docker-Content-Digest"); hdr != got {
		t.Errorf("GET %s: Docker-Content-Digest %q, body is %s", url, hdr, got)
	}
	if want != "" && got != want {
		t.Errorf("GET %s: body digest %s, want %s", url, got, want)
	}
	return body, resp.Header.Get("Content-Type")
}

func TestPullEverythingThroughHostsToml(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs Debian's busybox package (apt-get install busybox)")
	}
	set, err := images.Build(images.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(registry.New(set, registry.Options{}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	hostsDir := t.TempDir()
	if err := mirror.Write(hostsDir, ln.Addr().String(), set.Hosts()); err != nil {
		t.Fatal(err)
	}

	for _, ref := range set.Refs() {
		host, rest, _ := strings.Cut(ref.Name, "/")
		i := strings.LastIndex(rest, ":")
		repo, tag := rest[:i], rest[i+1:]
		root := mirrorRoot(t, hostsDir, host)
		base := fmt.Sprintf("%s/%s", root, repo)

		body, ct := get(t, base+"/manifests/"+tag, ref.Digest.String())
		if ct != ref.MediaType {
			t.Errorf("%s: Content-Type %q, want %q", ref.Name, ct, ref.MediaType)
		}
		if ct == ocispec.MediaTypeImageIndex || ct == images.MediaTypeDockerManifestList {
			var idx ocispec.Index
			if err := json.Unmarshal(body, &idx); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, d := range idx.Manifests {
				if d.Platform.Architecture == "amd64" {
					found = true
					body, ct = get(t, base+"/manifests/"+d.Digest.String(), d.Digest.String())
					if ct != d.MediaType {
						t.Errorf("%s amd64: Content-Type %q, index says %q", ref.Name, ct, d.MediaType)
					}
				}
			}
			if !found {
				t.Fatalf("%s: no amd64 entry", ref.Name)
			}
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		get(t, base+"/blobs/"+m.Config.Digest.String(), m.Config.Digest.String())
		for _, l := range m.Layers {
			get(t, base+"/blobs/"+l.Digest.String(), l.Digest.String())
		}
	}
}
