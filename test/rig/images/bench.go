package images

import (
	"fmt"
	"math/rand/v2"
	"sync"
)

// Bench image geometry: 5 layers x 4 files x 5 MiB = 100 MiB of tar.
const (
	benchLayers        = 5
	benchFilesPerLayer = 4
	benchFileSize      = 5 << 20
)

// bench builds BenchImage. Content comes from a fixed-seed ChaCha8 stream,
// so it is reproducible yet incompressible: the pull cost is the network and
// gunzip, not a lucky compression ratio. Layers compress in parallel.
func (b *builder) bench() error {
	layers := make([]Layer, benchLayers)
	errs := make([]error, benchLayers)
	var wg sync.WaitGroup
	for i := range benchLayers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seed [32]byte
			copy(seed[:], fmt.Sprintf("crid-bench-layer-%d", i))
			rng := rand.NewChaCha8(seed)
			fs := NewFS()
			for j := range benchFilesPerLayer {
				data := make([]byte, benchFileSize)
				_, _ = rng.Read(data)
				fs.File(fmt.Sprintf("/bench/layer%d/file%d.bin", i, j), 0o644, data)
			}
			layers[i], errs[i] = b.layer(fs, Gzip)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("bench layer: %w", err)
		}
	}
	img := Image{Format: Docker, Layers: layers, Config: busyboxConfig(BenchImage, "/bin/false")}
	_, err := b.set.AddImage("docker.io/library/crid-bench", img, "5layers")
	return err
}
