package checkpoint

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
)

// tarOf builds a tar from entries in order; a name ending in / is a dir,
// a link is "name -> target".
func tarOf(t testing.TB, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		name, body := e[0], e[1]
		hdr := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(body))}
		switch {
		case name[len(name)-1] == '/':
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		case len(body) > 3 && body[:3] == "-> ":
			hdr.Typeflag, hdr.Size, hdr.Linkname = tar.TypeSymlink, 0, body[3:]
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

var goodEntries = [][2]string{
	{"config.dump", `{"id":"abc","name":"web"}`},
	{"spec.dump", `{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}`},
	{"deleted.files", `["etc/gone"]`},
	{"checkpoint/", ""},
	{"checkpoint/inventory.img", "inv"},
}

func TestOpenRoundTrip(t *testing.T) {
	upper := upperDir(t)
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	os.MkdirAll(images, 0o755)
	os.WriteFile(filepath.Join(images, "inventory.img"), []byte("inv"), 0o600)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}`), 0o600)
	location := filepath.Join(t.TempDir(), "c.tar")
	c := Container{Config: metadata.ContainerConfig{ID: "abc", Name: "web", CreatedTime: time.Unix(1, 0).UTC()},
		SpecFile: filepath.Join(dir, "config.json"), ImageDir: images, UpperDir: upper}
	if err := WriteArchive(context.Background(), location, t.TempDir(), c); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(location)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := Open(context.Background(), f, t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if a.Config.ID != "abc" || a.Config.Name != "web" || a.Spec.Process.Args[0] != "sh" {
		t.Errorf("metadata: %+v %+v", a.Config, a.Spec.Process)
	}
	if !slices.Equal(a.Deleted, []string{"cache", "etc/gone"}) {
		t.Errorf("deleted: %v", a.Deleted)
	}
	if b, err := os.ReadFile(filepath.Join(a.ImageDir, "inventory.img")); err != nil || string(b) != "inv" {
		t.Errorf("CRIU images: %q, %v", b, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	with := func(extra ...[2]string) [][2]string { return append(slices.Clone(goodEntries), extra...) }
	without := func(name string) [][2]string {
		return slices.DeleteFunc(slices.Clone(goodEntries), func(e [2]string) bool { return e[0] == name })
	}
	good := tarOf(t, goodEntries...)
	// Cut in the middle of the last file's data (the tar's end marker,
	// 1024 bytes, and 700 bytes of it go).
	big := tarOf(t, with([2]string{"checkpoint/pages-1.img", string(make([]byte, 1500))})...)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"climbs out", tarOf(t, with([2]string{"../escape", "x"})...)},
		{"climbs out deeper", tarOf(t, with([2]string{"checkpoint/../../escape", "x"})...)},
		{"absolute", tarOf(t, with([2]string{"/escape", "x"})...)},
		{"symlink", tarOf(t, with([2]string{"checkpoint/link", "-> /etc"})...)},
		{"too big", tarOf(t, with([2]string{"checkpoint/pages-1.img", string(make([]byte, 4096))})...)},
		{"truncated", big[:len(big)-1024-700]},
		{"not a tar", []byte("hello, this is not a tar archive at all, but it is long enough to be read as one block of data. " + string(make([]byte, 600)))},
		{"no config.dump", tarOf(t, without("config.dump")...)},
		{"no spec.dump", tarOf(t, without("spec.dump")...)},
		{"no CRIU images", tarOf(t, without("checkpoint/inventory.img")...)},
		{"bad config.dump", tarOf(t, append(without("config.dump"), [2]string{"config.dump", "{"})...)},
		{"duplicate entry", tarOf(t, with([2]string{"config.dump", "{}"})...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "unpacked")
			os.Mkdir(dir, 0o700)
			_, err := Open(context.Background(), bytes.NewReader(tc.data), dir, 2048)
			if !errors.Is(err, ErrBadArchive) {
				t.Fatalf("got %v, want ErrBadArchive", err)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 1 {
				t.Errorf("written beside the dir: %v", entries)
			}
		})
	}
	if _, err := Open(context.Background(), bytes.NewReader(good), t.TempDir(), 2048); err != nil {
		t.Fatalf("the good archive: %v", err)
	}
}

// FuzzOpen: no input panics or writes outside the dir.
func FuzzOpen(f *testing.F) {
	f.Add(tarOf(f, goodEntries...))
	f.Add(tarOf(f, [2]string{"../x", "y"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "d")
		os.Mkdir(dir, 0o700)
		Open(context.Background(), bytes.NewReader(data), dir, 1<<16)
		if entries, _ := os.ReadDir(parent); len(entries) != 1 {
			t.Fatalf("written beside the dir: %v", entries)
		}
	})
}
