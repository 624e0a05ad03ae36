package images

import (
	"bytes"
	"compress/gzip"
	"fmt"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression of a layer blob. The rig mixes all three so crid's puller is
// exercised on each.
type Compression int

const (
	Gzip Compression = iota
	Zstd
	Uncompressed
)

// Format selects the manifest/config/layer media types of an image.
type Format int

const (
	Docker Format = iota // Docker image manifest v2 schema 2 / manifest list
	OCI                  // OCI image manifest / image index
)

// Media types for Docker schema 2; OCI ones come from image-spec.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Layer is a compressed layer blob plus what a manifest and config need to
// describe it.
type Layer struct {
	Blob        []byte
	Digest      digest.Digest // of Blob
	DiffID      digest.Digest // of the uncompressed tar
	Compression Compression
}

// NewLayer compresses a tar. Both compressors are deterministic for a given
// input and library version, which the reproducibility test checks.
func NewLayer(tarball []byte, c Compression) (Layer, error) {
	var blob []byte
	switch c {
	case Gzip:
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		if err != nil {
			return Layer{}, fmt.Errorf("gzip writer: %w", err)
		}
		if _, err := zw.Write(tarball); err != nil {
			return Layer{}, fmt.Errorf("gzip layer: %w", err)
		}
		if err := zw.Close(); err != nil {
			return Layer{}, fmt.Errorf("gzip layer: %w", err)
		}
		blob = buf.Bytes()
	case Zstd:
		// One goroutine: concurrent encoding may split blocks differently.
		zw, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return Layer{}, fmt.Errorf("zstd writer: %w", err)
		}
		blob = zw.EncodeAll(tarball, nil)
		if err := zw.Close(); err != nil {
			return Layer{}, fmt.Errorf("zstd layer: %w", err)
		}
	case Uncompressed:
		blob = tarball
	default:
		return Layer{}, fmt.Errorf("unknown compression %d", c)
	}
	return Layer{
		Blob:        blob,
		Digest:      digest.FromBytes(blob),
		DiffID:      digest.FromBytes(tarball),
		Compression: c,
	}, nil
}

// mediaType of the layer in a manifest of format f. Docker schema 2 has no
// zstd or plain-tar type that clients agree on, so those need OCI.
func (l Layer) mediaType(f Format) (string, error) {
	switch {
	case f == Docker && l.Compression == Gzip:
		return MediaTypeDockerLayerGzip, nil
	case f == Docker:
		return "", fmt.Errorf("docker schema 2 manifests carry only gzip layers")
	case l.Compression == Gzip:
		return ocispec.MediaTypeImageLayerGzip, nil
	case l.Compression == Zstd:
		return ocispec.MediaTypeImageLayerZstd, nil
	default:
		return ocispec.MediaTypeImageLayer, nil
	}
}
