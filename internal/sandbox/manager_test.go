package sandbox

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/network"
	"github.com/crid-project/crid/internal/store"
)

// fakeNet is a CNI manager whose Setup can be held.
type fakeNet struct {
	mu      sync.Mutex
	hold    chan struct{} // Setup waits on it when set
	entered chan struct{}
	adds    map[string]bool // pods with an IP
}

func (f *fakeNet) Setup(ctx context.Context, pod network.PodNetwork) (network.Result, error) {
	if f.hold != nil {
		f.entered <- struct{}{}
		<-f.hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds[pod.ID] = true
	return network.Result{IPs: []net.IP{net.ParseIP("10.88.0.2")}}, nil
}

func (f *fakeNet) Teardown(ctx context.Context, pod network.PodNetwork) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.adds, pod.ID)
	return nil
}
func (f *fakeNet) Ready() (bool, string, string) { return true, "", "" }
func (f *fakeNet) SetPodCIDR(string)             {}

// fakeContainers can hold StopPod.
type fakeContainers struct {
	hold    chan struct{}
	entered chan struct{}
}

func (f *fakeContainers) StopPod(ctx context.Context, podID string) error {
	if f.hold != nil {
		select {
		case f.entered <- struct{}{}:
		default:
		}
		<-f.hold
	}
	return nil
}
func (f *fakeContainers) RemovePod(ctx context.Context, podID string) error { return nil }

func newTestManager(t *testing.T) (*Manager, *fakeNet, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: pods get real namespaces and mounts")
	}
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fn := &fakeNet{adds: map[string]bool{}}
	m, err := New(Config{StateDir: dir, ShmSize: 1 << 20}, db, fn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	m.Containers = &fakeContainers{}
	testDBs[m] = db
	t.Cleanup(func() {
		for _, sb := range m.recs.List(nil) {
			_ = m.destroy(context.Background(), sb.ID)
		}
	})
	return m, fn, dir
}

// restart is crid's restart: a new manager over the same database, CNI
// and containers.
func restart(t *testing.T, m *Manager) *Manager {
	t.Helper()
	m2, err := New(m.cfg, testDBs[m], m.net, m.log)
	if err != nil {
		t.Fatal(err)
	}
	m2.Containers = m.Containers
	testDBs[m2] = testDBs[m]
	t.Cleanup(func() {
		for _, sb := range m2.recs.List(nil) {
			_ = m2.destroy(context.Background(), sb.ID)
		}
	})
	return m2
}

// testDBs are the managers' databases, for restart.
var testDBs = map[*Manager]*store.Store{}

func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: name + "-uid"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

// The kubelet's retry of a RunPodSandbox that finished after the kubelet
// gave up gets the pod that was made, not "name is reserved".
func TestRunRetryAfterCallerGaveUp(t *testing.T) {
	m, fn, _ := newTestManager(t)
	fn.hold, fn.entered = make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan string)
	go func() {
		id, _ := m.Run(ctx, podConfig("a"), "")
		first <- id
	}()
	<-fn.entered
	cancel() // the kubelet's deadline passed while CNI ADD ran
	fn.hold <- struct{}{}
	<-first
	fn.hold = nil
	id, err := m.Run(context.Background(), podConfig("a"), "")
	if err != nil {
		t.Fatalf("retry after the create finished: %v", err)
	}
	sb, err := m.Get(id)
	if err != nil || sb.State != StateReady {
		t.Fatalf("retry got %s: %+v %v", id, sb.State, err)
	}
	// Once claimed, the name is taken.
	if _, err := m.Run(context.Background(), podConfig("a"), ""); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("third create: %v", err)
	}
}

// A retry while the create is in flight waits for it and gets its ID.
func TestRunRetryInFlight(t *testing.T) {
	m, fn, _ := newTestManager(t)
	fn.hold, fn.entered = make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error)
	go func() {
		_, err := m.Run(ctx, podConfig("a"), "")
		first <- err
	}()
	<-fn.entered
	cancel()
	retry := make(chan string)
	go func() {
		id, err := m.Run(context.Background(), podConfig("a"), "")
		if err != nil {
			t.Error(err)
		}
		retry <- id
	}()
	close(fn.hold)
	<-first
	id := <-retry
	if sb, err := m.Get(id); err != nil || sb.State != StateReady {
		t.Fatalf("retry got %q: %v", id, err)
	}
}

