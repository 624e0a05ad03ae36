package ids

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
)

func TestNew(t *testing.T) {
	a, b := New(), New()
	if len(a) != 64 || a == b {
		t.Fatalf("%q %q", a, b)
	}
}

func TestFind(t *testing.T) {
	type rec struct{ hidden bool }
	m := map[string]*rec{"abc1": {}, "abc2": {}, "def": {}, "dee": {hidden: true}}
	visible := func(r *rec) bool { return !r.hidden }
	for _, tc := range []struct {
		id   string
		want *rec
		err  func(error) bool
	}{
		{"abc1", m["abc1"], nil},
		{"d", m["def"], nil}, // "dee" is hidden from prefix matches
		{"dee", m["dee"], nil},
		{"abc", nil, errdefs.IsInvalidArgument},
		{"", nil, errdefs.IsInvalidArgument},
		{"x", nil, errdefs.IsNotFound},
	} {
		got, err := Find(m, tc.id, "thing", visible)
		if tc.err != nil {
			if !tc.err(err) {
				t.Errorf("%q: err %v", tc.id, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %v %v", tc.id, got, err)
		}
	}
}

func TestLocksExclusiveAndShared(t *testing.T) {
	var l Locks
	unlock := l.Lock("a")
	if _, ok := l.TryLock("a"); ok {
		t.Fatal("TryLock took a held lock")
	}
	other, ok := l.TryLock("b")
	if !ok {
		t.Fatal("TryLock of another ID failed")
	}
	other()
	got := make(chan struct{})
	go func() {
		r := l.RLock("a") // waits for the exclusive holder
		close(got)
		r()
	}()
	select {
	case <-got:
		t.Fatal("RLock did not wait for Lock")
	default:
	}
	unlock()
	<-got
	r1, r2 := l.RLock("a"), l.RLock("a") // shared holders run together
	if _, ok := l.TryLock("a"); ok {
		t.Fatal("TryLock took a lock held shared")
	}
	r1()
	r2()
	r2() // a second release is a no-op
	if n := l.held(); n != 0 {
		t.Fatalf("%d lock entries left after every release", n)
	}
}

// The last release drops the entry, never one that another goroutine
// holds or waits for: a waiter still excludes a third party.
func TestLocksNoReleaseRace(t *testing.T) {
	var l Locks
	var wg sync.WaitGroup
	var inside atomic.Int32
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := l.Lock("x")
			if n := inside.Add(1); n != 1 {
				t.Errorf("%d holders of one lock", n)
			}
			inside.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if n := l.held(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}

// held reports how many lock entries exist.
func (l *Locks) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
