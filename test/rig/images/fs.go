// Package images builds the offline test rig's container images: local
// stand-ins for the images critest and the crid tests pull by their upstream
// names. Every image is built in memory from files on this machine (Debian's
// dynamic busybox, its glibc libraries) plus a small static helper compiled
// from ./guest, and the output is reproducible: same inputs, same digests.
package images

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// Epoch is the timestamp of every file and image config, so that rebuilding
// yields byte-identical layers and therefore identical digests.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

type entry struct {
	typ      byte
	mode     int64
	data     []byte
	link     string
	uid, gid int
}

// FS is an in-memory directory tree that serialises to a deterministic tar.
// Paths are absolute ("/bin/sh"); missing parent directories are implied
// with mode 0755.
type FS struct {
	entries map[string]*entry
}

// NewFS returns an empty tree.
func NewFS() *FS { return &FS{entries: map[string]*entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// Dir adds a directory; mode may carry the sticky bit (e.g. 01777 for /tmp).
func (f *FS) Dir(p string, mode int64) {
	f.entries[clean(p)] = &entry{typ: tar.TypeDir, mode: mode}
}

// File adds a regular file owned by root; mode may carry setuid bits.
func (f *FS) File(p string, mode int64, data []byte) {
	f.entries[clean(p)] = &entry{typ: tar.TypeReg, mode: mode, data: data}
}

// Symlink adds a symbolic link to target (relative or absolute).
func (f *FS) Symlink(p, target string) {
	f.entries[clean(p)] = &entry{typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// Hardlink adds a hard link to another regular file of the same tree.
func (f *FS) Hardlink(p, target string) {
	f.entries[clean(p)] = &entry{typ: tar.TypeLink, mode: 0o755, link: clean(target)}
}

// Tar serialises the tree: directories and files in path order (a parent
// always sorts before its children), hard links last so their targets
// precede them, all with Epoch timestamps and root ownership.
func (f *FS) Tar() ([]byte, error) {
	all := map[string]*entry{}
	for p, e := range f.entries {
		all[p] = e
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := f.entries[d]; !ok {
				all[d] = &entry{typ: tar.TypeDir, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Slice(names, func(i, j int) bool {
		li, lj := all[names[i]].typ == tar.TypeLink, all[names[j]].typ == tar.TypeLink
		if li != lj {
			return lj
		}
		return names[i] < names[j]
	})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		e := all[p]
		if e.typ == tar.TypeLink {
			if t, ok := all[e.link]; !ok || t.typ != tar.TypeReg {
				return nil, fmt.Errorf("hard link %s: target %s is not a regular file of the layer", p, e.link)
			}
		}
		h := &tar.Header{
			Typeflag: e.typ,
			Name:     p,
			Linkname: e.link,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  Epoch,
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeDir {
			h.Name += "/"
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", p, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("tar data %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}
