package oci

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Exit is a container's exit as recorded by its monitor.
type Exit struct {
	// Code is the exit code; 128+n for a death by signal n.
	Code int32
	// At is when the monitor wrote the exit file, right after the exit.
	At time.Time
	// OOMKilled is set when the container's cgroup had an OOM kill.
	OOMKilled bool
}

// ExitStatus reads the container's exit file. It reports false while the
// container has not exited (or its monitor died without writing one).
func (r *Runtime) ExitStatus(id string) (Exit, bool) {
	if validID(id) != nil {
		return Exit{}, false
	}
	path := filepath.Join(r.exitDir, id)
	b, err := os.ReadFile(path)
	if err != nil {
		return Exit{}, false
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Exit{}, false
	}
	code, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		r.log.Warn("bad exit file", "container", id, "content", string(b))
		code = -1
	}
	_, oomErr := os.Stat(filepath.Join(r.containerDir(id), "oom"))
	return Exit{Code: int32(code), At: fi.ModTime(), OOMKilled: oomErr == nil}, true
}

// Exits delivers the IDs of containers whose exit file appeared. The
// watcher never blocks on a slow reader: IDs queue up without bound
// (one per container exit). Exits that happened while crid was down are
// not delivered; call ExitStatus for known containers at start-up. Exits
// can also be missed while running (an inotify queue overflow): Rescans
// says when.
func (r *Runtime) Exits() <-chan string {
	return r.exits.queue.out
}

// Rescans receives a value when exits or monitor ends may have been missed:
// the exit dir watcher reported an error (such as an inotify overflow) or
// the monitor watcher broke. The caller then re-reads ExitStatus (and
// MonitorAlive) of every container it believes live. Signals coalesce: one
// value stands for every miss since the last receive, and the watchers
// never wait for the reader.
func (r *Runtime) Rescans() <-chan struct{} {
	return r.rescans
}

// requestRescan signals Rescans without blocking.
func (r *Runtime) requestRescan() {
	select {
	case r.rescans <- struct{}{}:
	default: // one is pending already
	}
}

// exitWatcher turns fsnotify events on the exit dir into container IDs.
type exitWatcher struct {
	w     *fsnotify.Watcher // nil in tests that feed events themselves
	queue *idQueue          // never blocks the watcher on a slow reader
	done  chan struct{}
}

func newExitWatcher(dir string, isContainer func(string) bool, rescan func(), log *slog.Logger) (*exitWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch exit dir: %w", err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch exit dir %s: %w", dir, err)
	}
	ew := startExitWatcher(w.Events, w.Errors, isContainer, rescan, log)
	ew.w = w
	return ew, nil
}

// startExitWatcher serves events and errs until either is closed; tests
// inject their own.
func startExitWatcher(events <-chan fsnotify.Event, errs <-chan error, isContainer func(string) bool, rescan func(), log *slog.Logger) *exitWatcher {
	ew := &exitWatcher{queue: newIDQueue(), done: make(chan struct{})}
	go ew.run(events, errs, isContainer, rescan, log)
	return ew
}

func (ew *exitWatcher) run(events <-chan fsnotify.Event, errs <-chan error, isContainer func(string) bool, rescan func(), log *slog.Logger) {
	defer close(ew.done)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			// conmon writes <id>.XXXXXX and renames it to <id>: the
			// rename shows up as Create of the final name. Temporary
			// names have no state dir and are skipped.
			if !ev.Has(fsnotify.Create) {
				continue
			}
			id := filepath.Base(ev.Name)
			if !isContainer(id) {
				continue
			}
			log.Debug("container exited", "container", id)
			ew.queue.push(id)
		case err, ok := <-errs:
			if !ok {
				return
			}
			// An overflow loses events: have the caller re-check.
			log.Error("exit dir watcher, asking for a rescan", "err", err)
			rescan()
		}
	}
}

func (ew *exitWatcher) close() error {
	var err error
	if ew.w != nil {
		err = ew.w.Close()
	}
	<-ew.done
	ew.queue.close()
	if errors.Is(err, fsnotify.ErrClosed) {
		return nil
	}
	return err
}
