package layer

import (
	"archive/tar"
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

var benchLayer = sync.OnceValues(func() ([]byte, error) { return makeBenchLayer() })

// makeBenchLayer builds a tar shaped like a typical distro/runtime layer:
// many small text files, some binaries-like incompressible files, some large
// compressible ones. About 230 MB uncompressed, about 100 MB gzipped.
func makeBenchLayer() ([]byte, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := make([]string, 2000)
	for i := range words {
		b := make([]byte, 3+rng.IntN(8))
		for j := range b {
			b[j] = byte('a' + rng.IntN(26))
		}
		words[i] = string(b)
	}
	text := func(n int) []byte {
		var sb strings.Builder
		for sb.Len() < n {
			sb.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(12) == 0 {
				sb.WriteByte('\n')
			} else {
				sb.WriteByte(' ')
			}
		}
		return []byte(sb.String()[:n])
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, body []byte) error {
		return writeEntry(tw, &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: testMtime}, body)
	}
	for d := range 50 {
		if err := writeEntry(tw, &tar.Header{Name: fmt.Sprintf("usr/share/d%02d/", d), Typeflag: tar.TypeDir, Mode: 0o755, ModTime: testMtime}, nil); err != nil {
			return nil, err
		}
	}
	for i := range 5000 { // small config/doc/script files
		if err := add(fmt.Sprintf("usr/share/d%02d/f%05d.txt", i%50, i), text(1024+rng.IntN(8<<10))); err != nil {
			return nil, err
		}
	}
	for i := range 80 { // shared objects: barely compressible
		if err := add(fmt.Sprintf("usr/lib/lib%03d.so", i), random(800<<10+rng.IntN(400<<10))); err != nil {
			return nil, err
		}
	}
	for i := range 40 { // big compressible files
		if err := add(fmt.Sprintf("usr/lib/data/blob%02d.dat", i), text(3<<20+rng.IntN(1<<20))); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeEntry(tw *tar.Writer, hdr *tar.Header, body []byte) error {
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}

// BenchmarkApply reports MB/s of compressed input (the -bench column) and
// of uncompressed tar ("tarMB/s"). The decode-only sub-benchmarks show the
// ceiling the producer goroutine could reach on its own.
func BenchmarkApply(b *testing.B) {
	raw, err := benchLayer()
	if err != nil {
		b.Fatal(err)
	}
	gz := gzipBytes(b, raw)
	zs := zstdBytes(b, raw)
	diffID := digest.FromBytes(raw)
	b.Logf("layer: %.1f MB tar, %.1f MB gzip, %.1f MB zstd", mb(len(raw)), mb(len(gz)), mb(len(zs)))

	for _, tc := range []struct {
		name string
		blob []byte
	}{{"gzip", gz}, {"zstd", zs}, {"tar", raw}} {
		b.Run("apply/"+tc.name, func(b *testing.B) {
			requireRoot(b)
			parent := b.TempDir()
			b.SetBytes(int64(len(tc.blob)))
			var elapsed time.Duration
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				dir := filepath.Join(parent, fmt.Sprint(i))
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if _, err := Apply(context.Background(), dir, bytes.NewReader(tc.blob), diffID); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				b.StopTimer()
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(mb(len(raw)*b.N)/elapsed.Seconds(), "tarMB/s")
		})
	}

	decode := func(b *testing.B, blob []byte, open func(io.Reader) (io.Reader, error)) {
		b.SetBytes(int64(len(blob)))
		for b.Loop() {
			r, err := open(bytes.NewReader(blob))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("decode/klauspost-gzip", func(b *testing.B) {
		decode(b, gz, func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) })
	})
	b.Run("decode/stdlib-gzip", func(b *testing.B) {
		decode(b, gz, func(r io.Reader) (io.Reader, error) { return stdgzip.NewReader(r) })
	})
	b.Run("decode/zstd", func(b *testing.B) {
		decode(b, zs, func(r io.Reader) (io.Reader, error) { return decompress(r) })
	})
	b.Run("sha256-of-tar", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			_ = sha256.Sum256(raw)
		}
	})
}

func mb(n int) float64 { return float64(n) / 1e6 }
