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
// not delivered; call ExitStatus for known containers at start-up.
func (r *Runtime) Exits() <-chan string {
	return r.exits.out
}

// exitWatcher turns fsnotify events on the exit dir into container IDs.
type exitWatcher struct {
	w    *fsnotify.Watcher
	out  chan string
	done chan struct{}
}

func newExitWatcher(dir string, isContainer func(string) bool, log *slog.Logger) (*exitWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch exit dir: %w", err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch exit dir %s: %w", dir, err)
	}
	ew := &exitWatcher{w: w, out: make(chan string, 64), done: make(chan struct{})}
	go ew.run(isContainer, log)
	return ew, nil
}

func (ew *exitWatcher) run(isContainer func(string) bool, log *slog.Logger) {
	defer close(ew.done)
	var queue []string
	for {
		var out chan string
		var next string
		if len(queue) > 0 {
			out, next = ew.out, queue[0]
		}
		select {
		case ev, ok := <-ew.w.Events:
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
			queue = append(queue, id)
		case err, ok := <-ew.w.Errors:
			if !ok {
				return
			}
			// An overflow loses events; callers re-check ExitStatus on
			// their own schedule, so just report it.
			log.Error("exit dir watcher", "err", err)
		case out <- next:
			queue[0] = ""
			queue = queue[1:]
		}
	}
}

func (ew *exitWatcher) close() error {
	err := ew.w.Close()
	<-ew.done
	if errors.Is(err, fsnotify.ErrClosed) {
		return nil
	}
	return err
}
