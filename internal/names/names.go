// Package names reserves the names of pods and containers so that two
// creates of one name cannot both succeed, and so that the kubelet's retry of
// a create that timed out on its side gets the result of the first attempt
// instead of a "name is reserved" error: the create may still be running,
// or may have finished after the kubelet gave up (CRI-O's resourcestore
// solves the same problem).
package names

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
)

// Registry maps names to the IDs that hold them.
type Registry struct {
	mu    sync.Mutex
	names map[string]*entry
}

type entry struct {
	id string
	// done is closed when the create holding the name finished; until then
	// a retry waits for it.
	done chan struct{}
	err  error
	// unclaimed is set when the create succeeded after its caller had gone:
	// the next request for the name gets the ID.
	unclaimed bool
}

// New returns an empty registry.
func New() *Registry { return &Registry{names: map[string]*entry{}} }

// Load records a name held by an existing object (at start-up).
func (r *Registry) Load(name, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	done := make(chan struct{})
	close(done)
	r.names[name] = &entry{id: id, done: done}
}

// Reservation is a name held by a create in progress.
type Reservation struct {
	r    *Registry
	name string
	e    *entry
}

// Reserve takes name for id. If the name is taken by a create in flight, it
// waits for that create (or ctx) and returns its ID with existing=true when
// it succeeded; if it was taken by a finished create whose caller had gone,
// it returns that ID with existing=true. Otherwise a taken name is an
// AlreadyExists error naming the holder.
func (r *Registry) Reserve(ctx context.Context, name, id string) (res *Reservation, existingID string, err error) {
	for {
		r.mu.Lock()
		e, ok := r.names[name]
		if !ok {
			e = &entry{id: id, done: make(chan struct{})}
			r.names[name] = e
			r.mu.Unlock()
			return &Reservation{r: r, name: name, e: e}, "", nil
		}
		select {
		case <-e.done:
			defer r.mu.Unlock()
			if e.unclaimed {
				e.unclaimed = false
				return nil, e.id, nil
			}
			return nil, "", fmt.Errorf("name %q is reserved for %s: %w", name, e.id, errdefs.ErrAlreadyExists)
		default:
		}
		r.mu.Unlock()
		select {
		case <-e.done:
			if e.err != nil {
				continue // the first attempt failed and released the name: try again
			}
			r.mu.Lock()
			e.unclaimed = false
			r.mu.Unlock()
			return nil, e.id, nil
		case <-ctx.Done():
			return nil, "", fmt.Errorf("waiting for the create holding name %q: %w", name, ctx.Err())
		}
	}
}

// Done ends the create: on failure the name is released; on success it stays
// held, and if callerGone the next request for the name claims the result.
func (res *Reservation) Done(err error, callerGone bool) {
	res.r.mu.Lock()
	defer res.r.mu.Unlock()
	res.e.err = err
	if err != nil {
		if res.r.names[res.name] == res.e {
			delete(res.r.names, res.name)
		}
	} else {
		res.e.unclaimed = callerGone
	}
	close(res.e.done)
}

// Release frees name if id holds it (the object was removed).
func (r *Registry) Release(name, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.names[name]; ok && e.id == id {
		delete(r.names, name)
	}
}
