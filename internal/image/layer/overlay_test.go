package layer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOverlayLower checks the output for real: two applied layers as
// overlayfs lower dirs, the upper one whiting out a file and making a
// directory opaque.
func TestOverlayLower(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	lower, upper, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "merged")
	for _, d := range []string{lower, upper, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l1 := makeTar(t, file("etc/motd", "hello"), file("etc/keep", "k"), file("opt/old", "o"), file("gone/x", "x"))
	if _, err := apply(t, lower, gzipBytes(t, l1), l1); err != nil {
		t.Fatalf("apply lower: %v", err)
	}
	l2 := makeTar(t, dirent("etc/"), file("etc/.wh.motd", ""), dirent("opt/"), file("opt/.wh..wh..opq", ""), file("opt/new", "n"), file(".wh.gone", ""))
	if _, err := apply(t, upper, zstdBytes(t, l2), l2); err != nil {
		t.Fatalf("apply upper: %v", err)
	}

	// Two lower dirs and no upper dir: a read-only overlay, as a container
	// image's lower stack is.
	opts := "lowerdir=" + upper + ":" + lower
	if err := unix.Mount("overlay", merged, "overlay", unix.MS_RDONLY, opts); err != nil {
		if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EPERM) {
			t.Skipf("overlayfs not available: %v", err)
		}
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})

	wantMissing(t, filepath.Join(merged, "etc/motd"))
	wantFile(t, filepath.Join(merged, "etc/keep"), "k")
	wantMissing(t, filepath.Join(merged, "opt/old"))
	wantFile(t, filepath.Join(merged, "opt/new"), "n")
	wantMissing(t, filepath.Join(merged, "gone"))
}
