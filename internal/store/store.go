// Package store owns crid's persistent metadata: one bbolt database under the
// root directory. Every change goes through Update, one transaction, so a
// crash mid-write leaves the previous state. Values are JSON: readable with
// `bbolt` tools when debugging, and cheap enough at the sizes crid keeps.
package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// Store is the metadata database.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the database at path. A second crid on the
// same root fails after a short wait instead of hanging on the file lock.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create store dir: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Update runs fn in one read-write transaction: all its writes land or none.
func (s *Store) Update(fn func(*Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Tx is a transaction over named buckets of JSON values.
type Tx struct {
	tx *bolt.Tx
}

// Get decodes the value at bucket/key into v, or returns an error wrapping
// errdefs.ErrNotFound.
func (t *Tx) Get(bucket, key string, v any) error {
	raw := t.raw(bucket, key)
	if raw == nil {
		return fmt.Errorf("%s %q: %w", bucket, key, errdefs.ErrNotFound)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s %q: %w", bucket, key, err)
	}
	return nil
}

// Has reports whether bucket/key exists.
func (t *Tx) Has(bucket, key string) bool { return t.raw(bucket, key) != nil }

func (t *Tx) raw(bucket, key string) []byte {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	return b.Get([]byte(key))
}

// Put stores v as JSON at bucket/key, creating the bucket if needed.
func (t *Tx) Put(bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %q: %w", bucket, key, err)
	}
	b, err := t.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	return b.Put([]byte(key), raw)
}

// Delete removes bucket/key; a missing key is not an error.
func (t *Tx) Delete(bucket, key string) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	return b.Delete([]byte(key))
}

// ForEach calls fn with every key and raw value of bucket, in key order.
func (t *Tx) ForEach(bucket string, fn func(key string, raw []byte) error) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

// List decodes every value of bucket.
func List[T any](t *Tx, bucket string) ([]T, error) {
	var out []T
	err := t.ForEach(bucket, func(key string, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode %s %q: %w", bucket, key, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
