package store

import (
	"path/filepath"
	"testing"
)

// BenchmarkUpdate is the cost of one durable write: every step of a pod or
// container create records itself this way.
func BenchmarkUpdate(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rec := struct {
		ID     string
		Config []byte
	}{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", make([]byte, 600)}
	b.ResetTimer()
	for b.Loop() {
		if err := s.Update(func(tx *Tx) error { return tx.Put("bench", rec.ID, rec) }); err != nil {
			b.Fatal(err)
		}
	}
}
