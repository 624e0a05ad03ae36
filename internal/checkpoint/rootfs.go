package checkpoint

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// writeRootfsDiff writes the changes an overlay upper dir holds as a tar at
// dst, and returns the paths the container deleted from its image: each
// whiteout (a 0/0 character device), and each opaque directory, whose
// contents in the image are gone and whose new contents are in the tar.
// Restoring deletes those paths first, then unpacks the tar. Sockets are
// left out: a restored process re-creates its own. Written by hand: the
// libraries that diff layers (containerd's archive, moby's) write whiteouts
// as .wh. files, not as the deleted.files list this layout has.
func writeRootfsDiff(ctx context.Context, upper, dst string) (string, []string, error) {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("rootfs diff: %w", err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	var deleted []string
	inodes := map[uint64]string{} // hard links: the first name of each inode
	err = filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == upper {
			return nil
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if st == nil {
			return fmt.Errorf("%s: no stat", p)
		}
		switch {
		case fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0:
			deleted = append(deleted, rel)
			return nil
		case fi.Mode()&fs.ModeSocket != 0:
			return nil
		case fi.IsDir() && opaque(p):
			deleted = append(deleted, rel)
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		hdr.Uname, hdr.Gname = "", ""
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				inodes[st.Ino] = hdr.Name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		// The container runs: a file may change while it is copied. Copy
		// what the header says, padding a file that shrank.
		n, err := io.CopyN(tw, src, hdr.Size)
		if err == io.EOF {
			_, err = tw.Write(make([]byte, hdr.Size-n))
		}
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("rootfs diff of %s: %w", upper, err)
	}
	if err := tw.Close(); err != nil {
		return "", nil, fmt.Errorf("rootfs diff: %w", err)
	}
	return dst, deleted, f.Close()
}

// opaque reports whether an overlay upper dir hides the lower dirs' contents.
func opaque(dir string) bool {
	buf := make([]byte, 1)
	for _, attr := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if n, err := unix.Lgetxattr(dir, attr, buf); err == nil && n == 1 && buf[0] == 'y' {
			return true
		}
	}
	return false
}
