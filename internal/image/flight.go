package image

import (
	"context"
	"sync"
)

// flights runs one piece of work per key however many callers ask for it.
// Unlike x/sync/singleflight the work runs on its own context, cancelled only
// when every caller waiting for it has gone: one impatient kubelet request
// must not fail a download that others still wait for.
type flights[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*flight[V]
}

type flight[V any] struct {
	done    chan struct{}
	val     V
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Do returns the result of fn for key, starting fn unless a call for key is
// already running. If ctx ends first, Do returns ctx's error.
func (f *flights[K, V]) Do(ctx context.Context, key K, fn func(context.Context) (V, error)) (V, error) {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[K]*flight[V]{}
	}
	fl, ok := f.m[key]
	if !ok {
		workCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl = &flight[V]{done: make(chan struct{}), cancel: cancel}
		f.m[key] = fl
		go func() {
			fl.val, fl.err = fn(workCtx)
			cancel()
			f.mu.Lock()
			delete(f.m, key)
			f.mu.Unlock()
			close(fl.done)
		}()
	}
	fl.waiters++
	f.mu.Unlock()

	select {
	case <-fl.done:
		return fl.val, fl.err
	case <-ctx.Done():
		f.mu.Lock()
		fl.waiters--
		if fl.waiters == 0 {
			fl.cancel()
		}
		f.mu.Unlock()
		var zero V
		return zero, ctx.Err()
	}
}
