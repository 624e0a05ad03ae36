package container

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/image"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
	"github.com/crid-project/crid/internal/store"
)

// bound is how long any awaited condition may take before the test fails.
const bound = 30 * time.Second

var bg = context.Background()

// harness is a container manager over fakes, a real database and real
// overlay mounts in a test dir.
type harness struct {
	t         *testing.T
	dir       string
	cfg       Config
	db        *store.Store
	rt        *fakeRuntime
	images    *fakeImages
	pods      *fakeSandboxes
	obs       *fakeObserver
	m         *Manager
	stopWatch func()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containers get a real overlayfs root")
	}
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "crid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// `/bin/true features` prints nothing: the handler has no optional
	// features, and nothing else ever runs it (the runtime is a fake).
	runc := oci.Handler{Name: "runc", Path: "/bin/true"}
	h := &harness{
		t: t, dir: dir, db: db, rt: newFakeRuntime(),
		cfg: Config{
			RootDir: filepath.Join(dir, "root"), StateDir: filepath.Join(dir, "state"), CgroupDriver: "cgroupfs",
			Handlers: map[string]oci.Handler{"": runc, "runc": runc}, DefaultHandler: "runc",
		},
		images: &fakeImages{img: image.Image{ID: digest.FromString("image")}, layers: map[digest.Digest]string{}},
		pods:   &fakeSandboxes{pods: map[string]sandbox.Sandbox{}},
		obs:    &fakeObserver{events: map[string][]runtimeapi.ContainerEventType{}},
	}
	for i := range 2 {
		d := filepath.Join(dir, "layers", fmt.Sprint(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("layer%d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		diff := digest.FromString(d)
		h.images.img.Layers = append(h.images.img.Layers, diff)
		h.images.layers[diff] = d
	}
	for _, pod := range []string{"pod-a", "pod-b"} {
		d := filepath.Join(dir, "pods", pod)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
			if err := os.WriteFile(filepath.Join(d, f), []byte(pod+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		h.pods.add(pod, d)
	}
	h.start()
	t.Cleanup(h.cleanup)
	return h
}

// start makes a manager over the harness's database, as crid's start
// does, and runs its exit watcher.
func (h *harness) start() {
	h.t.Helper()
	m, err := New(h.cfg, h.db, h.rt, h.images, h.pods, slog.New(slog.DiscardHandler))
	if err != nil {
		h.t.Fatal(err)
	}
	m.Observer = h.obs
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.WatchExits(ctx)
	}()
	h.m, h.stopWatch = m, func() { cancel(); <-done }
}

// restart is a restart of crid: the monitors (the fake runtime) live on.
func (h *harness) restart() {
	h.stopWatch()
	h.start()
}

// cleanup removes every container through the manager, then fails the
// test for any mount it left under the test dir (and unmounts it, so the
// dir can be removed).
func (h *harness) cleanup() {
	h.rt.openAll()
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	for _, c := range h.m.recs.List(nil) {
		h.m.recs.Recovered(c.ID)
		if err := h.m.removeAny(ctx, c.ID); err != nil {
			h.t.Errorf("cleanup: remove container %s: %v", c.ID, err)
		}
	}
	h.stopWatch()
	for _, p := range mountsUnder(h.t, h.dir) {
		h.t.Errorf("mount left behind: %s", p)
		_ = unix.Unmount(p, unix.MNT_DETACH)
	}
	if n := h.pods.holds(); n != 0 {
		h.t.Errorf("%d holds on pods never released", n)
	}
}

func ctrConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: testImage},
		LogPath:  name + "/0.log",
	}
}

func (h *harness) create(pod, name string) string {
	h.t.Helper()
	id, err := h.m.Create(bg, pod, ctrConfig(name))
	if err != nil {
		h.t.Fatalf("create %s: %v", name, err)
	}
	return id
}

// run creates and starts a container.
func (h *harness) run(pod, name string) string {
	h.t.Helper()
	id := h.create(pod, name)
	if err := h.m.Start(bg, id); err != nil {
		h.t.Fatalf("start %s: %v", name, err)
	}
	return id
}

// canRestore makes the harness's handler one whose runtime can restore
// (its /bin/true cannot say).
func (h *harness) canRestore() {
	h.m.handlers().criu["runc"] = func() criuCaps { return criuCaps{restore: true} }
}

// record returns the stored record, of any state.
func (h *harness) record(id string) Container {
	h.t.Helper()
	c, ok := h.m.recs.Get(id)
	if !ok {
		h.t.Fatalf("container %s has no record", id)
	}
	return c
}

// waitFor waits until the container's record meets cond.
func (h *harness) waitFor(id, what string, cond func(c Container, ok bool) bool) Container {
	h.t.Helper()
	deadline := time.After(bound)
	for {
		changed := h.m.recs.Changed(id)
		c, ok := h.m.recs.Get(id)
		if cond(c, ok) {
			return c
		}
		select {
		case <-changed:
		case <-deadline:
			h.t.Fatalf("container %s not %s after %s: %+v (recorded: %v)", id, what, bound, c, ok)
		}
	}
}

func exited(c Container, ok bool) bool { return ok && c.State == StateExited }

// assertGone checks that nothing is left of a removed container.
func (h *harness) assertGone(id string) {
	h.t.Helper()
	if c, ok := h.m.recs.Get(id); ok {
		h.t.Errorf("container %s still recorded: %+v", id, c)
	}
	if mounted(h.t, h.m.rootfsDir(id)) {
		h.t.Errorf("rootfs of %s still mounted", id)
	}
	for _, d := range []string{h.m.bundleDir(id), h.m.layerDir(id)} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			h.t.Errorf("dir %s left: %v", d, err)
		}
	}
	if !h.rt.wasDeleted(id) || h.rt.status(id) != "" {
		h.t.Errorf("container %s not deleted from the runtime", id)
	}
}

func (h *harness) assertEvents(id string, want ...runtimeapi.ContainerEventType) {
	h.t.Helper()
	// An event is sent after its change is recorded: a test that waited
	// for the record may look before the event is out.
	deadline := time.Now().Add(bound)
	for {
		got := h.obs.of(id)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Errorf("events of %s: %v, want %v", id, got, want)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recv receives from ch within bound.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(bound):
		t.Fatalf("no %s after %s", what, bound)
		panic("unreachable")
	}
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	return slices.Contains(mountsUnder(t, filepath.Dir(path)), path)
}

func criState(t *testing.T, m *Manager, id string) runtimeapi.ContainerState {
	t.Helper()
	c, err := m.Get(id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return c.CRIStatus().State
}

// goroutineBlockedIn waits until some goroutine is parked in a select
// inside fn.
func goroutineBlockedIn(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(bound); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		n := runtime.Stack(buf, true)
		for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
			if strings.Contains(g, " [select") && strings.Contains(g, fn) {
				return
			}
		}
	}
	t.Fatalf("no goroutine blocked in %s after %s", fn, bound)
}
