package layer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var (
	gzipMagic = []byte{0x1f, 0x8b, 0x08} // ID1, ID2, CM=deflate
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// zstdMaxWindow is the largest zstd window we allocate for. It is the zstd
// CLI's default decompression limit (--memory=128MB), so any layer the
// reference tool decodes without extra flags decodes here, while a hostile
// frame header cannot make us allocate the library maximum.
const zstdMaxWindow = 1 << 27

// decompress detects the compression of r by its magic bytes and returns a
// reader of the uncompressed tar stream.
//
// We decode in-process with klauspost/compress rather than through
// go-archive's DecompressStream: that one uses the standard library's gzip
// (slower) or, when an unpigz binary is in $PATH, a subprocess whose presence
// changes behaviour by host and whose failures surface as pipe errors.
func decompress(r io.Reader) (io.ReadCloser, error) {
	// The gzip and zstd decoders read through a ByteReader when given one,
	// so this buffer is also their input buffer.
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(8)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read layer header: %w", err)
	}

	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzip stream: %w", err)
		}
		return zr, nil
	case isZstd(magic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, fmt.Errorf("open zstd stream: %w", err)
		}
		return zr.IOReadCloser(), nil
	default:
		// Anything else is taken as a plain tar: a wrong guess fails in the
		// tar reader or the digest check, never silently.
		return io.NopCloser(br), nil
	}
}

// isZstd reports a zstd frame or a zstd skippable frame (magic
// 0x184D2A50..0x184D2A5F), which may precede the first data frame.
func isZstd(b []byte) bool {
	if bytes.HasPrefix(b, zstdMagic) {
		return true
	}
	return len(b) >= 4 && binary.LittleEndian.Uint32(b)&0xFFFFFFF0 == 0x184D2A50
}
