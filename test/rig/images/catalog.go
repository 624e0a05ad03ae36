package images

import (
	"fmt"
	"log/slog"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options control Build.
type Options struct {
	BusyboxDeb string // Debian busybox .deb; empty means this host's /bin/busybox
	GoCmd      string // go binary for the guest helper; empty means PATH/GOROOT
	Agnhost    string // dir of agnhostFiles; empty means no agnhost-based images
	Bench      bool   // also build BenchImage (~100 MB, a few seconds)
	Log        *slog.Logger
}

// Upstream names. critest pins these (pkg/validate, pkg/framework,
// pkg/benchmark of cri-tools v1.37.0).
const (
	e2e         = "registry.k8s.io/e2e-test-images/"
	criTools    = "gcr.io/k8s-staging-cri-tools/"
	ecrLibrary  = "public.ecr.aws/docker/library/"
	labelOrigin = "org.crid.rig.image" // makes otherwise equal images distinct
)

// UpstreamHosts are the registries the rig stands in for; Set.Hosts of a
// full build returns exactly these (a test keeps them in sync).
var UpstreamHosts = []string{"docker.io", "gcr.io", "k8s.gcr.io", "public.ecr.aws", "registry.k8s.io"}

// BenchImage is the image for pull benchmarks: 5 gzip layers of ~20 MB of
// incompressible pseudo-random bytes each.
const BenchImage = "docker.io/library/crid-bench:5layers"

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Build builds every image into a new Set.
func Build(opts Options) (*Set, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	start := time.Now()
	bb, err := LoadBusybox(opts.BusyboxDeb)
	if err != nil {
		return nil, err
	}
	guest, err := BuildGuest(opts.GoCmd)
	if err != nil {
		return nil, err
	}
	log.Info("image inputs ready", "applets", len(bb.Applets), "libs", len(bb.Libs), "guest_bytes", len(guest), "took", time.Since(start).Round(time.Millisecond))

	b := &builder{set: NewSet(), bb: bb, guest: guest}
	if err := b.all(); err != nil {
		return nil, err
	}
	if opts.Agnhost != "" {
		if err := b.agnhost(opts.Agnhost); err != nil {
			return nil, err
		}
	}
	if opts.Bench {
		t := time.Now()
		if err := b.bench(); err != nil {
			return nil, err
		}
		log.Info("bench image built", "name", BenchImage, "took", time.Since(t).Round(time.Millisecond))
	}
	log.Info("images built", "refs", len(b.set.refs), "blobs", len(b.set.blobs), "took", time.Since(start).Round(time.Millisecond))
	return b.set, nil
}

type builder struct {
	set   *Set
	bb    *Busybox
	guest []byte
	base  []Layer // busybox root + guest tools, gzip: shared by most images
}

func (b *builder) layer(fs *FS, c Compression) (Layer, error) {
	t, err := fs.Tar()
	if err != nil {
		return Layer{}, err
	}
	return NewLayer(t, c)
}

// files is a shorthand for a layer of a few regular files.
func (b *builder) files(c Compression, files map[string]string) (Layer, error) {
	fs := NewFS()
	for p, data := range files {
		fs.File(p, 0o644, []byte(data))
	}
	return b.layer(fs, c)
}

func busyboxConfig(name string, cmd ...string) ocispec.ImageConfig {
	if len(cmd) == 0 {
		cmd = []string{"sh"}
	}
	return ocispec.ImageConfig{Env: []string{pathEnv}, Cmd: cmd, Labels: map[string]string{labelOrigin: name}}
}

func (b *builder) all() error {
	root, err := b.layer(b.bb.RootFS(), Gzip)
	if err != nil {
		return fmt.Errorf("busybox layer: %w", err)
	}
	// pgrep and ipcs are missing from Debian's busybox and critest calls
	// both; so is nmeter, which the node e2e suite calls.
	tools := NewFS()
	tools.File("/usr/local/bin/rig-guest", 0o755, b.guest)
	tools.Symlink("/bin/pgrep", "/usr/local/bin/rig-guest")
	tools.Symlink("/bin/ipcs", "/usr/local/bin/rig-guest")
	tools.Symlink("/bin/nmeter", "/usr/local/bin/rig-guest")
	toolsLayer, err := b.layer(tools, Gzip)
	if err != nil {
		return fmt.Errorf("tools layer: %w", err)
	}
	b.base = []Layer{root, toolsLayer}

	steps := []func() error{b.busybox, b.testImages, b.userImages, b.webServers, b.nonewprivs, b.pause, b.libraryBusybox, b.nodeE2E}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// arm64Stub is the arm64 entry of multi-platform indexes. It only has to be
// resolvable and distinct; nothing on this amd64 rig can run it.
func (b *builder) arm64Stub(format Format, name string) (Image, error) {
	l, err := b.files(Gzip, map[string]string{"/ARCH": "arm64 stand-in for " + name + "\n"})
	if err != nil {
		return Image{}, err
	}
	return Image{Format: format, Arch: "arm64", Layers: []Layer{l}, Config: busyboxConfig(name), Comment: "arm64 placeholder, not runnable"}, nil
}

// busybox is critest's default container image, served as a Docker manifest
// list so platform resolution is exercised on nearly every spec.
func (b *builder) busybox() error {
	const name = e2e + "busybox"
	stub, err := b.arm64Stub(Docker, name)
	if err != nil {
		return err
	}
	amd := Image{Layers: b.base, Config: busyboxConfig(name + ":1.29-2"), Comment: "Debian busybox stand-in"}
	_, err = b.set.AddIndex(name, Docker, []Image{amd, stub}, "1.29-2")
	return err
}

// testImages mirror cri-tools' images/image-test: busybox plus a marker file
// named after the image, so each is distinct (test-image-tags is one image
// under three tags, as the spec requires). Marker layers rotate through the
// three compressions.
func (b *builder) testImages() error {
	distinct := []struct {
		repo, tag string
		c         Compression
	}{
		{"test-image-1", "latest", Zstd},
		{"test-image-2", "latest", Gzip},
		{"test-image-3", "latest", Uncompressed},
		{"test-image-latest", "latest", Zstd},
		{"test-image-tag", "test", Zstd},
		{"test-image-tag", "all", Uncompressed},
	}
	for _, t := range distinct {
		marker := "/" + t.repo + "-" + t.tag
		l, err := b.files(t.c, map[string]string{marker: t.repo + ":" + t.tag + "\n"})
		if err != nil {
			return err
		}
		img := Image{Format: OCI, Layers: append(b.base[:2:2], l), Config: busyboxConfig(criTools + t.repo + ":" + t.tag)}
		if _, err := b.set.AddImage(criTools+t.repo, img, t.tag); err != nil {
			return err
		}
	}
	// Upstream pushes test-image-tags as a multi-arch list; so do we (OCI).
	const tags = criTools + "test-image-tags"
	l, err := b.files(Gzip, map[string]string{"/same-image": "test-image-tags\n"})
	if err != nil {
		return err
	}
	stub, err := b.arm64Stub(OCI, tags)
	if err != nil {
		return err
	}
	amd := Image{Layers: append(b.base[:2:2], l), Config: busyboxConfig(tags)}
	_, err = b.set.AddIndex(tags, OCI, []Image{amd, stub}, "1", "2", "3")
	return err
}

// userImages mirror images/image-user and images/image-predefined-group.
func (b *builder) userImages() error {
	users := []struct{ repo, user string }{
		{"test-image-user-uid", "1002"},
		{"test-image-user-username", "www-data"},
		{"test-image-user-uid-group", "1003:1004"},
		{"test-image-user-username-group", "www-data:1004"},
	}
	for _, u := range users {
		cfg := busyboxConfig(criTools + u.repo)
		cfg.User = u.user
		if _, err := b.set.AddImage(criTools+u.repo, Image{Layers: b.base, Config: cfg}, "latest"); err != nil {
			return err
		}
	}
	// "adduser -u 1000 -D default-user; addgroup -g 50000
	// group-defined-in-image; addgroup default-user group-defined-in-image":
	// the upper layer replaces /etc/passwd and /etc/group of the lower one.
	const name = criTools + "test-image-predefined-group"
	l, err := b.files(Gzip, map[string]string{
		"/etc/passwd": passwd + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n",
		"/etc/group":  group + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
	})
	if err != nil {
		return err
	}
	home := NewFS()
	home.Dir("/home/default-user", 0o755)
	homeLayer, err := b.layer(home, Gzip)
	if err != nil {
		return err
	}
	cfg := busyboxConfig(name)
	cfg.User = "1000"
	_, err = b.set.AddImage(name, Image{Layers: append(b.base[:2:2], l, homeLayer), Config: cfg}, "latest")
	return err
}

// webServers are the nginx, hostnet-nginx and httpd stand-ins: busybox httpd
// supervised by the guest helper, which gives critest the process name,
// pid file, /proc/1/cmdline ("master process") and log line it checks.
func (b *builder) webServers() error {
	nginxRoot := func(port int, c Compression) (Layer, error) {
		fs := NewFS()
		fs.Symlink("/usr/sbin/nginx", "/usr/local/bin/rig-guest")
		fs.File("/usr/share/nginx/html/index.html", 0o644, []byte("<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1><p>crid test rig stand-in</p></body></html>\n"))
		fs.File("/etc/nginx/conf.d/default.conf", 0o644, []byte(fmt.Sprintf("server {\n    listen       %d;\n    server_name  localhost;\n    location / {\n        root   /usr/share/nginx/html;\n        index  index.html index.htm;\n    }\n}\n", port)))
		fs.Dir("/var/log/nginx", 0o755)
		fs.Dir("/var/cache/nginx", 0o755)
		return b.layer(fs, c)
	}
	nginxConfig := func(name string, port int, stop string) ocispec.ImageConfig {
		cfg := busyboxConfig(name, "nginx", "-g", "daemon off;")
		cfg.Env = append(cfg.Env, "NGINX_VERSION=stand-in")
		cfg.ExposedPorts = map[string]struct{}{fmt.Sprintf("%d/tcp", port): {}}
		cfg.StopSignal = stop
		return cfg
	}

	// e2e-test-images/nginx:1.14-2 (nginx:1.14-alpine: port 80, no
	// STOPSIGNAL; critest's) and :1.27.0-2 (nginx:1.27.0-alpine, STOPSIGNAL
	// SIGQUIT; the node e2e suite's).
	l, err := nginxRoot(80, Gzip)
	if err != nil {
		return err
	}
	for _, v := range []struct{ tag, stop string }{{"1.14-2", ""}, {"1.27.0-2", "SIGQUIT"}} {
		img := Image{Format: Docker, Layers: append(b.base[:2:2], l), Config: nginxConfig(e2e+"nginx:"+v.tag, 80, v.stop)}
		if _, err := b.set.AddImage(e2e+"nginx", img, v.tag); err != nil {
			return err
		}
	}

	// hostnet-nginx-<arch> (nginx:1.25 with "listen 12003", STOPSIGNAL SIGQUIT).
	l, err = nginxRoot(12003, Zstd)
	if err != nil {
		return err
	}
	const hostnet = criTools + "hostnet-nginx-amd64"
	img := Image{Format: OCI, Layers: append(b.base[:2:2], l), Config: nginxConfig(hostnet, 80, "SIGQUIT")}
	if _, err := b.set.AddImage(hostnet, img, "latest"); err != nil {
		return err
	}

	// e2e-test-images/httpd:2.4.39-4 (httpd:alpine: httpd-foreground,
	// STOPSIGNAL SIGWINCH, WORKDIR /usr/local/apache2).
	fs := NewFS()
	fs.Symlink("/usr/local/apache2/bin/httpd-foreground", "/usr/local/bin/rig-guest")
	fs.File("/usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n"))
	l, err = b.layer(fs, Zstd)
	if err != nil {
		return err
	}
	cfg := busyboxConfig(e2e+"httpd:2.4.39-4", "httpd-foreground")
	cfg.Env = []string{"PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HTTPD_PREFIX=/usr/local/apache2"}
	cfg.WorkingDir = "/usr/local/apache2"
	cfg.ExposedPorts = map[string]struct{}{"80/tcp": {}}
	cfg.StopSignal = "SIGWINCH"
	_, err = b.set.AddImage(e2e+"httpd", Image{Format: OCI, Layers: append(b.base[:2:2], l), Config: cfg}, "2.4.39-4")
	return err
}

// nonewprivs: a setuid-root copy of the guest printing its effective uid.
// A copy, not a link, because the setuid bit belongs to the inode.
func (b *builder) nonewprivs() error {
	const name = e2e + "nonewprivs"
	fs := NewFS()
	fs.File("/usr/local/bin/nnp", 0o4755, b.guest)
	l, err := b.layer(fs, Uncompressed)
	if err != nil {
		return err
	}
	// 1.3 (critest's) runs nnp as its entrypoint, 1.4 (the node e2e
	// suite's) as its command, as upstream's images do.
	cfg := busyboxConfig(name + ":1.3")
	cfg.Cmd = nil
	cfg.Entrypoint = []string{"/usr/local/bin/nnp"}
	if _, err = b.set.AddImage(name, Image{Format: OCI, Layers: append(b.base[:2:2], l), Config: cfg}, "1.3"); err != nil {
		return err
	}
	_, err = b.set.AddImage(name, Image{Format: OCI, Layers: append(b.base[:2:2], l), Config: busyboxConfig(name+":1.4", "nnp")}, "1.4")
	return err
}

// pause images hold only /pause. pause:3.9 is the same image on
// registry.k8s.io and k8s.gcr.io (critest checks both pull to one image ID);
// the other tags are distinct so they never add repo tags to 3.9's image.
func (b *builder) pause() error {
	fs := NewFS()
	fs.File("/pause", 0o755, b.guest)
	l, err := b.layer(fs, Gzip)
	if err != nil {
		return err
	}
	pauseImage := func(version string) Image {
		return Image{Layers: []Layer{l}, Config: ocispec.ImageConfig{
			User:       "65535:65535",
			Entrypoint: []string{"/pause"},
			WorkingDir: "/",
			Labels:     map[string]string{labelOrigin: "pause:" + version},
		}}
	}
	for _, repo := range []string{"registry.k8s.io/pause", "k8s.gcr.io/pause"} {
		stub, err := b.arm64Stub(OCI, "pause:3.9")
		if err != nil {
			return err
		}
		if _, err := b.set.AddIndex(repo, OCI, []Image{pauseImage("3.9"), stub}, "3.9"); err != nil {
			return err
		}
	}
	for _, v := range []string{"3.10", "3.10.1", "3.10.2"} {
		if _, err := b.set.AddImage("registry.k8s.io/pause", pauseImage(v), v); err != nil {
			return err
		}
	}
	return nil
}

// libraryBusybox serves docker.io/library/busybox (README demo) and the
// public.ecr.aws busybox tags of critest's image benchmarks.
func (b *builder) libraryBusybox() error {
	img := Image{Layers: b.base, Config: busyboxConfig("docker.io/library/busybox")}
	if _, err := b.set.AddImage("docker.io/library/busybox", img, "latest", "1.36"); err != nil {
		return err
	}
	for _, tag := range []string{"1", "1-glibc", "1-musl", "1-uclibc", "1.35.0-glibc"} {
		img := Image{Format: OCI, Layers: b.base, Config: busyboxConfig(ecrLibrary + "busybox:" + tag)}
		if _, err := b.set.AddImage(ecrLibrary+"busybox", img, tag); err != nil {
			return err
		}
	}
	return nil
}
