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

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
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

// ApplyRootfsDiff makes rootfs, the mounted root of a container made from
// the checkpointed container's image with a fresh writable layer, hold what
// the checkpointed one held: the paths it deleted are removed, then its
// rootfs-diff.tar is unpacked over it. All of it happens inside an os.Root
// at rootfs: no entry, link or deleted path reaches outside.
func (a *Archive) ApplyRootfsDiff(ctx context.Context, rootfs string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, p := range a.Deleted {
		name, ok := entryName(p)
		if !ok || name == "." {
			return fmt.Errorf("%w: deleted path %q leaves the root", ErrBadArchive, p)
		}
		if err := root.RemoveAll(name); err != nil {
			return fmt.Errorf("restore the rootfs: remove %s: %w", name, err)
		}
	}
	src := filepath.Join(a.Dir, metadata.RootFsDiffTar)
	if _, err := os.Lstat(src); os.IsNotExist(err) {
		return nil
	}
	return applyTar(ctx, src, rootfs)
}

// applyTar unpacks the tar at src over dir, inside an os.Root at dir.
func applyTar(ctx context.Context, src, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadArchive, filepath.Base(src), err)
		}
		if err := applyEntry(root, tr, hdr); err != nil {
			return fmt.Errorf("unpack %s: %s: %w", filepath.Base(src), hdr.Name, err)
		}
	}
}

// applyEntry writes one rootfs-diff.tar entry into root, replacing what is
// there, with its owner, mode and modification time.
func applyEntry(root *os.Root, r io.Reader, hdr *tar.Header) error {
	name, ok := entryName(hdr.Name)
	if !ok || name == "." {
		return fmt.Errorf("%w: entry leaves the root", ErrBadArchive)
	}
	if dir := filepath.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	mode := hdr.FileInfo().Mode()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := root.Lstat(name); err != nil || !fi.IsDir() {
			_ = root.RemoveAll(name)
			if err := root.Mkdir(name, 0o700); err != nil {
				return err
			}
		}
	case tar.TypeReg:
		_ = root.RemoveAll(name)
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, r, hdr.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		_ = root.RemoveAll(name)
		if err := root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		return root.Lchown(name, hdr.Uid, hdr.Gid)
	case tar.TypeLink:
		target, ok := entryName(hdr.Linkname)
		if !ok {
			return fmt.Errorf("%w: link to %q leaves the root", ErrBadArchive, hdr.Linkname)
		}
		_ = root.RemoveAll(name)
		return root.Link(target, name)
	default:
		return fmt.Errorf("%w: entry type %q is not restored", ErrBadArchive, hdr.Typeflag)
	}
	if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if err := root.Chmod(name, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return root.Chtimes(name, hdr.ModTime, hdr.ModTime)
}
