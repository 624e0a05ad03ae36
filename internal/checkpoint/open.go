package checkpoint

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrBadArchive is what a checkpoint archive that cannot be restored from
// wraps: malformed, truncated, hostile or incomplete.
var ErrBadArchive = errors.New("bad checkpoint archive")

// Archive is an unpacked container checkpoint archive.
type Archive struct {
	// Dir holds the unpacked files; ImageDir is CRIU's images in it.
	Dir, ImageDir string
	Config        metadata.ContainerConfig
	Spec          specs.Spec
	// Deleted are the paths the container removed from its image.
	Deleted []string
}

// Open unpacks the archive read from r into dir, which must exist and be
// empty, and reads its metadata. Only regular files and directories are
// taken, every name stays inside dir (the unpack happens in an os.Root),
// and the files may hold limit bytes in all: a hostile archive cannot write
// outside dir nor fill the disk. An archive that lacks config.dump,
// spec.dump or CRIU's inventory is refused. On error the caller removes
// dir.
func Open(ctx context.Context, r io.Reader, dir string, limit int64) (*Archive, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadArchive, fmt.Sprintf(format, args...))
	}
	tr := tar.NewReader(r)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, bad("%v", err)
		}
		name, ok := entryName(hdr.Name)
		if !ok {
			return nil, bad("entry %q leaves the archive", hdr.Name)
		}
		if name == "." {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return nil, bad("%s: %v", name, err)
			}
		case tar.TypeReg:
			if hdr.Size < 0 || total+hdr.Size > limit {
				return nil, bad("it unpacks to more than %d bytes", limit)
			}
			total += hdr.Size
			if err := writeEntry(root, name, tr, hdr.Size); err != nil {
				return nil, bad("%s: %v", name, err)
			}
		default:
			return nil, bad("entry %q is not a regular file or directory", hdr.Name)
		}
	}
	a := &Archive{Dir: dir, ImageDir: dir + "/" + metadata.CheckpointDirectory}
	for file, v := range map[string]any{metadata.ConfigDumpFile: &a.Config, metadata.SpecDumpFile: &a.Spec} {
		b, err := root.ReadFile(file)
		if err != nil {
			return nil, bad("no %s", file)
		}
		if err := json.Unmarshal(b, v); err != nil {
			return nil, bad("%s: %v", file, err)
		}
	}
	if b, err := root.ReadFile(metadata.DeletedFilesFile); err == nil {
		if err := json.Unmarshal(b, &a.Deleted); err != nil {
			return nil, bad("%s: %v", metadata.DeletedFilesFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if _, err := root.Stat(metadata.CheckpointDirectory + "/inventory.img"); err != nil {
		return nil, bad("no CRIU images (%s/inventory.img)", metadata.CheckpointDirectory)
	}
	if a.Config.ID == "" || a.Spec.Process == nil || a.Spec.Root == nil {
		return nil, bad("config.dump names no container or spec.dump has no process or root")
	}
	return a, nil
}

// entryName cleans a tar entry's name; ok is false for one that is
// absolute or climbs out.
func entryName(name string) (string, bool) {
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	if name == "" || path.IsAbs(name) || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(name, 0) {
		return "", false
	}
	return clean, true
}

func writeEntry(root *os.Root, name string, r io.Reader, size int64) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// DirReader streams dir, a checkpoint archive unpacked (the layer of a
// checkpoint image), as the archive it was, for Open and ReadConfig: only
// regular files and directories are taken.
func DirReader(ctx context.Context, dir string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := addTree(ctx, tw, dir, "")
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// maxConfigDump bounds config.dump, read before anything is unpacked.
const maxConfigDump = 1 << 20

// ReadConfig reads only config.dump from an archive: what a restore needs
// to know (the image and the runtime the container ran with) before it
// makes anything.
func ReadConfig(r io.Reader) (metadata.ContainerConfig, error) {
	var cfg metadata.ContainerConfig
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return cfg, fmt.Errorf("%w: no %s", ErrBadArchive, metadata.ConfigDumpFile)
		}
		if err != nil {
			return cfg, fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		if name, ok := entryName(hdr.Name); !ok || name != metadata.ConfigDumpFile || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Size > maxConfigDump {
			return cfg, fmt.Errorf("%w: %s is %d bytes", ErrBadArchive, metadata.ConfigDumpFile, hdr.Size)
		}
		if err := json.NewDecoder(io.LimitReader(tr, maxConfigDump)).Decode(&cfg); err != nil {
			return cfg, fmt.Errorf("%w: %s: %v", ErrBadArchive, metadata.ConfigDumpFile, err)
		}
		if cfg.ID == "" || cfg.RootfsImageRef == "" && cfg.RootfsImageName == "" {
			return cfg, fmt.Errorf("%w: %s names no container or image", ErrBadArchive, metadata.ConfigDumpFile)
		}
		return cfg, nil
	}
}
