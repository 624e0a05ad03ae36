package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/events"
	"github.com/crid-project/crid/internal/image"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
)

// gate holds a fake runtime call until the test opens it: entered gets
// the container ID of each call that reached it.
type gate struct {
	entered chan string
	release chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{entered: make(chan string, 16), release: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) pass(id string) {
	g.entered <- id
	<-g.release
}

// fakeCtr is a container as the fake runtime sees it.
type fakeCtr struct {
	status      string // created, running, stopped
	pid         int
	exit        *oci.Exit // what the monitor wrote
	monitorDead bool
}

// fakeRuntime is an in-memory OCI runtime with one fake monitor per
// container. Its pids start above the kernel's largest pid_max, so no
// test can touch a real process by mistake.
type fakeRuntime struct {
	mu        sync.Mutex
	ctrs      map[string]*fakeCtr
	nextPid   int
	createPid int // if set, the pid Create returns
	createErr error
	startErr  error // returned once by Start, which then leaves the container created
	createG   *gate
	startG    *gate
	gates     []*gate
	watched   map[string]bool
	deleted   map[string]bool
	starts    map[string]int
	// checkpointErr fails every Checkpoint; checkpoints counts the others.
	checkpointErr error
	checkpoints   int
	restores      int
	// ops logs pauses, checkpoints and resumes: "pause <id>" and so on.
	ops []string
	// pauseErr fails Pause of that container.
	pauseErr map[string]error

	exits    chan string
	monExits chan string
	rescans  chan struct{}
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{
		ctrs: map[string]*fakeCtr{}, nextPid: 1 << 23,
		watched: map[string]bool{}, deleted: map[string]bool{}, starts: map[string]int{},
		exits: make(chan string, 1024), monExits: make(chan string, 16), rescans: make(chan struct{}, 1),
	}
}

// hold makes the next calls of Create (&f.createG) or Start (&f.startG)
// wait until the returned gate opens.
func (f *fakeRuntime) hold(slot **gate) *gate {
	f.mu.Lock()
	defer f.mu.Unlock()
	*slot = newGate()
	f.gates = append(f.gates, *slot)
	return *slot
}

// unhold lets later calls through without waiting.
func (f *fakeRuntime) unhold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.createG, f.startG = nil, nil
}

func (f *fakeRuntime) openAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.gates {
		g.open()
	}
}

