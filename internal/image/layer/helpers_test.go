package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// entry is one tar member of a test layer; zero fields get sane defaults.
type entry struct {
	name     string
	typ      byte
	body     string
	link     string
	mode     int64
	uid, gid int
	major    int64
	minor    int64
	xattrs   map[string]string
	mtime    time.Time
}

var testMtime = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)

func file(name, body string) entry { return entry{name: name, typ: tar.TypeReg, body: body} }
func dirent(name string) entry     { return entry{name: name, typ: tar.TypeDir} }
func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, link: target}
}
func hardlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeLink, link: target}
}

// makeTar builds an uncompressed layer.
func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Linkname: e.link,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			Devmajor: e.major,
			Devminor: e.minor,
			ModTime:  e.mtime,
			Format:   tar.FormatPAX,
		}
		if hdr.ModTime.IsZero() {
			hdr.ModTime = testMtime
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if e.typ == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("write header %q: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is a temp dir holding the layer dir and a sentinel beside it, to
// detect writes outside the layer.
type sandbox struct {
	parent, dir, sentinel string
}

const sentinelBody = "untouched"

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	parent := t.TempDir()
	s := sandbox{parent: parent, dir: filepath.Join(parent, "layer"), sentinel: filepath.Join(parent, "sentinel")}
	if err := os.Mkdir(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.sentinel, []byte(sentinelBody), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkOutside fails if anything beside the layer dir changed.
func (s sandbox) checkOutside(t testing.TB) {
	t.Helper()
	names, err := os.ReadDir(s.parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 {
		var got []string
		for _, n := range names {
			got = append(got, n.Name())
		}
		t.Fatalf("entries beside the layer dir: %v", got)
	}
	fi, err := os.Lstat(s.sentinel)
	if err != nil {
		t.Fatalf("sentinel: %v", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("sentinel mode changed: %v", fi.Mode())
	}
	b, err := os.ReadFile(s.sentinel)
	if err != nil || string(b) != sentinelBody {
		t.Fatalf("sentinel changed: %q, %v", b, err)
	}
}

func apply(t testing.TB, dir string, blob []byte, uncompressed []byte) (Usage, error) {
	t.Helper()
	return Apply(context.Background(), dir, bytes.NewReader(blob), digest.FromBytes(uncompressed))
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: ownership, device nodes and trusted.* xattrs")
	}
}
