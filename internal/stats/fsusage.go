package stats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// DirUsage is the disk a directory tree uses: bytes of the blocks its files
// hold (as du counts them, each hard-linked inode once) and its inodes.
type DirUsage struct {
	Bytes, Inodes uint64
}

func (u *DirUsage) add(v DirUsage) {
	u.Bytes += v.Bytes
	u.Inodes += v.Inodes
}

// treeUsage is one walk of a tree: its total and that of each entry right
// under its root (a container layer dir's "upper", "work").
type treeUsage struct {
	Total    DirUsage
	Children map[string]DirUsage
	// Partial: the walk stopped early (budget, deadline or an error), so
	// the numbers are a lower bound.
	Partial bool
}

// errInodeBudget stops a walk that has counted its budget of inodes.
var errInodeBudget = errors.New("inode budget spent")

// dirBatch is how many entries a walk reads from a directory at a time:
// it bounds memory on huge directories and how often the deadline is checked.
const dirBatch = 256

// Usage walks dir without bounds. A missing dir uses nothing; files that
// vanish during the walk (a container writing) are skipped.
func Usage(dir string) (DirUsage, error) {
	u, err := walkTree(context.Background(), dir, 0)
	return u.Total, err
}

// walkTree measures dir like du -x: it stays on dir's filesystem, counts
// each hard-linked inode once, and stops, with Partial set, once it has
// counted budget inodes (0: no bound) or ctx ends. Entries that vanish
// mid-walk are skipped; other errors are returned after the walk goes on
// past them.
func walkTree(ctx context.Context, dir string, budget uint64) (treeUsage, error) {
	out := treeUsage{Children: map[string]DirUsage{}}
	root, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	rst, ok := root.Sys().(*syscall.Stat_t)
	if !ok {
		return out, fmt.Errorf("%s: no stat data", dir)
	}
	w := walker{ctx: ctx, budget: budget, dev: rst.Dev, out: &out, seen: map[uint64]bool{}}
	w.count("", rst, true)
	if !root.IsDir() {
		return out, nil
	}
	type frame struct{ path, child string }
	stack := []frame{{dir, ""}}
	for len(stack) > 0 && w.stop == nil {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		w.readDir(f.path, f.child, func(path, child string) { stack = append(stack, frame{path, child}) })
	}
	if w.stop != nil {
		out.Partial = true
		return out, w.stop
	}
	if w.firstErr != nil {
		out.Partial = true
	}
	return out, w.firstErr
}

// walker is the state of one walkTree.
type walker struct {
	ctx      context.Context
	budget   uint64
	dev      uint64
	out      *treeUsage
	seen     map[uint64]bool
	stop     error // the budget or ctx ended the walk
	firstErr error // the first entry that could not be read
}

func (w *walker) fail(err error) {
	if w.firstErr == nil && !errors.Is(err, os.ErrNotExist) {
		w.firstErr = err
	}
}

// readDir counts the entries of dir, in batches, and hands its
// subdirectories (on the same filesystem) to push.
func (w *walker) readDir(dir, child string, push func(path, child string)) {
	f, err := os.Open(dir)
	if err != nil {
		w.fail(err)
		return
	}
	defer f.Close()
	for {
		if err := w.ctx.Err(); err != nil {
			w.stop = err
			return
		}
		ents, err := f.ReadDir(dirBatch)
		for _, e := range ents {
			info, err := e.Info()
			if err != nil {
				w.fail(err)
				continue
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				continue
			}
			c := child
			if c == "" {
				c = e.Name()
			}
			isDir := e.IsDir()
			if isDir && st.Dev != w.dev {
				continue // another filesystem mounted inside: not ours
			}
			w.count(c, st, isDir)
			if isDir {
				push(filepath.Join(dir, e.Name()), c)
			}
			if w.budget > 0 && w.out.Total.Inodes >= w.budget {
				w.stop = fmt.Errorf("%s: %w (%d)", dir, errInodeBudget, w.budget)
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				w.fail(err)
			}
			return
		}
	}
}

// count adds one inode to the total and to child's subtotal ("" for the
// tree's root itself).
func (w *walker) count(child string, st *syscall.Stat_t, isDir bool) {
	if st.Nlink > 1 && !isDir {
		if w.seen[st.Ino] {
			return
		}
		w.seen[st.Ino] = true
	}
	u := DirUsage{Bytes: uint64(st.Blocks) * 512, Inodes: 1}
	w.out.Total.add(u)
	if child != "" {
		cu := w.out.Children[child]
		cu.add(u)
		w.out.Children[child] = cu
	}
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