func (f *fakeRuntime) set(fn func(f *fakeRuntime)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// ctr runs fn on the container's fake state.
func (f *fakeRuntime) ctr(id string, fn func(c *fakeCtr)) {
	f.set(func(f *fakeRuntime) {
		if c, ok := f.ctrs[id]; ok {
			fn(c)
		}
	})
}

// exitQuietly makes the container exit with code and its monitor write
// the exit, but the notification is lost.
func (f *fakeRuntime) exitQuietly(id string, code int32) {
	f.ctr(id, func(c *fakeCtr) {
		c.status, c.pid = "stopped", 0
		c.exit = &oci.Exit{Code: code, At: time.Now()}
	})
}

// forget drops the container as a reboot would: no state, no exit.
func (f *fakeRuntime) forget(id string) { f.set(func(f *fakeRuntime) { delete(f.ctrs, id) }) }

// status is the runtime's state of the container, "" if it has none.
func (f *fakeRuntime) status(id string) (s string) {
	f.ctr(id, func(c *fakeCtr) { s = c.status })
	return s
}

func (f *fakeRuntime) wasDeleted(id string) (ok bool) {
	f.set(func(f *fakeRuntime) { ok = f.deleted[id] })
	return ok
}

func (f *fakeRuntime) startCount(id string) (n int) {
	f.set(func(f *fakeRuntime) { n = f.starts[id] })
	return n
}

func (f *fakeRuntime) isWatched(id string) (ok bool) {
	f.set(func(f *fakeRuntime) { ok = f.watched[id] })
	return ok
}

func (f *fakeRuntime) Create(ctx context.Context, opts oci.CreateOptions) (int, error) {
	f.mu.Lock()
	g := f.createG
	f.mu.Unlock()
	if g != nil {
		g.pass(opts.ID) // deliberately deaf to ctx: runc create is not cut short either
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.createErr; err != nil {
		f.createErr = nil
		return 0, err
	}
	if _, ok := f.ctrs[opts.ID]; ok {
		return 0, fmt.Errorf("container %s: %w", opts.ID, errdefs.ErrAlreadyExists)
	}
	pid := f.createPid
	if pid == 0 {
		f.nextPid++
		pid = f.nextPid
	}
	status := "created"
	if opts.Restore != nil {
		// A restore: the container runs once the runtime returns.
		if _, err := os.Stat(filepath.Join(opts.Restore.ImageDir, "inventory.img")); err != nil {
			return 0, fmt.Errorf("restore %s: %w", opts.ID, err)
		}
		status = "running"
		f.restores++
	}
	f.ctrs[opts.ID] = &fakeCtr{status: status, pid: pid}
	return pid, nil
}

func (f *fakeRuntime) Start(ctx context.Context, id string, h oci.Handler) error {
	f.mu.Lock()
	g := f.startG
	f.mu.Unlock()
	if g != nil {
		g.pass(id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts[id]++
	if err := f.startErr; err != nil {
		f.startErr = nil
		return err
	}
	c, ok := f.ctrs[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if c.status != "created" {
		return fmt.Errorf("container %s is %s: %w", id, c.status, errdefs.ErrFailedPrecondition)
	}
	c.status = "running"
	return nil
}

// Kill ends the container with any signal (a stop signal is honoured);
// its monitor, unless dead, records the exit and reports it.
func (f *fakeRuntime) Kill(ctx context.Context, id string, h oci.Handler, sig syscall.Signal, all bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if c.status == "stopped" {
		return nil
	}
	c.status, c.pid = "stopped", 0
	if c.monitorDead {
		return nil
	}
	c.exit = &oci.Exit{Code: 128 + int32(sig), At: time.Now()}
	select {
	case f.exits <- id:
	default: // lost, as the real watcher's events may be
	}
	return nil
}

// Delete forgets the container; deleting an unknown one succeeds.
func (f *fakeRuntime) Delete(ctx context.Context, id string, h oci.Handler) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ctrs, id)
	delete(f.watched, id)
	f.deleted[id] = true
	return nil
}

func (f *fakeRuntime) State(ctx context.Context, id string, h oci.Handler) (oci.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	if !ok {
		return oci.State{}, fmt.Errorf("state of container %s: %w", id, errdefs.ErrNotFound)
	}
	return oci.State{Status: c.status, Pid: c.pid}, nil
}

func (f *fakeRuntime) ExitStatus(id string) (oci.Exit, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.ctrs[id]; ok && c.exit != nil {
		return *c.exit, true
	}
	return oci.Exit{}, false
}

func (f *fakeRuntime) MonitorAlive(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	return ok && !c.monitorDead
}

func (f *fakeRuntime) WatchMonitor(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ctrs[id]; !ok {
		return fmt.Errorf("watch monitor of container %s: %w", id, errdefs.ErrNotFound)
	}
	f.watched[id] = true
	return nil
}

func (f *fakeRuntime) Check() error                { return nil }
func (f *fakeRuntime) Exits() <-chan string        { return f.exits }
func (f *fakeRuntime) MonitorExits() <-chan string { return f.monExits }
func (f *fakeRuntime) Rescans() <-chan struct{}    { return f.rescans }

func (f *fakeRuntime) UpdateResources(context.Context, string, oci.Handler, *specs.LinuxResources) error {
	return errdefs.ErrNotImplemented
}

// Checkpoint leaves what CRIU would: an image file and its statistics.
func (f *fakeRuntime) Checkpoint(_ context.Context, id string, _ oci.Handler, opts oci.CheckpointOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.ctrs[id]; !ok || (c.status != "running" && c.status != "paused") {
		return fmt.Errorf("container %s is not running", id)
	}
	if f.checkpointErr != nil {
		return f.checkpointErr
	}
	f.checkpoints++
	f.ops = append(f.ops, "checkpoint "+id)
	for name, data := range map[string]string{"inventory.img": "inventory", "pages-1.img": "memory of " + id, "stats-dump": "stats"} {
		if err := os.WriteFile(filepath.Join(opts.ImageDir, name), []byte(data), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeRuntime) Pause(_ context.Context, id string, _ oci.Handler) error {
	return f.setPaused(id, "pause", "running", "paused")
}

func (f *fakeRuntime) Resume(_ context.Context, id string, _ oci.Handler) error {
	return f.setPaused(id, "resume", "paused", "running")
}

func (f *fakeRuntime) setPaused(id, op, from, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.pauseErr[id]; err != nil && op == "pause" {
		return err
	}
	c, ok := f.ctrs[id]
	if !ok || c.status != from {
		return fmt.Errorf("%s %s: not %s", op, id, from)
	}
	c.status = to
	f.ops = append(f.ops, op+" "+id)
	return nil
}

func (f *fakeRuntime) ExecSync(context.Context, string, oci.Handler, *specs.Process, time.Duration) (oci.ExecResult, error) {
	return oci.ExecResult{}, errdefs.ErrNotImplemented
}

func (f *fakeRuntime) Exec(context.Context, string, oci.Handler, *specs.Process, oci.ExecOptions) (int32, error) {
	return 0, errdefs.ErrNotImplemented
}

func (f *fakeRuntime) Attach(context.Context, string, oci.AttachOptions) error {
	return errdefs.ErrNotImplemented
}
func (f *fakeRuntime) ReopenLog(context.Context, string) error { return errdefs.ErrNotImplemented }

// fakeImages holds one image, "busybox", whose layers are test dirs.
type fakeImages struct {
	img        image.Image
	more       map[string]image.Image // other images, by reference and ID (image volumes)
	layers     map[digest.Digest]string
	stopSignal string // the image config's StopSignal: "" means SIGTERM, "none" unset
}

const testImage = "busybox"

func (f *fakeImages) Get(ref string) (image.Image, error) {
	if ref == testImage || ref == f.img.ID.String() {
		return f.img, nil
	}
	if img, ok := f.more[ref]; ok {
		return img, nil
	}
	return image.Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

func (f *fakeImages) Pull(context.Context, string, *image.Auth) (digest.Digest, error) {
	return "", errdefs.ErrNotImplemented
}

func (f *fakeImages) Config(image.Image) ([]byte, error) {
	sig := f.stopSignal
	switch sig {
	case "":
		sig = "SIGTERM"
	case "none":
		sig = ""
	}
	return fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"],"StopSignal":%q},"rootfs":{"type":"layers"}}`, sig), nil
}

func (f *fakeImages) LayerDir(d digest.Digest) string { return f.layers[d] }

// fakeSandboxes holds ready pods; Use counts the holds not yet released.
type fakeSandboxes struct {
	mu   sync.Mutex
	pods map[string]sandbox.Sandbox
	held int
}

func (f *fakeSandboxes) add(id, dir string) {
	cfg, _ := proto.Marshal(&runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: id, Namespace: "ns", Uid: id + "-uid"},
		LogDirectory: dir + "/logs",
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[id] = sandbox.Sandbox{ID: id, Name: id + "_ns_" + id + "-uid_0", Config: cfg, State: sandbox.StateReady, Dir: dir, CreatedAt: time.Now()}
}

func (f *fakeSandboxes) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, id)
}

func (f *fakeSandboxes) holds() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

func (f *fakeSandboxes) Get(id string) (sandbox.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.pods[id]
	if !ok {
		return sandbox.Sandbox{}, fmt.Errorf("pod sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	return sb, nil
}

func (f *fakeSandboxes) Use(id string) (sandbox.Sandbox, func(), error) {
	sb, err := f.Get(id)
	if err != nil {
		return sb, nil, err
	}
	f.mu.Lock()
	f.held++
	f.mu.Unlock()
	var once sync.Once
	return sb, func() {
		once.Do(func() {
			f.mu.Lock()
			f.held--
			f.mu.Unlock()
		})
	}, nil
}

func (f *fakeSandboxes) Lookup(id string) (sandbox.Sandbox, bool) {
	sb, err := f.Get(id)
	return sb, err == nil
}

// fakeObserver records the lifecycle events, in order.
type fakeObserver struct {
	mu     sync.Mutex
	events map[string][]runtimeapi.ContainerEventType
}

func (o *fakeObserver) Event(ev events.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events[ev.ContainerID] = append(o.events[ev.ContainerID], ev.Type)
}

func (o *fakeObserver) Stage(string, string, time.Duration) {}

func (o *fakeObserver) of(id string) []runtimeapi.ContainerEventType {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]runtimeapi.ContainerEventType(nil), o.events[id]...)
}
