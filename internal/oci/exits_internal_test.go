package oci

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// TestRescanOnWatcherError feeds the exit watcher a fake overflow and checks
// that Rescans is signalled, coalesced, and that exits still flow.
func TestRescanOnWatcherError(t *testing.T) {
	r, _ := newFakeRuntime(t)
	events := make(chan fsnotify.Event)
	errs := make(chan error)
	ew := startExitWatcher(events, errs, func(id string) bool { return id == "c1" }, r.requestRescan, slog.Default())
	defer func() {
		close(events)
		ew.close()
	}()

	errs <- fsnotify.ErrEventOverflow
	select {
	case <-r.Rescans():
	case <-time.After(waitBound):
		t.Fatal("no rescan signal after a watcher error")
	}

	// Several errors before the reader looks: one signal. Each send is
	// received by the watcher; an exit event after them is handled after
	// them, so once it is delivered all errors were seen.
	for range 3 {
		errs <- errors.New("injected")
	}
	events <- fsnotify.Event{Name: "/exits/c1", Op: fsnotify.Create}
	select {
	case id := <-ew.queue.out:
		if id != "c1" {
			t.Errorf("exit = %q, want c1", id)
		}
	case <-time.After(waitBound):
		t.Fatal("exit not delivered after watcher errors")
	}
	select {
	case <-r.Rescans():
	default:
		t.Fatal("no rescan signal after three errors")
	}
	select {
	case <-r.Rescans():
		t.Error("rescan signals not coalesced")
	default:
	}
}
