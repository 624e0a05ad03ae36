package oci

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// errWatcherClosed is returned by WatchMonitor after Close.
var errWatcherClosed = errors.New("monitor watcher is closed")

// WatchMonitor makes MonitorExits deliver id once the container's monitor
// process ends. Create calls it for every container it creates; call it at
// start-up for the containers adopted from an earlier crid. If the monitor
// is already gone, id is delivered at once. Watching an ID again replaces
// its earlier watch, so it is delivered once. Each watch holds one pidfd
// until it fires, Forget or Close.
func (r *Runtime) WatchMonitor(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if !r.isContainer(id) {
		return fmt.Errorf("watch monitor of container %s: %w", id, errdefs.ErrNotFound)
	}
	if err := r.monitors.watch(id, func() (int, bool) { return r.MonitorPID(id) }); err != nil {
		return fmt.Errorf("watch monitor of container %s: %w", id, err)
	}
	return nil
}

// Forget drops the watch of id's monitor, including a delivery not yet
// received from MonitorExits. Delete calls it; forgetting an ID that is not
// watched does nothing.
func (r *Runtime) Forget(id string) {
	r.monitors.forget(id)
}

// MonitorExits delivers the IDs of watched containers (see WatchMonitor)
// whose monitor process ended. A monitor ends right after writing the exit
// file when the container exits, so read ExitStatus first: when there is
// none, the monitor died without recording an exit (OOM-killed, killed by
// an operator), the container may still run, and nothing will write its
// exit file any more. The watcher never blocks on a slow reader: IDs queue
// up without bound (at most one per watch).
func (r *Runtime) MonitorExits() <-chan string {
	return r.monitors.queue.out
}

// MonitorAlive reports whether the container's monitor still runs: the pid
// in its pid file is alive and still is this container's monitor.
func (r *Runtime) MonitorAlive(id string) bool {
	if validID(id) != nil {
		return false
	}
	_, ok := r.MonitorPID(id)
	return ok
}

// monitorWatcher learns when monitors end: one pidfd per watched monitor
// in one epoll set, served by one goroutine. The epoll fd is itself
// pollable, so that goroutine parks in Go's poller rather than a thread.
type monitorWatcher struct {
	ep     *os.File
	epfd   int // ep's fd: ep.Fd() would make it blocking
	queue  *idQueue
	failed func() // the watcher broke: the caller must re-check by itself
	log    *slog.Logger
	done   chan struct{}

	mu     sync.Mutex
	closed bool
	broken error // run stopped on this error: watches would never fire
	next   int32 // next epoll token
	byID   map[string]pidWatch
	byTok  map[int32]string
}

// pidWatch is one registered pidfd. The epoll event carries tok rather
// than the fd: an fd number can be reused right after a Forget, while
// events fetched before it are still being handled.
type pidWatch struct {
	fd  int
	tok int32
}

func newMonitorWatcher(log *slog.Logger, failed func()) (*monitorWatcher, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create monitor epoll set: %w", err)
	}
	// Non-blocking makes os.NewFile register it with Go's poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create monitor epoll set: %w", err)
	}
	w := &monitorWatcher{
		ep:     os.NewFile(uintptr(fd), "monitor-epoll"),
		epfd:   fd,
		queue:  newIDQueue(),
		failed: failed,
		log:    log,
		done:   make(chan struct{}),
		byID:   map[string]pidWatch{},
		byTok:  map[int32]string{},
	}
	go w.run()
	return w, nil
}

// watch registers the monitor pidOf reports. pidOf is asked again once the
// pidfd is open: the pid file may name a reused pid, and only a process
// still being the monitor after we hold its pidfd is the right one.
func (w *monitorWatcher) watch(id string, pidOf func() (int, bool)) error {
	fd := -1
	if pid, ok := pidOf(); ok {
		var err error
		fd, err = unix.PidfdOpen(pid, 0)
		switch {
		case errors.Is(err, unix.ESRCH):
			fd = -1
		case err != nil:
			return fmt.Errorf("pidfd_open %d: %w", pid, err)
		default:
			if again, ok := pidOf(); !ok || again != pid {
				unix.Close(fd)
				fd = -1
			}
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		if fd >= 0 {
			unix.Close(fd)
		}
		return errWatcherClosed
	}
	if w.broken != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return fmt.Errorf("monitor watcher stopped: %w", w.broken)
	}
	w.removeLocked(id)
	if fd < 0 {
		w.log.Warn("container monitor is gone", "container", id)
		w.queue.push(id)
		return nil
	}
	tok := w.allocTokLocked()
	// Level-triggered: a monitor that exited before the add fires at once.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: tok}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return fmt.Errorf("add pidfd to epoll set: %w", err)
	}
	w.byID[id] = pidWatch{fd: fd, tok: tok}
	w.byTok[tok] = id
	return nil
}

func (w *monitorWatcher) allocTokLocked() int32 {
	for {
		tok := w.next
		w.next++
		if _, used := w.byTok[tok]; !used {
			return tok
		}
	}
}

// removeLocked unregisters id's pidfd, if any.
func (w *monitorWatcher) removeLocked(id string) {
	pw, ok := w.byID[id]
	if !ok {
		return
	}
	delete(w.byID, id)
	delete(w.byTok, pw.tok)
	// Closing the pidfd also removes it from the epoll set.
	unix.Close(pw.fd)
}

func (w *monitorWatcher) forget(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(id)
	// Under mu, so that a delivery queued just before is dropped and a
	// later watch's delivery is not.
	w.queue.drop(id)
}

// fired handles an epoll event: the monitor behind tok exited.
func (w *monitorWatcher) fired(tok int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	id, ok := w.byTok[tok]
	if !ok {
		return // forgotten, or reported twice
	}
	w.removeLocked(id)
	w.log.Info("container monitor exited", "container", id)
	w.queue.push(id)
}

func (w *monitorWatcher) run() {
	defer close(w.done)
	rc, err := w.ep.SyscallConn()
	if err != nil {
		w.fail(err)
		return
	}
	events := make([]unix.EpollEvent, 64)
	for {
		var n int
		var waitErr error
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, waitErr = unix.EpollWait(int(fd), events, 0)
				if !errors.Is(waitErr, unix.EINTR) {
					break
				}
			}
			return n > 0 || waitErr != nil
		})
		if err == nil {
			err = waitErr
		}
		if err != nil {
			// Close makes Read fail (with an internal error value).
			if !w.isClosed() {
				w.fail(err)
			}
			return
		}
		for _, ev := range events[:n] {
			w.fired(ev.Fd)
		}
	}
}

func (w *monitorWatcher) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// fail reports a broken watcher; the caller falls back on re-checking
// MonitorAlive itself.
func (w *monitorWatcher) fail(err error) {
	w.mu.Lock()
	w.broken = err
	w.mu.Unlock()
	w.log.Error("monitor watcher stopped", "err", err)
	w.failed()
}

// close stops the goroutines and closes every pidfd. Safe to call twice.
func (w *monitorWatcher) close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	// Wakes run's Read with an error.
	err := w.ep.Close()
	<-w.done
	w.mu.Lock()
	for id := range w.byID {
		w.removeLocked(id)
	}
	w.mu.Unlock()
	w.queue.close()
	return err
}
