package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var (
	buildOnce sync.Once
	built     *Set
	buildErr  error
)

func testSet(t *testing.T) *Set {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs Debian's busybox package (apt-get install busybox)")
	}
	buildOnce.Do(func() { built, buildErr = Build(Options{}) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// critestNames are the references cri-tools v1.37.0 pulls on linux/amd64.
var critestNames = []string{
	"registry.k8s.io/e2e-test-images/busybox:1.29-2",
	"registry.k8s.io/e2e-test-images/nginx:1.14-2",
	"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
	"registry.k8s.io/pause:3.9",
	"k8s.gcr.io/pause:3.9",
	"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:test",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:all",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest",
	"public.ecr.aws/docker/library/busybox:1.35.0-glibc",
	"public.ecr.aws/docker/library/busybox:1-uclibc",
	"public.ecr.aws/docker/library/busybox:1",
	"public.ecr.aws/docker/library/busybox:1-glibc",
	"public.ecr.aws/docker/library/busybox:1-musl",
	"docker.io/library/busybox:latest",
	"docker.io/library/busybox:1.36",
}

func splitName(name string) (repo, tag string) {
	i := strings.LastIndex(name, ":")
	return name[:i], name[i+1:]
}

// resolve follows a tag to the linux/amd64 image manifest and its config.
func resolve(t *testing.T, s *Set, name string) (ocispec.Manifest, ocispec.Image) {
	t.Helper()
	repo, ref := splitName(name)
	mt, data, ok := s.Manifest(repo, ref)
	if !ok {
		t.Fatalf("%s not served", name)
	}
	if mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList {
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			return d.Platform != nil && d.Platform.Architecture == "amd64" && d.Platform.OS == "linux"
		})
		if i < 0 {
			t.Fatalf("%s: index has no linux/amd64 entry", name)
		}
		if _, data, ok = s.Manifest(repo, idx.Manifests[i].Digest.String()); !ok {
			t.Fatalf("%s: amd64 manifest %s not served", name, idx.Manifests[i].Digest)
		}
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	cfgData, ok := s.Blob(repo, m.Config.Digest.String())
	if !ok {
		t.Fatalf("%s: config blob missing", name)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		t.Fatalf("%s: %d diff IDs for %d layers", name, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	return m, cfg
}

// files flattens an image's layers into path -> header (+ content).
func files(t *testing.T, s *Set, name string) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	m, _ := resolve(t, s, name)
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	for _, l := range m.Layers {
		blob, ok := s.Blob("", l.Digest.String())
		if !ok {
			t.Fatalf("%s: layer %s missing", name, l.Digest)
		}
		var r io.Reader = bytes.NewReader(blob)
		switch {
		case strings.HasSuffix(l.MediaType, "gzip"):
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		case strings.HasSuffix(l.MediaType, "zstd"):
			zr, err := zstd.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			r = zr
		}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: layer %s: %v", name, l.Digest, err)
			}
			b, _ := io.ReadAll(tr)
			p := "/" + strings.TrimSuffix(h.Name, "/")
			hdrs[p], data[p] = h, b
		}
	}
	return hdrs, data
}

func TestAllCritestNamesServed(t *testing.T) {
	s := testSet(t)
	for _, n := range critestNames {
		if _, ok := s.Lookup(n); !ok {
			t.Errorf("%s is not served", n)
		}
	}
	if got := s.Hosts(); !slices.Equal(got, UpstreamHosts) {
		t.Errorf("hosts %v, want UpstreamHosts %v", got, UpstreamHosts)
	}
}

func TestTagsAndIdentity(t *testing.T) {
	s := testSet(t)
	digestOf := func(n string) string { r, _ := s.Lookup(n); return r.Digest.String() }
	configOf := func(n string) string { m, _ := resolve(t, s, n); return m.Config.Digest.String() }

	p := "gcr.io/k8s-staging-cri-tools/"
	if a, b, c := digestOf(p+"test-image-tags:1"), digestOf(p+"test-image-tags:2"), digestOf(p+"test-image-tags:3"); a != b || b != c {
		t.Errorf("test-image-tags:1/2/3 differ: %s %s %s", a, b, c)
	}
	if digestOf("registry.k8s.io/pause:3.9") != digestOf("k8s.gcr.io/pause:3.9") {
		t.Error("pause:3.9 differs between registry.k8s.io and k8s.gcr.io")
	}
	// Image IDs (config digests) that critest needs distinct.
	distinct := []string{
		p + "test-image-1:latest", p + "test-image-2:latest", p + "test-image-3:latest",
		p + "test-image-latest:latest", p + "test-image-tag:test", p + "test-image-tag:all",
		p + "test-image-tags:1", "registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.10",
		"registry.k8s.io/pause:3.10.1", "registry.k8s.io/e2e-test-images/busybox:1.29-2",
		"docker.io/library/busybox:latest",
	}
	seen := map[string]string{}
	for _, n := range distinct {
		id := configOf(n)
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share image ID %s", n, other, id)
		}
		seen[id] = n
	}
}

