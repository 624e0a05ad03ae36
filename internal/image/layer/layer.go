// Package layer applies one OCI image layer blob to an empty directory so that
// the directory can be used as an overlayfs lower layer.
//
// The work is split in two goroutines so that a pull uses both cores: a
// producer decompresses the blob, hashes the tar stream and re-encodes it
// through a safety filter (filter.go); the consumer is go-archive's Unpack,
// which does the file system work inside an os.Root.
package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/moby/go-archive"
	digest "github.com/opencontainers/go-digest"
)

// Usage is what an unpacked layer costs on disk.
type Usage struct {
	Bytes  int64
	Inodes int64
}

// errConsumerGone is how the consumer tells the producer to stop; the
// producer's resulting error is then not the cause of the failure.
var errConsumerGone = errors.New("layer unpack stopped")

// Apply reads a layer blob (gzip, zstd or uncompressed tar, detected by
// magic), unpacks it into dir (which must exist and be empty), converting
// whiteouts to overlayfs form, and verifies that the sha256 of the
// uncompressed tar stream equals diffID (the config's rootfs.diff_ids entry,
// "sha256:<hex>"). On any error the caller removes dir. Returns the disk usage
// of what was unpacked.
//
// Cancelling ctx stops the unpack at the next read of the stream. A read of
// blob that is blocked is not interrupted by Apply: blob should be a reader
// that honours the same context (e.g. the body of an HTTP request made with
// ctx).
func Apply(ctx context.Context, dir string, blob io.Reader, diffID digest.Digest) (Usage, error) {
	if err := diffID.Validate(); err != nil {
		return Usage{}, fmt.Errorf("layer diffID %q: %w", diffID, err)
	}
	if diffID.Algorithm() != digest.SHA256 {
		return Usage{}, fmt.Errorf("layer diffID %s: unsupported algorithm %s", diffID, diffID.Algorithm())
	}
	if err := ensureEmptyDir(dir); err != nil {
		return Usage{}, err
	}
	if err := ctx.Err(); err != nil {
		return Usage{}, fmt.Errorf("apply layer %s: %w", diffID, err)
	}

	dec, err := decompress(&ctxReader{ctx: ctx, r: blob})
	if err != nil {
		return Usage{}, fmt.Errorf("apply layer %s: %w", diffID, err)
	}

	pr, pw := io.Pipe()
	produced := make(chan error, 1)
	go func() {
		// The producer owns dec: closing it here, after the last read,
		// avoids closing a decoder that another goroutine is reading.
		err := produce(ctx, dec, pw, diffID)
		dec.Close()
		pw.CloseWithError(err)
		produced <- err
	}()

	unpackErr := archive.Unpack(pr, dir, &archive.TarOptions{
		WhiteoutFormat: archive.OverlayWhiteoutFormat,
	})
	pr.CloseWithError(errConsumerGone)
	prodErr := <-produced

	switch {
	case ctx.Err() != nil:
		return Usage{}, fmt.Errorf("apply layer %s: %w", diffID, ctx.Err())
	case prodErr != nil && !errors.Is(prodErr, errConsumerGone):
		// The producer's error is the root cause (bad compression, digest
		// mismatch, rejected entry); Unpack only saw it through the pipe.
		return Usage{}, fmt.Errorf("apply layer %s: %w", diffID, prodErr)
	case unpackErr != nil:
		return Usage{}, fmt.Errorf("apply layer %s: unpack: %w", diffID, unpackErr)
	case prodErr != nil:
		return Usage{}, fmt.Errorf("apply layer %s: %w", diffID, prodErr)
	}

	u, err := diskUsage(dir)
	if err != nil {
		return Usage{}, fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	return u, nil
}

// produce copies the filtered tar stream of dec into w, hashing every
// uncompressed byte, and returns an error if the digest is not diffID.
func produce(ctx context.Context, dec io.Reader, w io.Writer, diffID digest.Digest) error {
	digester := digest.SHA256.Digester()
	src := io.TeeReader(&ctxReader{ctx: ctx, r: dec}, digester.Hash())

	tw := tar.NewWriter(w)
	if err := newFilter().copy(ctx, tar.NewReader(src), tw); err != nil {
		return err
	}
	// Write the padding of the last entry but no end-of-archive marker:
	// the consumer stops at EOF of the pipe, which we only close after the
	// digest is known, so Unpack can never finish on an unverified stream.
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write tar stream: %w", err)
	}

	// Bytes after the tar end marker are part of the diffID too.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("read layer stream: %w", err)
	}
	if got := digester.Digest(); got != diffID {
		return fmt.Errorf("layer digest mismatch: uncompressed stream is %s, expected diffID %s", got, diffID)
	}
	return nil
}

// ensureEmptyDir fails unless dir is an existing, empty directory: applying
// on top of existing content would silently merge two layers.
func ensureEmptyDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open layer dir: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat layer dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("layer dir %s is not a directory", dir)
	}
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read layer dir: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("layer dir %s is not empty", dir)
	}
	return nil
}

// ctxReader fails reads once ctx is done, so a long unpack stops at its next
// read instead of running to the end of the blob.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
