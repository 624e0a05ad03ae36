package checkpoint

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"golang.org/x/sys/unix"
)

// readTar returns a tar's entries: name → content (regular files), or
// "-> target" for links.
func readTar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			out[hdr.Name] = string(b)
		case tar.TypeSymlink, tar.TypeLink:
			out[hdr.Name] = "-> " + hdr.Linkname
		default:
			out[hdr.Name] = ""
		}
	}
}

// upperDir makes an overlay upper dir as a container leaves it: a new
// file, a hard link to it, a symlink, a whiteout (a deleted image file),
// an opaque dir (a replaced image dir) and a socket.
func upperDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: whiteouts are device nodes, opaque dirs trusted xattrs")
	}
	upper := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(upper, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(upper, "etc", "new"), []byte("new"), 0o644))
	must(os.Link(filepath.Join(upper, "etc", "new"), filepath.Join(upper, "etc", "again")))
	must(os.Symlink("new", filepath.Join(upper, "etc", "link")))
	must(unix.Mknod(filepath.Join(upper, "etc", "gone"), unix.S_IFCHR, 0))
	must(os.Mkdir(filepath.Join(upper, "cache"), 0o755))
	must(unix.Setxattr(filepath.Join(upper, "cache"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(upper, "cache", "fresh"), []byte("fresh"), 0o644))
	must(unix.Mknod(filepath.Join(upper, "sock"), unix.S_IFSOCK|0o600, 0))
	return upper
}

func TestRootfsDiff(t *testing.T) {
	upper := upperDir(t)
	tarPath, deleted, err := writeRootfsDiff(context.Background(), upper, filepath.Join(t.TempDir(), "diff.tar"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(deleted)
	if want := []string{"cache", "etc/gone"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted = %v, want %v", deleted, want)
	}
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := readTar(t, f)
	want := map[string]string{
		"etc/": "", "etc/new": "new", "etc/link": "-> new", "cache/": "", "cache/fresh": "fresh",
	}
	// The hard link is the second name of its inode, whichever walks first.
	if got["etc/again"] == "-> etc/new" {
		want["etc/again"] = "-> etc/new"
	} else {
		want["etc/again"], want["etc/new"] = "new", "-> etc/again"
	}
	for name, content := range want {
		if got[name] != content {
			t.Errorf("%s: %q, want %q", name, got[name], content)
		}
	}
	for _, name := range []string{"etc/gone", "sock"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s is in the diff", name)
		}
	}
}

func TestWriteArchive(t *testing.T) {
	upper := upperDir(t)
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	for name, data := range map[string]string{"images/inventory.img": "inv", "images/stats-dump": "stats", "config.json": `{"ociVersion":"1.2.0"}`, "ctr.log": "log line\n"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	location := filepath.Join(out, "ctr.tar")
	c := Container{
		Config:   metadata.ContainerConfig{ID: "abc", Name: "web", CreatedTime: time.Unix(1, 0)},
		SpecFile: filepath.Join(dir, "config.json"), ImageDir: images, UpperDir: upper, LogFile: filepath.Join(dir, "ctr.log"),
	}
	work := t.TempDir()
	if err := WriteArchive(context.Background(), location, work, c); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(location)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := readTar(t, f)
	for name, content := range map[string]string{
		metadata.SpecDumpFile: `{"ociVersion":"1.2.0"}`, "stats-dump": "stats", "checkpoint/inventory.img": "inv",
		"checkpoint/stats-dump": "stats", LogFile: "log line\n", metadata.DeletedFilesFile: `["cache","etc/gone"]`,
	} {
		if got[name] != content {
			t.Errorf("%s: %q, want %q", name, got[name], content)
		}
	}
	for _, name := range []string{metadata.ConfigDumpFile, metadata.RootFsDiffTar} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s", name)
		}
	}

	// A failure (here: a cancelled context) leaves nothing at or beside
	// the location, and an archive already there untouched.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteArchive(ctx, location, t.TempDir(), c); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 {
		t.Errorf("output dir after a failed write: %v", entries)
	}
	if fi, err := os.Stat(location); err != nil || fi.Size() == 0 {
		t.Errorf("the earlier archive: %v", err)
	}
}
