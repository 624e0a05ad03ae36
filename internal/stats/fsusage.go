package stats

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DirUsage is the disk a directory tree uses: bytes of the blocks its files
// hold (as du counts them, each hard-linked inode once) and its inodes.
type DirUsage struct {
	Bytes, Inodes uint64
}

// Usage walks dir. A missing dir uses nothing; files that vanish during the
// walk (a container writing) are skipped.
func Usage(dir string) (DirUsage, error) {
	var u DirUsage
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		u.Inodes++
		u.Bytes += uint64(st.Blocks) * 512
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return u, err
}

// Filesystem is the capacity of the filesystem holding a path.
type Filesystem struct {
	Mountpoint                    string
	CapacityBytes, AvailableBytes uint64
	Inodes, InodesFree            uint64
}

// Statfs reads the filesystem holding path.
func Statfs(path string) (Filesystem, error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(path, &s); err != nil {
		return Filesystem{}, err
	}
	bs := uint64(s.Bsize)
	return Filesystem{
		Mountpoint:     path,
		CapacityBytes:  s.Blocks * bs,
		AvailableBytes: s.Bavail * bs,
		Inodes:         s.Files,
		InodesFree:     s.Ffree,
	}, nil
}
