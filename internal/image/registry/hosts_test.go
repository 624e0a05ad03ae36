package registry

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// summary is "mirror? url caps" per endpoint, for compact comparisons.
func summary(eps []Endpoint) []string {
	var out []string
	for _, e := range eps {
		s := "server "
		if e.Mirror {
			s = "mirror "
		}
		out = append(out, s+e.URL.String()+" "+strings.Join(e.Capabilities, ","))
	}
	return out
}

func TestEndpoints(t *testing.T) {
	const all = "pull,resolve,push,referrers"
	tests := []struct {
		name  string
		files map[string]string
		host  string
		want  []string
	}{{
		name: "missing dir: default upstream",
		host: "registry.k8s.io",
		want: []string{"server https://registry.k8s.io/v2 " + all},
	}, {
		name: "docker.io default server",
		host: "docker.io",
		want: []string{"server https://registry-1.docker.io/v2 " + all},
	}, {
		name:  "index.docker.io is docker.io",
		files: map[string]string{"docker.io/hosts.toml": "[host.\"https://mirror.example\"]\n"},
		host:  "index.docker.io",
		want:  []string{"mirror https://mirror.example/v2 " + all, "server https://registry-1.docker.io/v2 " + all},
	}, {
		name: "docker.io with a mirror and no server",
		files: map[string]string{"docker.io/hosts.toml": `
[host."https://mirror.example"]
  capabilities = ["pull"]
`},
		host: "docker.io",
		want: []string{"mirror https://mirror.example/v2 pull", "server https://registry-1.docker.io/v2 " + all},
	}, {
		name: "_default applies to registries without a dir",
		files: map[string]string{
			"_default/hosts.toml": "[host.\"https://cache.example\"]\ncapabilities = [\"pull\", \"resolve\"]\n",
			"quay.io/hosts.toml":  "server = \"https://quay.io\"\n",
		},
		host: "ghcr.io",
		want: []string{"mirror https://cache.example/v2 pull,resolve", "server https://ghcr.io/v2 " + all},
	}, {
		name: "own dir wins over _default",
		files: map[string]string{
			"_default/hosts.toml": "[host.\"https://cache.example\"]\n",
			"quay.io/hosts.toml":  "server = \"https://quay.example\"\n",
		},
		host: "quay.io",
		want: []string{"server https://quay.example/v2 " + all},
	}, {
		name: "host:port dir, and host_port_ preferred",
		files: map[string]string{
			"reg.example:5000/hosts.toml":  "server = \"https://colon.example\"\n",
			"reg.example_5000_/hosts.toml": "server = \"https://underscore.example\"\n",
		},
		host: "reg.example:5000",
		want: []string{"server https://underscore.example/v2 " + all},
	}, {
		name:  "host:port dir",
		files: map[string]string{"reg.example:5000/hosts.toml": "server = \"http://colon.example:5000\"\n"},
		host:  "reg.example:5000",
		want:  []string{"server http://colon.example:5000/v2 " + all},
	}, {
		name: "capabilities filter drops push-only, keeps resolve-only",
		files: map[string]string{"r.example/hosts.toml": `
server = "https://r.example"
capabilities = ["push"]
[host."https://push.example"]
  capabilities = ["push"]
[host."https://resolve.example"]
  capabilities = ["resolve"]
[host."https://pull.example"]
  capabilities = ["pull"]
`},
		host: "r.example",
		want: []string{"mirror https://resolve.example/v2 resolve", "mirror https://pull.example/v2 pull"},
	}, {
		name:  "override_path mirror",
		files: map[string]string{"registry.k8s.io/hosts.toml": "[host.\"http://127.0.0.1:5000/v2/registry.k8s.io\"]\noverride_path = true\n"},
		host:  "registry.k8s.io",
		want:  []string{"mirror http://127.0.0.1:5000/v2/registry.k8s.io " + all, "server https://registry.k8s.io/v2 " + all},
	}, {
		name: "localhost default is https with http fallback",
		host: "localhost:5000",
		want: []string{"server https://localhost:5000/v2 " + all},
	}, {
		name: "localhost port 80 is plain http",
		host: "127.0.0.1:80",
		want: []string{"server http://127.0.0.1:80/v2 " + all},
	}, {
		name:  "empty hosts.toml: docker certs layout",
		files: map[string]string{"r.example/hosts.toml": ""},
		host:  "r.example",
		want:  []string{"server https://r.example/v2 " + all},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, c := range tt.files {
				writeFile(t, filepath.Join(dir, p), c)
			}
			eps, err := NewHosts(dir).Endpoints(tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(eps); !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestEndpointsErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.example/hosts.toml"), "server = \"https://x\"\n\n[host.\"https://m\"\n")
	writeFile(t, filepath.Join(dir, "noca.example/hosts.toml"), "[host.\"https://m\"]\nca = \"missing.pem\"\n")
	h := NewHosts(dir)
	for host, want := range map[string]string{
		"bad.example":  filepath.Join(dir, "bad.example/hosts.toml") + ":3:",
		"noca.example": filepath.Join(dir, "noca.example/missing.pem"),
		"..":           "invalid name",
		"a/b":          "invalid name",
		"":             "invalid name",
	} {
		if _, err := h.Endpoints(host); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Endpoints(%q) error %v, want it to contain %q", host, err, want)
		}
	}
}

func TestEndpointsDockerCertsLayout(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := testPKI(t)
	writeFile(t, filepath.Join(dir, "r.example/ca.crt"), ca)
	writeFile(t, filepath.Join(dir, "r.example/client.cert"), cert)
	writeFile(t, filepath.Join(dir, "r.example/client.key"), key)
	cfgs, err := loadCertFiles(filepath.Join(dir, "r.example"))
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(dir, "r.example")
	if !slices.Equal(cfgs[0].caCerts, []string{d + "/ca.crt"}) ||
		!slices.Equal(cfgs[0].clientPairs, [][2]string{{d + "/client.cert", d + "/client.key"}}) {
		t.Fatalf("got %+v", cfgs[0])
	}
	eps, err := NewHosts(dir).Endpoints("r.example")
	if err != nil {
		t.Fatal(err)
	}
	tls := eps[0].Transport.(*rewriteTransport).inner.(*http.Transport).TLSClientConfig
	if tls == nil || tls.RootCAs == nil || len(tls.Certificates) != 1 {
		t.Fatalf("TLS not configured from the certs layout: %+v", tls)
	}
}

func TestEndpointsReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "r.example/hosts.toml")
	writeFile(t, file, "server = \"https://one.example\"\n")
	h := NewHosts(dir)
	first, err := h.Endpoints("r.example")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := h.Endpoints("r.example")
	if first[0].Transport != again[0].Transport {
		t.Error("unchanged config built a new transport; connections would not be reused")
	}
	again[0].URL.Host = "mutated" // callers get copies
	writeFile(t, file, "server = \"https://two.example\"\n")
	// Make the change visible even on file systems with coarse mtimes.
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(file, future, future); err != nil {
		t.Fatal(err)
	}
	got, err := h.Endpoints("r.example")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].URL.Host != "two.example" {
		t.Errorf("after edit got %s", got[0].URL)
	}
}

func BenchmarkEndpointsCached(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "r.example/hosts.toml")
	_ = os.MkdirAll(filepath.Dir(p), 0o755)
	_ = os.WriteFile(p, []byte("[host.\"https://m.example\"]\ncapabilities=[\"pull\"]\n"), 0o644)
	h := NewHosts(dir)
	for b.Loop() {
		if _, err := h.Endpoints("r.example"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEndpointsUncached(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "r.example/hosts.toml")
	_ = os.MkdirAll(filepath.Dir(p), 0o755)
	_ = os.WriteFile(p, []byte("[host.\"https://m.example\"]\ncapabilities=[\"pull\"]\n"), 0o644)
	for b.Loop() {
		if _, err := NewHosts(dir).Endpoints("r.example"); err != nil {
			b.Fatal(err)
		}
	}
}
