package stats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/sandbox"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// waitFor polls cond; the bound only catches a hang, it never paces a test.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// logBuffer is a log the walker writes while the test reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// makeLayer makes root/name as crid lays a container's layer out: an upper
// dir with files of 4 KiB, and an empty work dir.
func makeLayer(t testing.TB, root, name string, files int) {
	t.Helper()
	upper := filepath.Join(root, name, "upper")
	if err := os.MkdirAll(filepath.Join(upper, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, name, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range files {
		if err := os.WriteFile(filepath.Join(upper, "etc", fmt.Sprint("f", i)), make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWalkTree(t *testing.T) {
	dir := t.TempDir()
	makeLayer(t, dir, "c", 10)
	upper := filepath.Join(dir, "c", "upper")
	// A hard link is counted once.
	if err := os.Link(filepath.Join(upper, "etc", "f0"), filepath.Join(upper, "link")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(upper, "etc", "f1")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		dir      string
		budget   uint64
		inodes   uint64
		children map[string]uint64 // inodes under each entry of dir
		partial  bool
		wantErr  error
		minBytes uint64
	}{
		// dir, c, c/upper, c/upper/etc, 10 files, c/work.
		{name: "layers dir", dir: dir, inodes: 15, children: map[string]uint64{"c": 14}, minBytes: 10 * 4096},
		{name: "one layer", dir: filepath.Join(dir, "c"), inodes: 14, children: map[string]uint64{"upper": 12, "work": 1}, minBytes: 10 * 4096},
		{name: "a file", dir: file, inodes: 1, children: map[string]uint64{}, minBytes: 4096},
		{name: "missing", dir: filepath.Join(dir, "gone"), children: map[string]uint64{}},
		{name: "budget", dir: dir, budget: 5, inodes: 5, partial: true, wantErr: errInodeBudget},
		{name: "canceled", ctx: canceled, dir: dir, inodes: 1, children: map[string]uint64{}, partial: true, wantErr: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			u, err := walkTree(ctx, tc.dir, tc.budget)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if u.Total.Inodes != tc.inodes || u.Partial != tc.partial || u.Total.Bytes < tc.minBytes {
				t.Errorf("got %+v", u)
			}
			if tc.children == nil {
				return
			}
			got := map[string]uint64{}
			for name, cu := range u.Children {
				got[name] = cu.Inodes
			}
			if !maps.Equal(got, tc.children) {
				t.Errorf("children %v, want %v", got, tc.children)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), make([]byte, 64<<10), 0o644)
	os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")) // counted once
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	u, err := Usage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Inodes != 3 || u.Bytes < 64<<10 || u.Bytes > 80<<10 {
		t.Errorf("usage %+v", u)
	}
	if u, err := Usage(filepath.Join(dir, "missing")); err != nil || u != (DirUsage{}) {
		t.Errorf("missing dir: %+v %v", u, err)
	}
}

// countingWalk wraps walkTree: it counts walks and, while gate is set,
// holds each walk until the gate is closed.
type countingWalk struct {
	n       atomic.Int64
	started chan string
	gate    chan struct{}
}

func (w *countingWalk) walk(ctx context.Context, dir string, budget uint64) (treeUsage, error) {
	w.n.Add(1)
	if w.started != nil {
		w.started <- dir
	}
	if w.gate != nil {
		<-w.gate
	}
	return walkTree(ctx, dir, budget)
}

// The request path reads the cache only: without a walker nothing is
// ever walked, and a walk in progress never holds a request.
func TestUsageCacheRequestsNeverWalk(t *testing.T) {
	root := t.TempDir()
	makeLayer(t, root, "c1", 3)
	log, _ := testLog()
	w := &countingWalk{started: make(chan string, 100), gate: make(chan struct{})}
	c := NewUsageCache(root, UsageOptions{Interval: time.Hour}, log)
	c.walk = w.walk
	defer c.Close()

	for range 1000 {
		if _, ok := c.Dir(filepath.Join(root, "c1", "upper")); ok {
			t.Fatal("measured without a walker")
		}
		if _, ok := c.Total(); ok {
			t.Fatal("total measured without a walker")
		}
	}
	if n := w.n.Load(); n != 0 {
		t.Fatalf("requests walked %d trees", n)
	}

	// The walker's first walk is held at the gate: requests still answer.
	c.Start(context.Background())
	<-w.started
	answered := make(chan bool)
	go func() {
		_, ok := c.Dir(filepath.Join(root, "c1", "upper"))
		_, tok := c.Total()
		answered <- ok || tok
	}()
	select {
	case ok := <-answered:
		if ok {
			t.Fatal("measured while the first walk is held")
		}
	case <-time.After(time.Minute):
		t.Fatal("a request waited for the walker")
	}
	close(w.gate)
	waitFor(t, "c1 measured", func() bool { _, ok := c.Dir(filepath.Join(root, "c1", "upper")); return ok })
	want, _ := Usage(filepath.Join(root, "c1", "upper"))
	if got, _ := c.Dir(filepath.Join(root, "c1", "upper")); got != want {
		t.Errorf("upper = %+v, want %+v", got, want)
	}
}

// A tree asked for before any pass has listed it is measured at once, not
// at the next pass (an hour away here).
func TestUsageCachePromptMeasurement(t *testing.T) {
	root := t.TempDir()
	makeLayer(t, root, "old", 2)
	log, _ := testLog()
	c := NewUsageCache(root, UsageOptions{Interval: time.Hour}, log)
	c.Start(context.Background())
	defer c.Close()
	waitFor(t, "first pass", func() bool { _, ok := c.Total(); return ok })

	makeLayer(t, root, "new", 5)
	upper := filepath.Join(root, "new", "upper")
	if _, ok := c.Dir(upper); ok {
		t.Fatal("a tree made after the pass is already measured")
	}
	waitFor(t, "new measured", func() bool { _, ok := c.Dir(upper); return ok })
	want, _ := Usage(upper)
	if got, _ := c.Dir(upper); got != want {
		t.Errorf("upper = %+v, want %+v", got, want)
	}
	// The total counts it too: it is what a walk of the whole root finds.
	all, _ := Usage(root)
	if got, _ := c.Total(); got != all {
		t.Errorf("total = %+v, want %+v", got, all)
	}
}

// Passes run in the test goroutine here: a pass lists the root, measures
// each tree and forgets the trees that are gone.
func TestUsageCachePass(t *testing.T) {
	ctx := context.Background()
	log, _ := testLog()
	for _, tc := range []struct {
		name   string
		layers map[string]int // name → files
		remove []string
	}{
		{name: "missing root"},
		{name: "empty root", layers: map[string]int{}},
		{name: "three layers", layers: map[string]int{"a": 1, "b": 20, "c": 0}},
		{name: "one removed", layers: map[string]int{"a": 1, "b": 20}, remove: []string{"b"}},
		{name: "all removed", layers: map[string]int{"a": 1, "b": 2}, remove: []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "containers")
			if tc.layers != nil {
				if err := os.Mkdir(root, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, n := range tc.layers {
				makeLayer(t, root, name, n)
			}
			w := &countingWalk{}
			c := NewUsageCache(root, UsageOptions{}, log)
			c.walk = w.walk
			c.pass(ctx)
			if got, want := w.n.Load(), int64(len(tc.layers)); got != want {
				t.Errorf("walked %d trees, want %d", got, want)
			}
			for _, name := range tc.remove {
				if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
					t.Fatal(err)
				}
			}
			c.pass(ctx)
			all, _ := Usage(root)
			if got, ok := c.Total(); !ok || got != all {
				t.Errorf("total = %+v %v, want %+v", got, ok, all)
			}
			if n := len(c.trees); n != len(tc.layers)-len(tc.remove) {
				t.Errorf("%d trees kept", n)
			}
			for _, name := range tc.remove {
				if _, ok := c.Dir(filepath.Join(root, name, "upper")); ok {
					t.Errorf("removed %s still measured", name)
				}
			}
		})
	}
}

func TestUsageCacheDirOutsideRoot(t *testing.T) {
	log, _ := testLog()
	root := t.TempDir()
	c := NewUsageCache(root, UsageOptions{}, log)
	for _, dir := range []string{root, filepath.Dir(root), "/elsewhere/upper", filepath.Join(root, "c", "upper", "deeper"), filepath.Join(root, "..", "x")} {
		if _, ok := c.Dir(dir); ok {
			t.Errorf("%s measured", dir)
		}
	}
	if len(c.pending) != 0 {
		t.Errorf("untracked dirs queued: %v", c.pending)
	}
}

// A tree over its inode budget keeps what was counted, and says so once.
func TestUsageCacheBudget(t *testing.T) {
	root := t.TempDir()
	makeLayer(t, root, "big", 50)
	log, buf := testLog()
	c := NewUsageCache(root, UsageOptions{InodeBudget: 10}, log)
	c.pass(context.Background())
	c.pass(context.Background())
	if u, ok := c.Dir(filepath.Join(root, "big")); !ok || u.Inodes != 10 {
		t.Errorf("big = %+v %v, want 10 inodes", u, ok)
	}
	if n := strings.Count(buf.String(), "cut short"); n != 1 {
		t.Errorf("logged %d times:\n%s", n, buf)
	}
}

// A walk that does not return is logged, and requests go on answering.
func TestUsageCacheStuckWalk(t *testing.T) {
	root := t.TempDir()
	makeLayer(t, root, "sick", 1)
	log, buf := testLog()
	w := &countingWalk{gate: make(chan struct{})}
	c := NewUsageCache(root, UsageOptions{StuckAfter: time.Millisecond}, log)
	c.walk = w.walk
	c.Start(context.Background())
	defer c.Close()
	waitFor(t, "stuck report", func() bool { return strings.Contains(buf.String(), "disk usage walk stuck") })
	if _, ok := c.Total(); ok {
		t.Error("measured while stuck")
	}
	close(w.gate)
	waitFor(t, "walk end report", func() bool { return strings.Contains(buf.String(), "ended after being stuck") })
}

func TestUsageCacheStartClose(t *testing.T) {
	log, _ := testLog()
	c := NewUsageCache(t.TempDir(), UsageOptions{}, log)
	c.Close() // never started
	c.Start(context.Background())
	if c.done != nil {
		t.Error("Start after Close started a walker")
	}

	// The walker also stops with its context.
	c = NewUsageCache(t.TempDir(), UsageOptions{}, log)
	ctx, cancel := context.WithCancel(context.Background())
	c.Start(ctx)
	cancel()
	<-c.done
	c.Close()
	c.Close()
}

// fakeContainers is a container manager with no containers.
type fakeContainers struct{ layers string }

func (f fakeContainers) List() []container.Container { return nil }
func (f fakeContainers) StatsPaths(sb *sandbox.Sandbox, c *container.Container) (string, string) {
	return "", filepath.Join(f.layers, c.ID, "upper")
}
func (f fakeContainers) LayersDir() string { return f.layers }

type noPods struct{}

func (noPods) List() []sandbox.Sandbox { return nil }

func TestServiceUsesCache(t *testing.T) {
	root := t.TempDir()
	makeLayer(t, root, "c1", 4)
	log, _ := testLog()
	s := newService(newReaderAt(true, "testdata/v2", nil, ""), fakeContainers{root}, noPods{}, UsageOptions{Interval: time.Hour}, log)
	defer s.Close()
	mnt, u, err := s.ContainerFs()
	if err != nil || mnt != root || u != (DirUsage{}) {
		t.Fatalf("before the walker: %s %+v %v", mnt, u, err)
	}
	target := Target{Key: "c1", Layer: filepath.Join(root, "c1", "upper")}
	if r := s.coll.Collect(context.Background(), []Target{target}); r[0].Layer != nil || r[0].Err != nil {
		t.Fatalf("unmeasured layer: %+v", r[0])
	}
	s.Start(context.Background())
	waitFor(t, "first pass", func() bool { _, ok := s.usage.Total(); return ok })
	want, _ := Usage(root)
	if _, u, _ := s.ContainerFs(); u != want {
		t.Errorf("container fs = %+v, want %+v", u, want)
	}
	wantUpper, _ := Usage(target.Layer)
	if r := s.coll.Collect(context.Background(), []Target{target}); r[0].Layer == nil || *r[0].Layer != wantUpper {
		t.Errorf("layer = %+v, want %+v", r[0].Layer, wantUpper)
	}
}

// layersFixture is a layers dir of n containers with files each, measured.
func layersFixture(b *testing.B, n, files int) string {
	root := b.TempDir()
	for i := range n {
		makeLayer(b, root, fmt.Sprintf("%064x", i), files)
	}
	return root
}

// ImageFsInfo's container filesystem with 100 containers: a cache read.
func BenchmarkImageFsInfo100(b *testing.B) {
	root := layersFixture(b, 100, 20)
	s := newService(nil, fakeContainers{root}, noPods{}, UsageOptions{}, slog.New(slog.DiscardHandler))
	s.usage.pass(context.Background())
	b.ResetTimer()
	for b.Loop() {
		if _, u, _ := s.ContainerFs(); u.Inodes < 100*24 {
			b.Fatalf("usage %+v", u)
		}
	}
}

// The same answer by walking, as ContainerFs did before the cache.
func BenchmarkImageFsInfo100Walk(b *testing.B) {
	root := layersFixture(b, 100, 20)
	b.ResetTimer()
	for b.Loop() {
		if u, _ := Usage(root); u.Inodes < 100*24 {
			b.Fatalf("usage %+v", u)
		}
	}
}

// A layer crid just made reads as empty, not as unmeasured, and queues no
// walk of its own (critest lists a new container's fs usage at once).
func TestUsageCacheMade(t *testing.T) {
	log, _ := testLog()
	root := t.TempDir()
	c := NewUsageCache(root, UsageOptions{}, log)
	c.Made("c1")
	for _, dir := range []string{filepath.Join(root, "c1"), filepath.Join(root, "c1", "upper")} {
		if u, ok := c.Dir(dir); !ok || u != (DirUsage{}) {
			t.Errorf("%s: %+v measured %v", dir, u, ok)
		}
	}
	if len(c.pending) != 0 {
		t.Errorf("a made layer was queued: %v", c.pending)
	}
}

// podsAndContainers is a sandbox and a container manager over fixed lists.
type podsAndContainers struct {
	pods []sandbox.Sandbox
	cs   []container.Container
}

func (f podsAndContainers) List() []container.Container { return f.cs }
func (f podsAndContainers) StatsPaths(sb *sandbox.Sandbox, c *container.Container) (string, string) {
	return "/pod/ctr", ""
}
func (f podsAndContainers) LayersDir() string { return "" }

type podList []sandbox.Sandbox

func (p podList) List() []sandbox.Sandbox { return p }

// Pod stats give each pod its own containers' readings, also when the
// containers of two pods interleave in creation order (a restarted
// container: the exited one stays listed, without a cgroup).
func TestPodStatsInterleavedContainers(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	pods := podList{{ID: "p0", State: sandbox.StateReady}, {ID: "p1", State: sandbox.StateReady}}
	f := podsAndContainers{cs: []container.Container{
		{ID: "p0-old", SandboxID: "p0", State: container.StateExited, CreatedAt: at(1)},
		{ID: "p1-old", SandboxID: "p1", State: container.StateExited, CreatedAt: at(2)},
		{ID: "p0-new", SandboxID: "p0", State: container.StateRunning, CreatedAt: at(3)},
		{ID: "p1-new", SandboxID: "p1", State: container.StateRunning, CreatedAt: at(4)},
	}}
	log, _ := testLog()
	s := newService(newReaderAt(true, "testdata/v2", nil, ""), f, pods, UsageOptions{}, log)
	defer s.Close()
	out, err := s.ListPodSandboxStats(context.Background(), &runtimeapi.PodSandboxStatsFilter{})
	if err != nil || len(out) != 2 {
		t.Fatalf("stats %v %v", out, err)
	}
	for _, ps := range out {
		for _, cs := range ps.GetLinux().GetContainers() {
			id := cs.GetAttributes().GetId()
			if !strings.HasPrefix(id, ps.GetAttributes().GetId()+"-") {
				t.Errorf("pod %s lists container %s", ps.GetAttributes().GetId(), id)
			}
			if running := strings.HasSuffix(id, "-new"); running != (cs.GetCpu() != nil) {
				t.Errorf("container %s: cpu %v", id, cs.GetCpu())
			}
		}
	}
}
