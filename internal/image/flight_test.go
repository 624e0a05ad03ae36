package image

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlightsShareWork(t *testing.T) {
	var f flights[string, int]
	var runs atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := f.Do(context.Background(), "k", func(context.Context) (int, error) {
				runs.Add(1)
				<-release
				return 42, nil
			})
			if v != 42 || err != nil {
				t.Errorf("got %d, %v", v, err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if runs.Load() != 1 {
		t.Fatalf("work ran %d times", runs.Load())
	}
}

func TestFlightsCancelWhenAllWaitersLeave(t *testing.T) {
	var f flights[string, int]
	cancelled := make(chan struct{})
	work := func(ctx context.Context) (int, error) {
		<-ctx.Done()
		close(cancelled)
		return 0, ctx.Err()
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, err := f.Do(ctx1, "k", work); errs <- err }()
	time.Sleep(10 * time.Millisecond)
	go func() { _, err := f.Do(ctx2, "k", work); errs <- err }()
	time.Sleep(10 * time.Millisecond)

	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first waiter: %v", err)
	}
	select {
	case <-cancelled:
		t.Fatal("work cancelled while a waiter remained")
	case <-time.After(20 * time.Millisecond):
	}
	cancel2()
	<-errs
	select {
	case <-cancelled:
	case <-time.After(time.Second):
		t.Fatal("work not cancelled after the last waiter left")
	}
}
