package checkpoint

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestApplyRootfsDiff: a container's changes, packed from its overlay
// upper dir, unpacked over a fresh overlay of the same image, show the
// same root: added and linked files there, deleted files and the replaced
// dir's old contents gone.
func TestApplyRootfsDiff(t *testing.T) {
	upper := upperDir(t)
	lower := t.TempDir()
	for _, p := range []string{"etc/gone", "etc/kept", "cache/old"} {
		os.MkdirAll(filepath.Join(lower, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(lower, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	_, deleted, err := writeRootfsDiff(context.Background(), upper, filepath.Join(dir, "rootfs-diff.tar"))
	if err != nil {
		t.Fatal(err)
	}
	// The restored container's fresh overlay.
	mnt := filepath.Join(t.TempDir(), "rootfs")
	freshUpper, work := t.TempDir(), t.TempDir()
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount("overlay", mnt, "overlay", 0, "lowerdir="+lower+",upperdir="+freshUpper+",workdir="+work); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	a := &Archive{Dir: dir, Deleted: deleted}
	if err := a.ApplyRootfsDiff(context.Background(), mnt); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"etc/new": "new", "etc/again": "new", "etc/kept": "etc/kept", "cache/fresh": "fresh"} {
		if b, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"etc/gone", "cache/old", "sock"} {
		if _, err := os.Lstat(filepath.Join(mnt, p)); !os.IsNotExist(err) {
			t.Errorf("%s is there: %v", p, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(mnt, "etc/link")); err != nil || target != "new" {
		t.Errorf("etc/link -> %q, %v", target, err)
	}
	var a1, a2 unix.Stat_t
	unix.Stat(filepath.Join(mnt, "etc/new"), &a1)
	unix.Stat(filepath.Join(mnt, "etc/again"), &a2)
	if a1.Ino != a2.Ino {
		t.Error("etc/again is no hard link of etc/new")
	}

	// A hostile diff reaches nothing outside the root.
	outside := filepath.Join(filepath.Dir(mnt), "outside")
	os.WriteFile(outside, []byte("keep"), 0o644)
	for _, bad := range [][]string{{"../outside"}, {"/"}, {"."}} {
		if err := (&Archive{Dir: t.TempDir(), Deleted: bad}).ApplyRootfsDiff(context.Background(), mnt); err == nil {
			t.Errorf("deleted %v: no error", bad)
		}
	}
	hostile := t.TempDir()
	os.WriteFile(filepath.Join(hostile, "rootfs-diff.tar"), tarOf(t, [2]string{"../outside", "pwned"}), 0o600)
	if err := (&Archive{Dir: hostile}).ApplyRootfsDiff(context.Background(), mnt); err == nil {
		t.Error("an entry climbing out: no error")
	}
	linkOut := t.TempDir()
	os.WriteFile(filepath.Join(linkOut, "rootfs-diff.tar"), tarOf(t, [2]string{"escape", "-> /"}, [2]string{"escape/outside", "pwned"}), 0o600)
	if err := (&Archive{Dir: linkOut}).ApplyRootfsDiff(context.Background(), mnt); err == nil {
		t.Error("an entry through a symlink: no error")
	}
	if b, _ := os.ReadFile(outside); string(b) != "keep" {
		t.Errorf("the file outside the root was changed: %q", b)
	}
}
