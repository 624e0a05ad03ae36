package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

func lstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func xattr(t *testing.T, p, name string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func wantFile(t *testing.T, p, body string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	if string(b) != body {
		t.Fatalf("%s = %q, want %q", p, b, body)
	}
}

func wantMissing(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s should not exist (err %v)", p, err)
	}
}

func wantWhiteout(t *testing.T, p string) {
	t.Helper()
	st := lstat(t, p)
	if st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("%s is not a 0/0 char device whiteout: mode %o rdev %d", p, st.Mode, st.Rdev)
	}
}

func TestApply(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries []entry
		check   func(t *testing.T, dir string)
	}{{
		name:    "regular files with owner mode and mtime",
		entries: []entry{dirent("etc/"), {name: "etc/shadow", typ: tar.TypeReg, body: "secret", mode: 0o640, uid: 1000, gid: 1001}},
		check: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "etc/shadow")
			wantFile(t, p, "secret")
			st := lstat(t, p)
			if st.Mode&0o7777 != 0o640 || st.Uid != 1000 || st.Gid != 1001 {
				t.Fatalf("mode %o uid %d gid %d", st.Mode&0o7777, st.Uid, st.Gid)
			}
			if got := time.Unix(st.Mtim.Unix()); !got.Equal(testMtime) {
				t.Fatalf("mtime %v, want %v", got, testMtime)
			}
		},
	}, {
		name:    "directories keep mode and mtime after children are added",
		entries: []entry{{name: "d/", typ: tar.TypeDir, mode: 0o1777}, file("d/f", "x"), {name: "p/", typ: tar.TypeDir, mode: 0o700}},
		check: func(t *testing.T, dir string) {
			st := lstat(t, filepath.Join(dir, "d"))
			if st.Mode&0o7777 != 0o1777 {
				t.Fatalf("d mode %o", st.Mode&0o7777)
			}
			if got := time.Unix(st.Mtim.Unix()); !got.Equal(testMtime) {
				t.Fatalf("dir mtime %v, want %v", got, testMtime)
			}
			if m := lstat(t, filepath.Join(dir, "p")).Mode & 0o7777; m != 0o700 {
				t.Fatalf("p mode %o", m)
			}
		},
	}, {
		name:    "implied parent directories",
		entries: []entry{file("a/b/c", "deep")},
		check: func(t *testing.T, dir string) {
			wantFile(t, filepath.Join(dir, "a/b/c"), "deep")
		},
	}, {
		name:    "setuid and setgid bits",
		entries: []entry{{name: "bin/su", typ: tar.TypeReg, body: "elf", mode: 0o4755}, {name: "bin/wall", typ: tar.TypeReg, body: "elf", mode: 0o2755}},
		check: func(t *testing.T, dir string) {
			if m := lstat(t, filepath.Join(dir, "bin/su")).Mode & 0o7777; m != 0o4755 {
				t.Fatalf("su mode %o", m)
			}
			if m := lstat(t, filepath.Join(dir, "bin/wall")).Mode & 0o7777; m != 0o2755 {
				t.Fatalf("wall mode %o", m)
			}
		},
	}, {
		name:    "symlinks keep their target verbatim",
		entries: []entry{symlink("lib", "usr/lib"), symlink("abs", "/etc/passwd"), symlink("dangling", "../../nowhere")},
		check: func(t *testing.T, dir string) {
			for name, want := range map[string]string{"lib": "usr/lib", "abs": "/etc/passwd", "dangling": "../../nowhere"} {
				got, err := os.Readlink(filepath.Join(dir, name))
				if err != nil || got != want {
					t.Fatalf("readlink %s = %q, %v; want %q", name, got, err, want)
				}
			}
		},
	}, {
		name:    "hardlinks share an inode",
		entries: []entry{file("a", "same"), hardlink("b", "a"), hardlink("c", "/a")},
		check: func(t *testing.T, dir string) {
			a, b, c := lstat(t, filepath.Join(dir, "a")), lstat(t, filepath.Join(dir, "b")), lstat(t, filepath.Join(dir, "c"))
			if a.Ino != b.Ino || a.Ino != c.Ino || a.Nlink != 3 {
				t.Fatalf("inodes %d %d %d nlink %d", a.Ino, b.Ino, c.Ino, a.Nlink)
			}
		},
	}, {
		name: "device nodes and fifos",
		entries: []entry{
			{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3, mode: 0o666},
			{name: "dev/loop9", typ: tar.TypeBlock, major: 7, minor: 9, mode: 0o660},
			{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
		},
		check: func(t *testing.T, dir string) {
			if st := lstat(t, filepath.Join(dir, "dev/null")); st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
				t.Fatalf("dev/null mode %o rdev %d", st.Mode, st.Rdev)
			}
			if st := lstat(t, filepath.Join(dir, "dev/loop9")); st.Mode&syscall.S_IFMT != syscall.S_IFBLK || st.Rdev != unix.Mkdev(7, 9) {
				t.Fatalf("dev/loop9 mode %o rdev %d", st.Mode, st.Rdev)
			}
			if st := lstat(t, filepath.Join(dir, "run/fifo")); st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
				t.Fatalf("fifo mode %o", st.Mode)
			}
		},
	}, {
		name:    "xattrs",
		entries: []entry{{name: "f", typ: tar.TypeReg, body: "x", xattrs: map[string]string{"user.comment": "hi", "security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}}},
		check: func(t *testing.T, dir string) {
			if got := xattr(t, filepath.Join(dir, "f"), "user.comment"); got != "hi" {
				t.Fatalf("user.comment = %q", got)
			}
			if got := xattr(t, filepath.Join(dir, "f"), "security.capability"); len(got) != 20 {
				t.Fatalf("security.capability = %q", got)
			}
		},
	}, {
		name:    "file whiteout",
		entries: []entry{dirent("etc/"), file("etc/.wh.motd", "")},
		check: func(t *testing.T, dir string) {
			wantWhiteout(t, filepath.Join(dir, "etc/motd"))
			wantMissing(t, filepath.Join(dir, "etc/.wh.motd"))
		},
	}, {
		name:    "directory whiteout",
		entries: []entry{file(".wh.var", "")},
		check: func(t *testing.T, dir string) {
			wantWhiteout(t, filepath.Join(dir, "var"))
			wantMissing(t, filepath.Join(dir, ".wh.var"))
		},
	}, {
		name:    "opaque directory",
		entries: []entry{dirent("opt/"), file("opt/.wh..wh..opq", ""), file("opt/new", "n")},
		check: func(t *testing.T, dir string) {
			if got := xattr(t, filepath.Join(dir, "opt"), "trusted.overlay.opaque"); got != "y" {
				t.Fatalf("opaque xattr = %q", got)
			}
			wantMissing(t, filepath.Join(dir, "opt/.wh..wh..opq"))
			wantFile(t, filepath.Join(dir, "opt/new"), "n")
		},
	}, {
		name:    "aufs metadata is dropped",
		entries: []entry{dirent(".wh..wh.plnk/"), file(".wh..wh.plnk/123.456", "x"), file(".wh..wh.aufs", ""), file("keep", "k")},
		check: func(t *testing.T, dir string) {
			names, _ := os.ReadDir(dir)
			if len(names) != 1 || names[0].Name() != "keep" {
				t.Fatalf("entries: %v", names)
			}
		},
	}, {
		name: "overlay private xattrs are dropped except opaque",
		entries: []entry{
			{name: "d/", typ: tar.TypeDir, xattrs: map[string]string{"trusted.overlay.redirect": "/etc", "trusted.overlay.opaque": "y"}},
			{name: "f", typ: tar.TypeReg, xattrs: map[string]string{"trusted.overlay.metacopy": "", "trusted.overlay.opaque": "y"}},
		},
		check: func(t *testing.T, dir string) {
			if got := xattr(t, filepath.Join(dir, "d"), "trusted.overlay.redirect"); got != "" {
				t.Fatalf("redirect xattr kept: %q", got)
			}
			if got := xattr(t, filepath.Join(dir, "d"), "trusted.overlay.opaque"); got != "y" {
				t.Fatalf("opaque xattr = %q", got)
			}
			if got := xattr(t, filepath.Join(dir, "f"), "trusted.overlay.opaque"); got != "" {
				t.Fatalf("opaque on file kept: %q", got)
			}
		},
	}, {
		name:    "later entry replaces earlier one",
		entries: []entry{file("x", "old"), dirent("x/"), file("x/y", "new"), symlink("z", "x"), file("z", "file")},
		check: func(t *testing.T, dir string) {
			wantFile(t, filepath.Join(dir, "x/y"), "new")
			wantFile(t, filepath.Join(dir, "z"), "file")
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			raw := makeTar(t, tc.entries...)
			if _, err := apply(t, s.dir, raw, raw); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			tc.check(t, s.dir)
			s.checkOutside(t)
		})
	}
}

// TestApplyContainment feeds layers that try to write outside dir. Each must
// either fail or land inside dir; the sentinel beside dir must not change.
func TestApplyContainment(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries func(s sandbox) []entry
		wantErr bool
		check   func(t *testing.T, s sandbox) // when it succeeds
	}{{
		name:    "dotdot entry",
		entries: func(sandbox) []entry { return []entry{file("../sentinel", "pwned")} },
		wantErr: true,
	}, {
		name:    "dotdot inside the name",
		entries: func(sandbox) []entry { return []entry{file("a/../../sentinel", "pwned")} },
		wantErr: true,
	}, {
		name:    "absolute path is made relative",
		entries: func(s sandbox) []entry { return []entry{file(s.sentinel, "contained")} },
		check: func(t *testing.T, s sandbox) {
			wantFile(t, filepath.Join(s.dir, s.sentinel), "contained")
		},
	}, {
		name:    "write through absolute symlink to /",
		entries: func(s sandbox) []entry { return []entry{symlink("root", "/"), file("root"+s.sentinel, "contained")} },
		check: func(t *testing.T, s sandbox) {
			wantFile(t, filepath.Join(s.dir, s.sentinel), "contained")
		},
	}, {
		name:    "write through absolute symlink to the parent",
		entries: func(s sandbox) []entry { return []entry{symlink("p", s.parent), file("p/sentinel", "contained")} },
		check: func(t *testing.T, s sandbox) {
			wantFile(t, filepath.Join(s.dir, s.parent, "sentinel"), "contained")
		},
	}, {
		name:    "write through relative symlink out of the root",
		entries: func(sandbox) []entry { return []entry{symlink("up", ".."), file("up/sentinel", "pwned")} },
		wantErr: true,
	}, {
		name: "write through chained symlinks",
		entries: func(sandbox) []entry {
			return []entry{symlink("a", "b/.."), symlink("b", "."), symlink("c", "a/.."), file("c/sentinel", "pwned")}
		},
		wantErr: true,
	}, {
		name:    "regular file replaces a symlink instead of following it",
		entries: func(s sandbox) []entry { return []entry{symlink("f", s.sentinel), file("f", "contained")} },
		check: func(t *testing.T, s sandbox) {
			wantFile(t, filepath.Join(s.dir, "f"), "contained")
		},
	}, {
		name: "directory replaces a symlink instead of following it",
		entries: func(s sandbox) []entry {
			return []entry{symlink("d", s.parent), {name: "d", typ: tar.TypeDir, mode: 0o700}}
		},
		check: func(t *testing.T, s sandbox) {
			if fi, err := os.Lstat(filepath.Join(s.dir, "d")); err != nil || !fi.IsDir() {
				t.Fatalf("d: %v %v", fi, err)
			}
		},
	}, {
		name:    "hardlink to a relative path outside",
		entries: func(sandbox) []entry { return []entry{hardlink("h", "../sentinel")} },
		wantErr: true,
	}, {
		name: "hardlink to an absolute path outside",
		// Resolved inside the root, where that path does not exist.
		entries: func(s sandbox) []entry { return []entry{hardlink("h", s.sentinel)} },
		wantErr: true,
	}, {
		name:    "hardlink through a symlink to outside",
		entries: func(sandbox) []entry { return []entry{symlink("up", ".."), hardlink("h", "up/sentinel")} },
		wantErr: true,
	}, {
		name: "xattr through a symlink to outside",
		entries: func(s sandbox) []entry {
			return []entry{symlink("up", s.parent), {name: "up/sentinel", typ: tar.TypeReg, xattrs: map[string]string{"user.pwned": "1"}}}
		},
		check: func(t *testing.T, s sandbox) {
			if got := xattr(t, s.sentinel, "user.pwned"); got != "" {
				t.Fatalf("xattr written outside")
			}
		},
	}, {
		name:    "whiteout through a symlink",
		entries: func(s sandbox) []entry { return []entry{symlink("up", s.parent), file("up/.wh.sentinel", "")} },
		wantErr: true,
	}, {
		name:    "whiteout through a relative symlink",
		entries: func(sandbox) []entry { return []entry{symlink("up", ".."), file("up/.wh.sentinel", "")} },
		wantErr: true,
	}, {
		// go-archive would open(2) the FIFO as the whiteout's parent and block
		// forever; the filter must refuse it.
		name:    "whiteout under a fifo",
		entries: func(sandbox) []entry { return []entry{{name: "p", typ: tar.TypeFifo}, file("p/.wh.x", "")} },
		wantErr: true,
	}, {
		name: "opaque marker under a device node",
		entries: func(sandbox) []entry {
			return []entry{{name: "d", typ: tar.TypeChar, major: 1, minor: 3}, file("d/.wh..wh..opq", "")}
		},
		wantErr: true,
	}, {
		name:    "bare whiteout prefix",
		entries: func(sandbox) []entry { return []entry{file(".wh..", "")} },
		wantErr: true,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			raw := makeTar(t, tc.entries(s)...)
			done := make(chan error, 1)
			go func() {
				_, err := apply(t, s.dir, raw, raw)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Apply hung")
			}
			s.checkOutside(t)
			if tc.wantErr {
				if err == nil {
					t.Fatal("Apply succeeded, want error")
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestApplyCompression(t *testing.T) {
	requireRoot(t)
	raw := makeTar(t, dirent("etc/"), file("etc/hostname", "crid"), symlink("l", "etc/hostname"))
	skippable := append([]byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 'c', 'r', 'i', 'd'}, zstdBytes(t, raw)...)
	for _, tc := range []struct {
		name string
		blob []byte
	}{
		{"uncompressed", raw},
		{"gzip", gzipBytes(t, raw)},
		{"gzip multistream", append(gzipBytes(t, raw[:1024]), gzipBytes(t, raw[1024:])...)},
		{"zstd", zstdBytes(t, raw)},
		{"zstd with skippable frame", skippable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			u, err := apply(t, s.dir, tc.blob, raw)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			wantFile(t, filepath.Join(s.dir, "l"), "crid")
			// root, etc, etc/hostname, l
			if u.Inodes != 4 || u.Bytes <= 0 {
				t.Fatalf("usage %+v", u)
			}
		})
	}
}

func TestApplyDigest(t *testing.T) {
	raw := makeTar(t, file("f", "data"))
	// Bytes after the end-of-archive marker are part of the diffID.
	trailing := append(append([]byte{}, raw...), make([]byte, 4096)...)
	tests := []struct {
		name    string
		blob    []byte
		diffID  digest.Digest
		wantErr string
	}{
		{name: "match", blob: gzipBytes(t, raw), diffID: digest.FromBytes(raw)},
		{name: "trailing bytes hashed", blob: gzipBytes(t, trailing), diffID: digest.FromBytes(trailing)},
		{name: "trailing bytes change the digest", blob: gzipBytes(t, trailing), diffID: digest.FromBytes(raw), wantErr: "digest mismatch"},
		{name: "compressed digest is not the diffID", blob: gzipBytes(t, raw), diffID: digest.FromBytes(gzipBytes(t, raw)), wantErr: "digest mismatch"},
		// tar.Reader reports some truncations as a clean EOF; the digest
		// still catches them.
		{name: "truncated inside a pax header", blob: raw[:700], diffID: digest.FromBytes(raw), wantErr: "digest mismatch"},
		{name: "truncated inside data", blob: raw[:1030], diffID: digest.FromBytes(raw), wantErr: "unexpected EOF"},
		{name: "corrupt gzip", blob: append(gzipBytes(t, raw)[:20], 0xff, 0xff, 0xff), diffID: digest.FromBytes(raw), wantErr: "apply layer"},
		{name: "invalid diffID", blob: raw, diffID: "sha256:abc", wantErr: "invalid"},
		{name: "not sha256", blob: raw, diffID: digest.Digest("sha384:" + strings.Repeat("ab", 48)), wantErr: "unsupported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := Apply(context.Background(), s.dir, bytes.NewReader(tc.blob), tc.diffID)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if tc.wantErr == "digest mismatch" {
				blob := tc.blob
				if bytes.HasPrefix(blob, gzipMagic) {
					blob = trailing // the only gzip mismatch case decompresses to trailing
					if tc.name == "compressed digest is not the diffID" {
						blob = raw
					}
				}
				got := digest.FromBytes(blob)
				if !strings.Contains(err.Error(), got.String()) || !strings.Contains(err.Error(), tc.diffID.String()) {
					t.Fatalf("error does not name both digests: %v", err)
				}
			}
		})
	}
}

// TestApplySparse checks that sparse entries (here 20 GB of holes in a
// 10 KB tar made by GNU tar --sparse) are refused rather than expanded.
func TestApplySparse(t *testing.T) {
	for _, name := range []string{"sparse-pax.tar", "sparse-gnu.tar"} {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			s := newSandbox(t)
			if _, err := apply(t, s.dir, raw, raw); err == nil || !strings.Contains(err.Error(), "sparse") {
				t.Fatalf("err = %v, want sparse files refused", err)
			}
		})
	}
}

