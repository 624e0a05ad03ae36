package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/go-archive"
)

const (
	paxXattrPrefix = "SCHILY.xattr."
	opaqueXattr    = "trusted.overlay.opaque"
)

// filter re-encodes a layer's tar stream entry by entry before go-archive
// unpacks it. go-archive (v0.3.x) already confines every write to the layer
// dir: it rejects names with "..", strips a leading "/", does all file system
// calls through an os.Root, resolves absolute symlinks met in parent paths
// inside the root (chroot-like), refuses relative ones that leave it, and
// checks hardlink targets the same way. The filter closes what remains:
// whiteouts under a non-directory (see admit), overlayfs xattrs smuggled in
// PAX records, AUFS metadata entries; and it normalises headers so that
// go-archive acts on exactly the names we checked.
type filter struct {
	// kinds holds the type of every path this layer has put on disk so far,
	// by cleaned name (last entry wins). The layer dir starts empty, so a
	// path not in kinds is either absent or a directory go-archive created
	// implicitly.
	kinds map[string]byte
	buf   []byte
}

func newFilter() *filter {
	return &filter{kinds: make(map[string]byte), buf: make([]byte, 256<<10)}
}

// copy moves every admitted entry of tr to tw.
func (f *filter) copy(ctx context.Context, tr *tar.Reader, tw *tar.Writer) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar header: %w", err)
		}
		keep, err := f.admit(hdr)
		if err != nil {
			return err
		}
		if !keep {
			continue // tr.Next skips the entry's data
		}
		if err := tw.WriteHeader(hdr); err != nil {
			if errors.Is(err, io.ErrClosedPipe) || errors.Is(err, errConsumerGone) {
				return err
			}
			return fmt.Errorf("re-encode tar header %q: %w", hdr.Name, err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			if _, err := io.CopyBuffer(tw, &ctxReader{ctx: ctx, r: tr}, f.buf); err != nil {
				return fmt.Errorf("copy %q: %w", hdr.Name, err)
			}
		}
	}
}

// admit checks and normalises hdr in place. It returns false for entries
// that must be dropped and an error for entries that must fail the layer.
func (f *filter) admit(hdr *tar.Header) (bool, error) {
	// Same cleaning as go-archive's Unpack, so both agree on the path.
	name := path.Clean(strings.TrimLeft(hdr.Name, "/"))
	if name == "." {
		return false, nil
	}
	if !filepath.IsLocal(name) {
		return false, fmt.Errorf("tar entry %q escapes the layer root", hdr.Name)
	}
	hdr.Name = name

	if isSparse(hdr) {
		// tar.Reader expands holes into zeros without reading the stream,
		// so a few KB of layer could demand terabytes of writes that no
		// read-side context check would interrupt. The OCI image spec
		// advises against sparse entries; containerd-built images have none.
		return false, fmt.Errorf("tar entry %q: sparse files are not supported", hdr.Name)
	}

	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		// go-archive rejects the legacy flag; write it as a regular file.
		hdr.Typeflag = tar.TypeReg
	case tar.TypeXGlobalHeader:
		return false, nil
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		hdr.Size = 0 // header-only types; tar.Reader already skipped any data
	default:
		return false, fmt.Errorf("tar entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
	}

	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	for _, c := range strings.Split(dir, "/") {
		if strings.HasPrefix(c, archive.WhiteoutMetaPrefix) {
			// Inside AUFS bookkeeping such as .wh..wh.plnk: never layer content.
			return false, nil
		}
	}

	if strings.HasPrefix(base, archive.WhiteoutPrefix) {
		if strings.HasPrefix(base, archive.WhiteoutMetaPrefix) && base != archive.WhiteoutOpaqueDir {
			// AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): containerd skips it
			// too; go-archive would create a stray device node for it.
			return false, nil
		}
		// go-archive opens the whiteout's parent with a plain open(2), not
		// O_DIRECTORY: if this layer had made the parent a FIFO that open
		// would hang, and on a device node it would open the device.
		if err := f.checkDirs(dir); err != nil {
			return false, fmt.Errorf("whiteout %q: %w", hdr.Name, err)
		}
		if base != archive.WhiteoutOpaqueDir {
			f.kinds[path.Join(dir, strings.TrimPrefix(base, archive.WhiteoutPrefix))] = tar.TypeChar
		}
		f.filterXattrs(hdr)
		return true, nil
	}

	f.kinds[name] = hdr.Typeflag
	f.filterXattrs(hdr)
	return true, nil
}

// isSparse reports an old GNU sparse entry or a PAX (GNU 0.x/1.0) one.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// checkDirs fails if any component of dir is something other than a
// directory that this layer created.
func (f *filter) checkDirs(dir string) error {
	if dir == "" {
		return nil
	}
	p := dir
	for {
		if k, ok := f.kinds[p]; ok && k != tar.TypeDir {
			return fmt.Errorf("parent %q is not a directory", p)
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return nil
		}
		p = p[:i]
	}
}

// filterXattrs keeps only the PAX records go-archive acts on (xattrs), and
// of the overlayfs private xattrs only opaque=y on a directory. Others
// (redirect, metacopy, origin, whiteout...) would change how the kernel
// merges layers if a layer could set them, and no image tool produces them.
// Dropping the other records also lets tar.Writer re-derive path, size,
// times and ids from the header fields instead of stale raw records.
func (f *filter) filterXattrs(hdr *tar.Header) {
	hdr.Xattrs = nil //nolint:staticcheck // deprecated mirror of PAXRecords; tar.Writer would re-add it.
	var kept map[string]string
	for k, v := range hdr.PAXRecords {
		x, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok {
			continue
		}
		if strings.HasPrefix(x, "trusted.overlay.") || strings.HasPrefix(x, "user.overlay.") {
			if x != opaqueXattr || v != "y" || hdr.Typeflag != tar.TypeDir {
				continue
			}
		}
		if kept == nil {
			kept = make(map[string]string)
		}
		kept[k] = v
	}
	hdr.PAXRecords = kept
	// PAX keeps sub-second mtimes and atimes, which USTAR would round away.
	hdr.Format = tar.FormatPAX
}
