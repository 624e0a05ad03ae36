// Package ids makes and resolves the IDs of pods and containers: 64 random
// hex digits, as the kubelet expects of runtimes, and lookups that accept a
// unique prefix, as crictl users type them.
package ids

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// New returns a random 64-hex-digit ID.
func New() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Find returns the entry of m whose ID is id or, failing that, the only one
// whose ID starts with it. Entries for which visible is false are skipped in
// prefix matches. kind names the object in errors ("pod sandbox").
func Find[T any](m map[string]*T, id, kind string, visible func(*T) bool) (*T, error) {
	if id == "" {
		return nil, fmt.Errorf("%s ID is empty: %w", kind, errdefs.ErrInvalidArgument)
	}
	if v, ok := m[id]; ok {
		return v, nil
	}
	var found *T
	for k, v := range m {
		if strings.HasPrefix(k, id) && visible(v) {
			if found != nil {
				return nil, fmt.Errorf("%s ID prefix %q is ambiguous: %w", kind, id, errdefs.ErrInvalidArgument)
			}
			found = v
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s %q: %w", kind, id, errdefs.ErrNotFound)
	}
	return found, nil
}

// Locks serialises the operations on one object at a time, by ID, while
// operations on different objects run in parallel.
type Locks struct{ m sync.Map }

// Lock takes id's lock and returns the function that releases it.
func (l *Locks) Lock(id string) (unlock func()) {
	v, _ := l.m.LoadOrStore(id, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Forget drops id's lock once the object is gone.
func (l *Locks) Forget(id string) { l.m.Delete(id) }