func TestApplyDirMustBeEmpty(t *testing.T) {
	raw := makeTar(t, file("f", "x"))
	s := newSandbox(t)
	if err := os.WriteFile(filepath.Join(s.dir, "old"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(t, s.dir, raw, raw); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err = %v", err)
	}
	if _, err := apply(t, filepath.Join(s.parent, "missing"), raw, raw); err == nil {
		t.Fatal("Apply into a missing dir succeeded")
	}
}

// cancelAfter cancels ctx once n bytes were read, simulating a kubelet
// giving up in the middle of a pull.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= n
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func TestApplyCancel(t *testing.T) {
	var entries []entry
	for i := range 200 {
		entries = append(entries, file(fmt.Sprintf("d%02d/f%03d", i%10, i), strings.Repeat("z", 64<<10)))
	}
	raw := makeTar(t, entries...)
	blob := gzipBytes(t, raw)

	t.Run("before start", func(t *testing.T) {
		s := newSandbox(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Apply(ctx, s.dir, bytes.NewReader(blob), digest.FromBytes(raw)); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("mid stream", func(t *testing.T) {
		s := newSandbox(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := &cancelAfter{r: bytes.NewReader(blob), n: len(blob) / 4, cancel: cancel}
		start := time.Now()
		_, err := Apply(ctx, s.dir, r, digest.FromBytes(raw))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("cancel took %v", d)
		}
		s.checkOutside(t)
	})
}

func TestApplyUsage(t *testing.T) {
	requireRoot(t)
	s := newSandbox(t)
	raw := makeTar(t, dirent("d/"), file("d/big", strings.Repeat("a", 100_000)), hardlink("d/big2", "d/big"), file(".wh.gone", ""), symlink("s", "d"))
	u, err := apply(t, s.dir, raw, raw)
	if err != nil {
		t.Fatal(err)
	}
	// root, d, d/big (+ its hardlink, counted once), whiteout gone, s
	if u.Inodes != 5 {
		t.Fatalf("inodes = %d, want 5", u.Inodes)
	}
	if u.Bytes < 100_000 || u.Bytes > 100_000+64<<10 {
		t.Fatalf("bytes = %d", u.Bytes)
	}
}