func TestConfigs(t *testing.T) {
	s := testSet(t)
	p := "gcr.io/k8s-staging-cri-tools/"
	users := map[string]string{
		p + "test-image-user-uid:latest":                 "1002",
		p + "test-image-user-username:latest":            "www-data",
		p + "test-image-user-uid-group:latest":           "1003:1004",
		p + "test-image-user-username-group:latest":      "www-data:1004",
		p + "test-image-predefined-group:latest":         "1000",
		"registry.k8s.io/e2e-test-images/busybox:1.29-2": "",
	}
	for n, want := range users {
		if _, cfg := resolve(t, s, n); cfg.Config.User != want {
			t.Errorf("%s: User %q, want %q", n, cfg.Config.User, want)
		}
	}
	_, bb := resolve(t, s, "registry.k8s.io/e2e-test-images/busybox:1.29-2")
	if !slices.Equal(bb.Config.Cmd, []string{"sh"}) || bb.Architecture != "amd64" {
		t.Errorf("busybox config: %+v", bb)
	}
	_, pause := resolve(t, s, "registry.k8s.io/pause:3.9")
	if !slices.Equal(pause.Config.Entrypoint, []string{"/pause"}) {
		t.Errorf("pause entrypoint %v", pause.Config.Entrypoint)
	}
	_, nginx := resolve(t, s, "registry.k8s.io/e2e-test-images/nginx:1.14-2")
	if !slices.Equal(nginx.Config.Cmd, []string{"nginx", "-g", "daemon off;"}) {
		t.Errorf("nginx cmd %v", nginx.Config.Cmd)
	}
}

