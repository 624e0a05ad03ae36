package names

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestReserve(t *testing.T) {
	ctx := context.Background()
	r := New()
	res, existing, err := r.Reserve(ctx, "a", "id1")
	if err != nil || existing != "" {
		t.Fatal(existing, err)
	}

	// A retry while the first create runs waits for its result.
	got := make(chan string)
	go func() {
		_, id, err := r.Reserve(ctx, "a", "id2")
		if err != nil {
			t.Error(err)
		}
		got <- id
	}()
	time.Sleep(10 * time.Millisecond)
	res.Done(nil, false)
	if id := <-got; id != "id1" {
		t.Fatalf("retry got %q", id)
	}

	// Once claimed, a new create of the name is an error naming the holder.
	if _, _, err := r.Reserve(ctx, "a", "id3"); !errdefs.IsAlreadyExists(err) || !contains(err.Error(), "id1") {
		t.Fatalf("taken name: %v", err)
	}
	r.Release("a", "id1")
	if _, _, err := r.Reserve(ctx, "a", "id4"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestFinishedAfterCallerGone(t *testing.T) {
	ctx := context.Background()
	r := New()
	res, _, _ := r.Reserve(ctx, "b", "id1")
	res.Done(nil, true)
	if _, id, err := r.Reserve(ctx, "b", "id2"); err != nil || id != "id1" {
		t.Fatalf("retry after caller gone: %q %v", id, err)
	}
	if _, _, err := r.Reserve(ctx, "b", "id3"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second retry: %v", err)
	}
}

func TestFailedCreateReleases(t *testing.T) {
	ctx := context.Background()
	r := New()
	res, _, _ := r.Reserve(ctx, "c", "id1")
	waiter := make(chan error)
	go func() {
		res2, _, err := r.Reserve(ctx, "c", "id2")
		if res2 != nil {
			res2.Done(nil, false)
		}
		waiter <- err
	}()
	time.Sleep(10 * time.Millisecond)
	res.Done(errors.New("boom"), false)
	if err := <-waiter; err != nil {
		t.Fatalf("waiter after failed create: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
