package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/crid-project/crid/internal/ids"
	"github.com/crid-project/crid/internal/names"
)

// Table is the record store of one kind of object (pod sandboxes,
// containers): its bucket in the database, the in-memory index that reads
// are served from, the per-object operation locks and the names the
// objects hold. Every change goes through Insert, Update or Delete, which
// persist first and publish after, so what a reader sees is always on
// disk.
type Table[T any] struct {
	db     *Store
	bucket string
	kind   string // names the object in errors: "pod sandbox"
	keys   Keys[T]

	mu      sync.RWMutex
	recs    map[string]*T
	changed map[string]chan struct{} // closed at the next change of the record

	// wmu makes each Update one read-modify-write: bbolt serialises its
	// writers anyway, so this costs no parallelism.
	wmu sync.Mutex

	locks ids.Locks
	names *names.Registry

	// recovering holds the records loaded at start that the reconciler
	// has yet to repair: they answer reads with their last known state,
	// and Unavailable to calls that would change them.
	recovering sync.Map
}

// Keys tell a Table what it needs to know of a record.
type Keys[T any] struct {
	ID   func(*T) string
	Name func(*T) string // the reserved name; "" holds none
}

// NewTable loads bucket's records. kind names the object in errors.
func NewTable[T any](db *Store, bucket, kind string, keys Keys[T]) (*Table[T], error) {
	t := &Table[T]{
		db: db, bucket: bucket, kind: kind, keys: keys,
		recs: map[string]*T{}, changed: map[string]chan struct{}{}, names: names.New(),
	}
	err := db.View(func(tx *Tx) error {
		all, err := List[T](tx, bucket)
		for i := range all {
			v := &all[i]
			t.recs[keys.ID(v)] = v
			if n := keys.Name(v); n != "" {
				t.names.Load(n, keys.ID(v))
			}
			t.recovering.Store(keys.ID(v), true)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load %s records: %w", kind, err)
	}
	return t, nil
}

// Get returns a copy of the record with exactly id.
func (t *Table[T]) Get(id string) (T, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	v, ok := t.recs[id]
	if !ok {
		var zero T
		return zero, false
	}
	return *v, true
}

// Find returns a copy of the record with id or, failing that, of the only
// one whose ID starts with it. Records for which visible is false are not
// found at all (half-made or internal objects).
func (t *Table[T]) Find(id string, visible func(*T) bool) (T, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var zero T
	v, err := ids.Find(t.recs, id, t.kind, visible)
	if err != nil {
		return zero, err
	}
	if !visible(v) {
		return zero, fmt.Errorf("%s %q: %w", t.kind, id, errdefs.ErrNotFound)
	}
	return *v, nil
}

// List returns copies of the records keep accepts (all with nil).
func (t *Table[T]) List(keep func(*T) bool) []T {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]T, 0, len(t.recs))
	for _, v := range t.recs {
		if keep == nil || keep(v) {
			out = append(out, *v)
		}
	}
	return out
}

// Insert records a new object.
func (t *Table[T]) Insert(v T) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	id := t.keys.ID(&v)
	t.mu.RLock()
	_, exists := t.recs[id]
	t.mu.RUnlock()
	if exists {
		return fmt.Errorf("%s %s: %w", t.kind, id, errdefs.ErrAlreadyExists)
	}
	return t.put(id, v)
}

// Update re-reads the record with id, lets fn change it and persists and
// publishes the result, all as one step against other changes of the
// table. fn's error (or a record that is gone: NotFound) changes nothing.
func (t *Table[T]) Update(id string, fn func(*T) error) (T, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	var zero T
	t.mu.RLock()
	cur, ok := t.recs[id]
	t.mu.RUnlock()
	if !ok {
		return zero, fmt.Errorf("%s %s: %w", t.kind, id, errdefs.ErrNotFound)
	}
	v := *cur
	if err := fn(&v); err != nil {
		return zero, err
	}
	if err := t.put(id, v); err != nil {
		return zero, err
	}
	return v, nil
}

func (t *Table[T]) put(id string, v T) error {
	if err := t.db.Update(func(tx *Tx) error { return tx.Put(t.bucket, id, &v) }); err != nil {
		return fmt.Errorf("record %s %s: %w", t.kind, id, err)
	}
	t.mu.Lock()
	t.recs[id] = &v
	t.notifyLocked(id)
	t.mu.Unlock()
	return nil
}

// Delete removes the record with id and releases its name. A missing
// record is not an error.
func (t *Table[T]) Delete(id string) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.RLock()
	cur, ok := t.recs[id]
	t.mu.RUnlock()
	if !ok {
		return nil
	}
	if err := t.db.Update(func(tx *Tx) error { return tx.Delete(t.bucket, id) }); err != nil {
		return fmt.Errorf("delete %s record %s: %w", t.kind, id, err)
	}
	name := t.keys.Name(cur)
	t.mu.Lock()
	delete(t.recs, id)
	t.notifyLocked(id)
	t.mu.Unlock()
	if name != "" {
		t.names.Release(name, id)
	}
	return nil
}

func (t *Table[T]) notifyLocked(id string) {
	if ch, ok := t.changed[id]; ok {
		close(ch)
		delete(t.changed, id)
	}
}

// Changed returns a channel closed at the next change (or deletion) of the
// record with id. Take it before reading the record, then wait on it, and
// no change is missed.
func (t *Table[T]) Changed(id string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch, ok := t.changed[id]
	if !ok {
		ch = make(chan struct{})
		if _, exists := t.recs[id]; !exists {
			close(ch)
			return ch
		}
		t.changed[id] = ch
	}
	return ch
}

// Recovered marks the record with id as repaired since the start.
func (t *Table[T]) Recovered(id string) { t.recovering.Delete(id) }

// Recovering counts the records not yet repaired since the start.
func (t *Table[T]) Recovering() int {
	n := 0
	t.recovering.Range(func(any, any) bool { n++; return true })
	return n
}

// CheckRecovered fails with Unavailable while the record with id has not
// been repaired since the start.
func (t *Table[T]) CheckRecovered(id string) error {
	if _, ok := t.recovering.Load(id); ok {
		return fmt.Errorf("%s %s is being recovered after a restart of crid; retry: %w", t.kind, id, errdefs.ErrUnavailable)
	}
	return nil
}

// TryLockGet takes the operation lock of the record with id if it is free
// and returns the record as it is under the lock (a repair skips objects
// that a request is working on).
func (t *Table[T]) TryLockGet(id string) (v T, unlock func(), ok bool) {
	unlock, ok = t.locks.TryLock(id)
	if !ok {
		return v, nil, false
	}
	if v, ok = t.Get(id); !ok {
		unlock()
		return v, nil, false
	}
	return v, unlock, true
}

// Lock takes the operation lock of the object with id: operations on one
// object (stop, remove, repair) run one at a time. Updates of its record
// do not take it, so an operation may update its record as it goes.
func (t *Table[T]) Lock(id string) (unlock func()) { return t.locks.Lock(id) }

// RLock takes the operation lock shared (creates of children of the
// object keep it from being stopped or removed meanwhile).
func (t *Table[T]) RLock(id string) (unlock func()) { return t.locks.RLock(id) }

// TryLock takes the operation lock if it is free.
func (t *Table[T]) TryLock(id string) (unlock func(), ok bool) { return t.locks.TryLock(id) }

// Reserve takes name for a create of id; see names.Registry.Reserve for
// what a retry of a create gets.
func (t *Table[T]) Reserve(ctx context.Context, name, id string) (*names.Reservation, string, error) {
	return t.names.Reserve(ctx, name, id)
}
