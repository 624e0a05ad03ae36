package layer

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// FuzzApply feeds arbitrary bytes as a layer. Nothing may panic, hang or
// write beside the layer dir. The diffID is the input's own digest so that
// uncompressed inputs get past verification and reach the unpacker.
func FuzzApply(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("needs root")
	}
	f.Add(makeTar(f, file("a/b", "x"), symlink("s", "/"), file("s/etc/x", "y"), hardlink("h", "a/b")))
	f.Add(makeTar(f, symlink("up", ".."), file("up/sentinel", "pwned"), file("../sentinel", "p")))
	f.Add(makeTar(f, dirent("d/"), file("d/.wh..wh..opq", ""), file("d/.wh.f", ""), file(".wh..wh.plnk/1", "")))
	f.Add(makeTar(f, entry{name: "p", typ: 'p'}, file("p/.wh.x", "")))
	f.Add(gzipBytes(f, makeTar(f, file("g", "z"))))
	f.Add(zstdBytes(f, makeTar(f, file("z", "z"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = Apply(ctx, s.dir, bytes.NewReader(data), digest.FromBytes(data))
		}()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("Apply hung")
		}
		s.checkOutside(t)
	})
}