// A Stop queued behind a Remove must not bring the removed pod back.
func TestStopBehindRemove(t *testing.T) {
	m, _, dir := newTestManager(t)
	id, err := m.Run(context.Background(), podConfig("a"), "")
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeContainers{hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	m.Containers = fc
	removed := make(chan error)
	go func() { removed <- m.Remove(context.Background(), id) }()
	<-fc.entered // Remove holds the pod's lock
	stopped := make(chan error)
	go func() { stopped <- m.Stop(context.Background(), id) }()
	close(fc.hold)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if _, ok := m.recs.Get(id); ok {
		t.Fatal("the removed pod's record came back")
	}
	if _, err := os.Stat(filepath.Join(dir, "sandboxes", id)); !os.IsNotExist(err) {
		t.Fatalf("pod dir: %v", err)
	}
}

// A pod in use by a create cannot be removed until the create is done.
func TestUseHoldsOffRemove(t *testing.T) {
	m, _, _ := newTestManager(t)
	id, err := m.Run(context.Background(), podConfig("a"), "")
	if err != nil {
		t.Fatal(err)
	}
	_, release, err := m.Use(id)
	if err != nil {
		t.Fatal(err)
	}
	removed := make(chan error)
	go func() { removed <- m.Remove(context.Background(), id) }()
	// While held, Remove cannot have taken the pod's lock.
	if unlock, ok := m.recs.TryLock(id); ok {
		unlock()
		t.Fatal("pod lock free while a create uses the pod")
	}
	if _, ok := m.recs.Get(id); !ok {
		t.Fatal("pod removed while in use")
	}
	release()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Use(id); !errdefs.IsNotFound(err) {
		t.Fatalf("Use of a removed pod: %v", err)
	}
}

// Undo follows the record: a pod whose create was cut after CNI ADD had
// begun gets its DEL, its namespaces unpinned and its dir removed.
func TestRepairFinishesInterruptedCreate(t *testing.T) {
	m, fn, dir := newTestManager(t)
	fn.hold, fn.entered = make(chan struct{}), make(chan struct{})
	go func() { _, _ = m.Run(context.Background(), podConfig("a"), "") }()
	<-fn.entered
	// Take the record as it is mid-create: that is what a crash leaves.
	var id string
	for _, sb := range m.recs.List(nil) {
		id = sb.ID
	}
	sb, _ := m.recs.Get(id)
	if !sb.Steps.Has(stepNetwork) || sb.Steps.Done(stepNetwork) || len(sb.Namespaces) == 0 {
		t.Fatalf("mid-create record: %+v", sb.Steps)
	}
	close(fn.hold)
	// Wait for the create to finish, then put the record back the way
	// the crash left it and let a fresh manager repair it.
	for {
		if cur, _ := m.recs.Get(id); cur.State == StateReady {
			break
		}
		<-m.recs.Changed(id)
	}
	if _, err := m.recs.Update(id, func(v *Sandbox) error { *v = sb; return nil }); err != nil {
		t.Fatal(err)
	}
	fn.hold = nil
	other, err := m.Run(context.Background(), podConfig("b"), "")
	if err != nil {
		t.Fatal(err)
	}
	// Restart: before the reconciler has seen it, a pod answers reads
	// and refuses changes.
	m = restart(t, m)
	if _, err := m.Get(other); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background(), other); !errdefs.IsUnavailable(err) {
		t.Fatalf("Stop while recovering: %v", err)
	}
	m.Recover(context.Background())
	if err := m.Stop(context.Background(), other); err != nil {
		t.Fatalf("Stop after recovery: %v", err)
	}
	if _, ok := m.recs.Get(id); ok {
		t.Fatal("interrupted create still recorded")
	}
	if m.net.(*fakeNet).adds[id] {
		t.Fatal("CNI DEL not called")
	}
	if _, err := os.Stat(filepath.Join(dir, "sandboxes", id)); !os.IsNotExist(err) {
		t.Fatalf("pod dir left: %v", err)
	}
}
