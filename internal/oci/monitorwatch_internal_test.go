package oci

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// These tests need no root: the "monitors" are sleep processes of the test,
// reported by a fake Monitor.

const waitBound = 30 * time.Second

// fakeMonitor reports the pids set in it as the containers' monitors.
type fakeMonitor struct {
	mu   sync.Mutex
	pids map[string]int
}

func (f *fakeMonitor) Create(context.Context, MonitorRequest) (int, error) {
	return 0, errors.New("not implemented")
}
func (f *fakeMonitor) ReopenLog(context.Context, string, string) error { return nil }
func (f *fakeMonitor) AttachSocket(bundle string) string               { return filepath.Join(bundle, "attach") }

func (f *fakeMonitor) PID(_, id string) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pid, ok := f.pids[id]
	return pid, ok && processRunning(pid)
}

func (f *fakeMonitor) set(id string, pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pids[id] = pid
}

func newFakeRuntime(t *testing.T) (*Runtime, *fakeMonitor) {
	t.Helper()
	fm := &fakeMonitor{pids: map[string]int{}}
	base := t.TempDir()
	r, err := New(Config{StateDir: filepath.Join(base, "state"), ExitDir: filepath.Join(base, "exits"), Monitor: fm})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, fm
}

// fakeContainer makes the state dir of id and a process standing in for its
// monitor; it returns the process, killed and reaped at cleanup.
func fakeContainer(t *testing.T, r *Runtime, fm *fakeMonitor, id string) *exec.Cmd {
	t.Helper()
	if err := os.MkdirAll(r.containerDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) })
	fm.set(id, cmd.Process.Pid)
	return cmd
}

// kill ends the stand-in monitor and reaps it.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

// nextMonitorExit returns the next ID from MonitorExits.
func nextMonitorExit(t *testing.T, r *Runtime) string {
	t.Helper()
	select {
	case id := <-r.MonitorExits():
		return id
	case <-time.After(waitBound):
		t.Fatalf("no monitor exit within %v", waitBound)
		return ""
	}
}

func TestWatchMonitorInternal(t *testing.T) {
	r, fm := newFakeRuntime(t)
	a := fakeContainer(t, r, fm, "a")
	b := fakeContainer(t, r, fm, "b")
	for _, id := range []string{"a", "b"} {
		if err := r.WatchMonitor(id); err != nil {
			t.Fatal(err)
		}
	}
	// Watching again replaces the watch: still one delivery.
	if err := r.WatchMonitor("b"); err != nil {
		t.Fatal(err)
	}
	if !r.MonitorAlive("a") {
		t.Error("MonitorAlive(a) = false while it runs")
	}
	kill(t, b)
	if got := nextMonitorExit(t, r); got != "b" {
		t.Errorf("monitor exit = %q, want b", got)
	}
	kill(t, a)
	if got := nextMonitorExit(t, r); got != "a" {
		t.Errorf("monitor exit = %q, want a", got)
	}
	if r.MonitorAlive("a") {
		t.Error("MonitorAlive(a) = true after it died")
	}
	if err := r.WatchMonitor("nosuch"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("watch of an unknown container: %v, want NotFound", err)
	}
}

func TestWatchMonitorAlreadyGone(t *testing.T) {
	r, fm := newFakeRuntime(t)
	kill(t, fakeContainer(t, r, fm, "gone"))
	if err := r.WatchMonitor("gone"); err != nil {
		t.Fatal(err)
	}
	if got := nextMonitorExit(t, r); got != "gone" {
		t.Errorf("monitor exit = %q, want gone", got)
	}
}

// TestWatchMonitorReusedPID: a pid that stops being the monitor between
// reading it and opening its pidfd counts as a gone monitor.
func TestWatchMonitorReusedPID(t *testing.T) {
	r, _ := newFakeRuntime(t)
	other := exec.Command("sleep", "1000")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	calls := 0
	pidOf := func() (int, bool) {
		calls++
		return other.Process.Pid, calls == 1
	}
	if err := r.monitors.watch("reused", pidOf); err != nil {
		t.Fatal(err)
	}
	if got := nextMonitorExit(t, r); got != "reused" {
		t.Errorf("monitor exit = %q, want reused", got)
	}
}

func TestForgetInternal(t *testing.T) {
	r, fm := newFakeRuntime(t)
	a := fakeContainer(t, r, fm, "a")
	b := fakeContainer(t, r, fm, "b")
	for _, id := range []string{"a", "b"} {
		if err := r.WatchMonitor(id); err != nil {
			t.Fatal(err)
		}
	}
	r.Forget("a")
	r.Forget("a") // twice is fine
	kill(t, a)
	// b dies after a: had a still been watched, its end would have been
	// in the epoll set first and delivered before b's.
	kill(t, b)
	if got := nextMonitorExit(t, r); got != "b" {
		t.Errorf("monitor exit = %q, want only b", got)
	}

	// A delivery queued but not yet received is dropped too.
	c := fakeContainer(t, r, fm, "c")
	kill(t, c)
	if err := r.WatchMonitor("c"); err != nil {
		t.Fatal(err)
	}
	r.Forget("c")
	select {
	case id := <-r.MonitorExits():
		t.Errorf("monitor exit %q delivered after Forget", id)
	default:
	}
}

// countGoroutines counts goroutines running one of the watchers' loops.
func countGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "oci.(*monitorWatcher).run") || strings.Contains(s, "oci.(*idQueue).run") ||
			strings.Contains(s, "oci.(*exitWatcher).run") {
			count++
		}
	}
	return count
}

func TestCloseStopsWatchers(t *testing.T) {
	before := countGoroutines()
	fm := &fakeMonitor{pids: map[string]int{}}
	base := t.TempDir()
	r, err := New(Config{StateDir: filepath.Join(base, "state"), ExitDir: filepath.Join(base, "exits"), Monitor: fm})
	if err != nil {
		t.Fatal(err)
	}
	fakeContainer(t, r, fm, "a")
	if err := r.WatchMonitor("a"); err != nil {
		t.Fatal(err)
	}
	// Each watcher runs with its queue's goroutine; a goroutine just
	// started may not be on its way yet.
	for deadline := time.Now().Add(waitBound); countGoroutines() != before+4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("%d watcher goroutines running, want %d", countGoroutines(), before+4)
			break
		}
	}
	r.monitors.mu.Lock()
	fd := r.monitors.byID["a"].fd
	r.monitors.mu.Unlock()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The goroutines closed their done channels; let them return.
	for deadline := time.Now().Add(waitBound); countGoroutines() != before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d watcher goroutines left after Close, want %d", countGoroutines(), before)
		}
	}
	if link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil && strings.Contains(link, "pidfd") {
		t.Errorf("pidfd %d still open after Close", fd)
	}
	if err := r.WatchMonitor("a"); err == nil {
		t.Error("WatchMonitor after Close succeeded")
	}
}
