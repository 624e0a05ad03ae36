package layer

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// diskUsage walks dir once after the unpack. Counting tar headers while
// unpacking would be free but wrong: it cannot see block rounding, directory
// blocks, entries that replace earlier ones, whiteouts or the implied
// directories go-archive creates. The walk costs one lstat per inode, all
// served from the dentry cache the unpack just filled, which is small next to
// creating those inodes; it is also what containerd's snapshotters measure.
func diskUsage(dir string) (Usage, error) {
	var u Usage
	seen := make(map[uint64]struct{}) // inodes with more than one link
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("stat %s: no unix stat", p)
		}
		if st.Nlink > 1 && !fi.IsDir() {
			if _, dup := seen[st.Ino]; dup {
				return nil
			}
			seen[st.Ino] = struct{}{}
		}
		u.Inodes++
		u.Bytes += st.Blocks * 512 // st_blocks is always in 512-byte units
		return nil
	})
	if err != nil {
		return Usage{}, fmt.Errorf("measure layer disk usage: %w", err)
	}
	return u, nil
}
