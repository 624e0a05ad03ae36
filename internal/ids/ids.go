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
// operations on different objects run in parallel. An entry lives while
// someone holds or waits for it, so there is nothing to forget: the last
// unlock drops it, and a lock can never be freed under another holder.
type Locks struct {
	mu sync.Mutex
	m  map[string]*lockEntry
}

type lockEntry struct {
	rw   sync.RWMutex
	refs int
}

func (l *Locks) ref(id string) *lockEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*lockEntry{}
	}
	e := l.m[id]
	if e == nil {
		e = &lockEntry{}
		l.m[id] = e
	}
	e.refs++
	return e
}

func (l *Locks) unref(id string, e *lockEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, id)
	}
}

// Lock takes id's lock exclusively and returns the function that releases it.
func (l *Locks) Lock(id string) (unlock func()) {
	e := l.ref(id)
	e.rw.Lock()
	return sync.OnceFunc(func() { e.rw.Unlock(); l.unref(id, e) })
}

// RLock takes id's lock shared: holders of RLock run together, and keep
// Lock holders out (creates in a pod keep the pod from being removed).
func (l *Locks) RLock(id string) (unlock func()) {
	e := l.ref(id)
	e.rw.RLock()
	return sync.OnceFunc(func() { e.rw.RUnlock(); l.unref(id, e) })
}

// TryLock takes id's lock if nobody holds it (the reconciler skips objects
// that a request is working on).
func (l *Locks) TryLock(id string) (unlock func(), ok bool) {
	e := l.ref(id)
	if !e.rw.TryLock() {
		l.unref(id, e)
		return nil, false
	}
	return sync.OnceFunc(func() { e.rw.Unlock(); l.unref(id, e) }), true
}