func TestFiles(t *testing.T) {
	s := testSet(t)
	hdrs, data := files(t, s, "registry.k8s.io/e2e-test-images/busybox:1.29-2")
	if h := hdrs["/bin/ls"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "bin/busybox" {
		t.Errorf("/bin/ls should be a hard link to bin/busybox: %+v", h)
	}
	for _, p := range []string{"/bin/pgrep", "/bin/ipcs", "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/tmp"} {
		if hdrs[p] == nil {
			t.Errorf("busybox image lacks %s", p)
		}
	}
	if h := hdrs["/tmp"]; h != nil && h.Mode != 0o1777 {
		t.Errorf("/tmp mode %o", h.Mode)
	}
	for _, u := range []string{"root:x:0:", "www-data:x:33:", "nobody:x:65534:"} {
		if !strings.Contains(string(data["/etc/passwd"]), u) {
			t.Errorf("/etc/passwd lacks %s", u)
		}
	}

	_, data = files(t, s, "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest")
	if !strings.Contains(string(data["/etc/group"]), "group-defined-in-image:x:50000:default-user") ||
		!strings.Contains(string(data["/etc/passwd"]), "default-user:x:1000:1000:") {
		t.Errorf("predefined-group passwd/group:\n%s\n%s", data["/etc/passwd"], data["/etc/group"])
	}

	hdrs, _ = files(t, s, "registry.k8s.io/e2e-test-images/nonewprivs:1.3")
	if h := hdrs["/usr/local/bin/nnp"]; h == nil || h.Mode != 0o4755 || h.Uid != 0 {
		t.Errorf("nnp should be setuid root: %+v", h)
	}

	_, data = files(t, s, "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest")
	if !strings.Contains(string(data["/etc/nginx/conf.d/default.conf"]), "listen       12003;") {
		t.Errorf("hostnet-nginx conf:\n%s", data["/etc/nginx/conf.d/default.conf"])
	}
}

func TestMediaTypeMix(t *testing.T) {
	s := testSet(t)
	layerTypes, manifestTypes := map[string]bool{}, map[string]bool{}
	for _, r := range s.Refs() {
		manifestTypes[r.MediaType] = true
		m, _ := resolve(t, s, r.Name)
		manifestTypes[m.MediaType] = true
		for _, l := range m.Layers {
			layerTypes[l.MediaType] = true
		}
	}
	for _, want := range []string{MediaTypeDockerLayerGzip, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayer} {
		if !layerTypes[want] {
			t.Errorf("no layer of type %s", want)
		}
	}
	for _, want := range []string{MediaTypeDockerManifest, MediaTypeDockerManifestList, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex} {
		if !manifestTypes[want] {
			t.Errorf("no manifest of type %s", want)
		}
	}
}

func TestReproducible(t *testing.T) {
	first := testSet(t)
	second, err := Build(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := first.Refs(), second.Refs(); !slices.Equal(a, b) {
		t.Errorf("two builds differ:\n%v\n%v", a, b)
	}
}

// TestGuest runs the helper's host-safe tools.
func TestGuest(t *testing.T) {
	bin, err := BuildGuest("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	guest := filepath.Join(dir, "rig-guest")
	if err := os.WriteFile(guest, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"nnp", "pgrep", "ipcs", "nmeter"} {
		if err := os.Symlink(guest, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(filepath.Join(dir, "nnp")).Output()
	if err != nil || !strings.HasPrefix(string(out), "Effective uid: ") {
		t.Errorf("nnp: %q, %v", out, err)
	}
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	out, err = exec.Command(filepath.Join(dir, "pgrep"), "-x", "sleep").Output()
	if err != nil || !strings.Contains(string(out), "\n") {
		t.Errorf("pgrep -x sleep: %q, %v", out, err)
	}
	if err := exec.Command(filepath.Join(dir, "pgrep"), "no-such-process-xyz").Run(); err == nil {
		t.Error("pgrep of nothing should exit non-zero")
	}
	out, err = exec.Command(filepath.Join(dir, "ipcs"), "-m").Output()
	if err != nil || !strings.Contains(string(out), "Shared Memory Segments") {
		t.Errorf("ipcs -m: %q, %v", out, err)
	}
	// The node e2e suite's "date -u +%FT$(nmeter -d0 '%3t' | head -n1)Z":
	// nmeter prints until its reader goes away.
	out, err = exec.Command("sh", "-c", filepath.Join(dir, "nmeter")+" -d0 '%3t' | head -n1").Output()
	if err != nil || !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3}\n$`).Match(out) {
		t.Errorf("nmeter -d0 %%3t: %q, %v", out, err)
	}
	if err := exec.Command(filepath.Join(dir, "nmeter"), "%z").Run(); err == nil {
		t.Error("nmeter with an unknown directive should fail")
	}
}

// The node e2e suite's agnhost images: the program given, upstream's files
// and tools, its users, and the kitten image on top.
func TestAgnhost(t *testing.T) {
	testSet(t) // skips without busybox
	dir := t.TempDir()
	for name, data := range map[string]string{"agnhost": "agnhost program\n", "localhost.crt": "crt\n", "localhost.key": "key\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Build(Options{Agnhost: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, cfg := resolve(t, s, "registry.k8s.io/e2e-test-images/agnhost:2.66.1")
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/agnhost"}) || !slices.Equal(cfg.Config.Cmd, []string{"pause"}) {
		t.Errorf("agnhost config: %+v", cfg.Config)
	}
	hdrs, data := files(t, s, "registry.k8s.io/e2e-test-images/agnhost:2.66.1")
	if string(data["/agnhost"]) != "agnhost program\n" || hdrs["/agnhost"].Mode != 0o755 || string(data["/localhost.key"]) != "key\n" {
		t.Errorf("agnhost files: %q %+v", data["/agnhost"], hdrs["/agnhost"])
	}
	for _, p := range []string{"/bin/bash", "/usr/bin/curl", "/usr/bin/nc", "/agnhost-2", "/uploads"} {
		if hdrs[p] == nil {
			t.Errorf("agnhost image lacks %s", p)
		}
	}
	if !strings.Contains(string(data["/etc/group"]), "group-defined-in-image:x:50000:user-defined-in-image") {
		t.Errorf("agnhost /etc/group:\n%s", data["/etc/group"])
	}
	hdrs, _ = files(t, s, "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1")
	if h := hdrs["/bin/hostname"]; h == nil || h.Typeflag != tar.TypeReg {
		t.Errorf("glibc-dns-testing /bin/hostname: %+v", h)
	}
	prev, _ := resolve(t, s, "registry.k8s.io/e2e-test-images/agnhost:2.55")
	cur, _ := resolve(t, s, "registry.k8s.io/e2e-test-images/agnhost:2.66.1")
	if prev.Config.Digest == cur.Config.Digest {
		t.Error("agnhost 2.55 and 2.66.1 are one image")
	}
	_, data = files(t, s, "registry.k8s.io/e2e-test-images/kitten:1.8")
	if !strings.Contains(string(data["/data.json"]), "kitten.jpg") || data["/agnhost"] == nil {
		t.Errorf("kitten files: %q", data["/data.json"])
	}
}
