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
	"path/filepath"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
)

const (
	// LogFile is the container's CRI log in the archive (the layouts of
	// CRI-O and containerd have no fixed name for it).
	LogFile = "container.log"
	// statsDump is CRIU's dump statistics (go-criu's stats.StatsDump),
	// which checkpointctl inspect reads at the archive's top.
	statsDump = "stats-dump"
)

// Container is what one container's archive is made of.
type Container struct {
	// Config becomes config.dump.
	Config metadata.ContainerConfig
	// SpecFile is the container's OCI spec (the bundle's config.json),
	// kept as spec.dump.
	SpecFile string
	// ImageDir holds CRIU's images, kept under checkpoint/; its
	// stats-dump is also put at the top, where checkpointctl reads it.
	ImageDir string
	// UpperDir is the overlay upper dir of the container's writable
	// layer: its changes become rootfs-diff.tar, its whiteouts
	// deleted.files.
	UpperDir string
	// LogFile is the container's CRI log; "" or a missing file: none.
	LogFile string
}

// WriteArchive writes c as an uncompressed tar at path. The archive appears
// whole or not at all: it is written next to path and renamed there. work is
// CRIU's work dir, which also takes the rootfs diff. ctx bounds the whole
// write.
func WriteArchive(ctx context.Context, path, work string, c Container) (retErr error) {
	diff, deleted, err := writeRootfsDiff(ctx, c.UpperDir, filepath.Join(work, metadata.RootFsDiffTar))
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create checkpoint archive: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	config, err := json.MarshalIndent(c.Config, "", "  ")
	if err != nil {
		return err
	}
	if err := addBytes(tw, metadata.ConfigDumpFile, config); err != nil {
		return err
	}
	if err := addFile(tw, metadata.SpecDumpFile, c.SpecFile); err != nil {
		return err
	}
	if len(deleted) > 0 {
		b, err := json.Marshal(deleted)
		if err != nil {
			return err
		}
		if err := addBytes(tw, metadata.DeletedFilesFile, b); err != nil {
			return err
		}
	}
	if err := addFile(tw, metadata.RootFsDiffTar, diff); err != nil {
		return err
	}
	// CRIU writes its statistics into its work dir when it has one (runc
	// gives it one), else beside the images.
	for _, stats := range []string{filepath.Join(work, statsDump), filepath.Join(c.ImageDir, statsDump)} {
		if _, err := os.Stat(stats); err == nil {
			if err := addFile(tw, statsDump, stats); err != nil {
				return err
			}
			break
		}
	}
	if c.LogFile != "" {
		if _, err := os.Stat(c.LogFile); err == nil {
			if err := addFile(tw, LogFile, c.LogFile); err != nil {
				return err
			}
		}
	}
	if err := addTree(ctx, tw, c.ImageDir, metadata.CheckpointDirectory); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write checkpoint archive: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write checkpoint archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write checkpoint archive: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write checkpoint archive: %w", err)
	}
	return nil
}

func addBytes(tw *tar.Writer, name string, b []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: time.Now(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// addFile adds the regular file at src as name.
func addFile(tw *tar.Writer, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("write %s: %s is not a regular file", name, src)
	}
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	// A log still being written may grow: copy exactly what the header says.
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// addTree adds dir's regular files and directories under prefix (CRIU's
// image dir holds nothing else).
func addTree(ctx context.Context, tw *tar.Writer, dir, prefix string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: 0o700, Typeflag: tar.TypeDir, ModTime: time.Now()})
		case d.Type().IsRegular():
			return addFile(tw, name, p)
		}
		return fmt.Errorf("write checkpoint: %s: %w", p, errors.ErrUnsupported)
	})
}
