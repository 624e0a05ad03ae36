package images

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// nodeE2E serves the images of Kubernetes' node e2e suite
// (k8s.io/kubernetes v1.37 test/utils/image/manifest.go) that need no
// agnhost: the newer tags of busybox, nonroot and glibc-dns-testing.
func (b *builder) nodeE2E() error {
	busybox := Image{Layers: b.base, Config: busyboxConfig(e2e + "busybox:1.37.0-2")}
	if _, err := b.set.AddImage(e2e+"busybox", busybox, "1.37.0-2"); err != nil {
		return err
	}
	// nonroot: the base image with "USER 1234".
	nonroot := busyboxConfig(e2e + "nonroot:1.5")
	nonroot.User = "1234"
	if _, err := b.set.AddImage(e2e+"nonroot", Image{Layers: b.base, Config: nonroot}, "1.5"); err != nil {
		return err
	}
	// glibc-dns-testing: upstream's is Debian with dnsutils; the suite runs
	// "hostname -f" in it, so this one has Debian's hostname (glibc's
	// resolver) over busybox's.
	fs := NewFS()
	if err := b.hostTools(fs, map[string]string{"/bin/hostname": "/bin/hostname"}); err != nil {
		return fmt.Errorf("glibc-dns-testing: %w", err)
	}
	l, err := b.layer(fs, Gzip)
	if err != nil {
		return err
	}
	dns := Image{Layers: append(b.base[:2:2], l), Config: busyboxConfig(e2e + "glibc-dns-testing:2.1.1")}
	_, err = b.set.AddImage(e2e+"glibc-dns-testing", dns, "2.1.1")
	return err
}

// agnhostFiles are what test/nodee2e/build.sh puts in the agnhost dir: the
// program and the TLS pair upstream's image carries for its HTTPS servers.
var agnhostFiles = []string{"agnhost", "localhost.crt", "localhost.key"}

// agnhostTools are programs upstream's agnhost image has (Alpine packages)
// and the suite runs in it, not in busybox: copied from this host (the
// value) with the libraries they need. netcat-openbsd's nc shadows busybox's,
// which lacks -u.
var agnhostTools = map[string]string{"/bin/bash": "/bin/bash", "/usr/bin/curl": "/usr/bin/curl", "/usr/bin/nc": "/bin/nc.openbsd"}

// agnhost serves e2e-test-images/agnhost (2.66.1, and 2.55 as the suite's
// "previous" agnhost) and kitten, which is built on it. Upstream's agnhost
// image is Alpine with agnhost at /agnhost; this one is the busybox base with
// the agnhost program compiled from the same Kubernetes release, bash, curl
// and nc from this host, and upstream's TLS pair.
func (b *builder) agnhost(dir string) error {
	fs := NewFS()
	for _, name := range agnhostFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("agnhost: %w", err)
		}
		mode := int64(0o644)
		if name == "agnhost" {
			mode = 0o755
		}
		fs.File("/"+name, mode, data)
	}
	if err := b.hostTools(fs, agnhostTools); err != nil {
		return fmt.Errorf("agnhost: %w", err)
	}
	fs.Symlink("/agnhost-2", "agnhost") // the entrypoint-tester specs run it
	fs.Dir("/uploads", 0o755)           // netexec's upload dir
	// Upstream's "adduser -u 1000 user-defined-in-image; addgroup -g 50000
	// group-defined-in-image": the supplemental-groups specs look them up.
	fs.File("/etc/passwd", 0o644, []byte(passwd+"user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh\n"))
	fs.File("/etc/group", 0o644, []byte(group+"user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"))
	fs.Dir("/home/user-defined-in-image", 0o755)
	// The ImageVolume conformance spec reads a kitten image's os-release and
	// expects upstream's base, Alpine. This names it, and says what it is.
	fs.File("/etc/os-release", 0o644, []byte("NAME=\"Alpine Linux\"\nID=alpine\nPRETTY_NAME=\"Alpine Linux (crid test rig stand-in: Debian busybox)\"\n"))
	l, err := b.layer(fs, Gzip)
	if err != nil {
		return fmt.Errorf("agnhost layer: %w", err)
	}
	layers := append(b.base[:2:2], l)
	config := func(name string, cmd ...string) ocispec.ImageConfig {
		cfg := busyboxConfig(name, cmd...)
		cfg.Entrypoint = []string{"/agnhost"}
		cfg.ExposedPorts = map[string]struct{}{"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}}
		return cfg
	}
	for _, tag := range []string{"2.66.1", "2.55"} {
		img := Image{Layers: layers, Config: config(e2e+"agnhost:"+tag, "pause"), Comment: "agnhost on the Debian busybox stand-in"}
		if _, err := b.set.AddImage(e2e+"agnhost", img, tag); err != nil {
			return err
		}
	}

	// kitten: agnhost's test-webserver serving a picture and data.json.
	kitten, err := b.files(Gzip, map[string]string{
		"/kitten.jpg": "crid test rig stand-in for kitten.jpg\n",
		"/data.json":  "{\n  \"image\": \"kitten.jpg\"\n}\n",
	})
	if err != nil {
		return err
	}
	img := Image{Layers: append(layers[:3:3], kitten), Config: config(e2e+"kitten:1.8", "test-webserver")}
	_, err = b.set.AddImage(e2e+"kitten", img, "1.8")
	return err
}

// hostTools adds programs of this host at the paths given, and the libraries
// they need that the busybox base lacks. They run with the base's loader and
// glibc, which are this host's too.
func (b *builder) hostTools(fs *FS, tools map[string]string) error {
	libs := &Busybox{Interp: b.bb.Interp, Libs: map[string][]byte{}}
	for p, src := range tools {
		bin, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			return fmt.Errorf("parse %s: %w", p, err)
		}
		err = libs.addLibs(f)
		f.Close()
		if err != nil {
			return err
		}
		fs.File(p, 0o755, bin)
	}
	for name, data := range libs.Libs {
		if _, inBase := b.bb.Libs[name]; !inBase {
			fs.File(filepath.Join(imageLibDir, name), 0o644, data)
		}
	}
	return nil
}
