package nri

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/sandbox"
)

// fakeState holds pods and containers and records the updates applied.
type fakeState struct {
	mu      sync.Mutex
	pods    []sandbox.Sandbox
	ctrs    []container.Container
	updates map[string]*specs.LinuxResources
}

func (f *fakeState) Pods() []sandbox.Sandbox             { return f.pods }
func (f *fakeState) Containers() []container.Container   { return f.ctrs }
func (f *fakeState) Spec(id string) (*specs.Spec, error) { return &specs.Spec{}, nil }
func (f *fakeState) FitResources(*specs.LinuxResources) error {
	return nil
}
func (f *fakeState) InjectCDI(*specs.Spec, []string) error { return errors.New("no CDI here") }
func (f *fakeState) UpdateContainer(_ context.Context, id string, r *specs.LinuxResources) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.ContainsFunc(f.ctrs, func(c container.Container) bool { return c.ID == id }) {
		return errors.New("no such container")
	}
	f.updates[id] = r
	return nil
}

func testPod(id string) sandbox.Sandbox {
	cfg, _ := proto.Marshal(&runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p-" + id, Namespace: "ns", Uid: "uid-" + id}})
	return sandbox.Sandbox{ID: id, Config: cfg, State: sandbox.StateReady}
}

func testContainer(id, pod string) container.Container {
	cfg, _ := proto.Marshal(&runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c-" + id}, Labels: map[string]string{"l": "v"}})
	return container.Container{ID: id, SandboxID: pod, Config: cfg, State: container.StateRunning, CreatedAt: time.Now()}
}

// plugin is a real NRI plugin (the library's stub) run in the test.
type plugin struct {
	synced chan []string // container IDs of each sync
	create func(*api.PodSandbox, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error)
}

func (p *plugin) Synchronize(_ context.Context, _ []*api.PodSandbox, cs []*api.Container) ([]*api.ContainerUpdate, error) {
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.GetId()+"/"+c.GetName())
	}
	p.synced <- ids
	return nil, nil
}

func (p *plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	return p.create(pod, c)
}

// start serves NRI on a socket of its own with state, and connects p.
func start(t *testing.T, state *fakeState, p *plugin) *Service {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := New(Config{
		SocketPath: filepath.Join(dir, "nri.sock"), PluginPath: filepath.Join(dir, "plugins"),
		PluginConfigPath: filepath.Join(dir, "conf.d"), RegistrationTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second,
	}, state, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	p.synced = make(chan []string, 1)
	s, err := stub.New(p, stub.WithPluginName("test"), stub.WithPluginIdx("10"), stub.WithSocketPath(filepath.Join(dir, "nri.sock")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Stop(); s.Wait() })
	return svc
}

// connected waits until p is synchronised and registered: the library
// registers a plugin after its sync, under the lock BlockSync waits for.
func connected(svc *Service, p *plugin) {
	<-p.synced
	svc.BlockSync()()
}

func TestSyncListsWhatExists(t *testing.T) {
	state := &fakeState{pods: []sandbox.Sandbox{testPod("p1")}, ctrs: []container.Container{testContainer("c1", "p1")}}
	p := &plugin{}
	start(t, state, p)
	select {
	case got := <-p.synced:
		if !slices.Equal(got, []string{"c1/c-c1"}) {
			t.Fatalf("synced containers %v, want [c1/c-c1]", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the plugin was never synchronised")
	}
}

func TestCreateContainerAppliesAdjustmentsAndUpdates(t *testing.T) {
	state := &fakeState{ctrs: []container.Container{testContainer("other", "p1")}, updates: map[string]*specs.LinuxResources{}}
	var seen *api.Container
	p := &plugin{create: func(_ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
		seen = c
		adj := &api.ContainerAdjustment{}
		adj.AddEnv("INJECTED", "yes")
		adj.AddMount(&api.Mount{Source: "/src", Destination: "/injected", Type: "bind", Options: []string{"rbind", "ro"}})
		adj.AddAnnotation("nri.test/owner", "plugin")
		adj.AddRlimit("RLIMIT_NOFILE", 4096, 1024)
		adj.SetLinuxOomScoreAdj(func(i int) *int { return &i }(500))
		adj.SetLinuxMemoryLimit(64 << 20)
		adj.AddLinuxUnified("memory.high", "1000000")
		upd := &api.ContainerUpdate{}
		upd.SetContainerId("other")
		upd.SetLinuxCPUShares(512)
		return adj, []*api.ContainerUpdate{upd}, nil
	}}
	svc := start(t, state, p)
	connected(svc, p)
	pod, c := testPod("p1"), testContainer("new", "p1")
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"sh"}, Env: []string{"PATH=/bin", "INJECTED=no"}}, Linux: &specs.Linux{}}
	if err := svc.CreateContainer(context.Background(), &pod, &c, spec); err != nil {
		t.Fatal(err)
	}
	if seen.GetName() != "c-new" || seen.GetPodSandboxId() != "p1" || seen.GetLabels()["l"] != "v" || !slices.Equal(seen.GetArgs(), []string{"sh"}) {
		t.Errorf("the plugin saw %v", seen)
	}
	if !slices.Equal(spec.Process.Env, []string{"PATH=/bin", "INJECTED=yes"}) {
		t.Errorf("env %v", spec.Process.Env)
	}
	if !slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/injected" && m.Source == "/src" }) {
		t.Errorf("mounts %v", spec.Mounts)
	}
	if spec.Annotations["nri.test/owner"] != "plugin" {
		t.Errorf("annotations %v", spec.Annotations)
	}
	if !slices.Contains(spec.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 1024}) {
		t.Errorf("rlimits %v", spec.Process.Rlimits)
	}
	if spec.Process.OOMScoreAdj == nil || *spec.Process.OOMScoreAdj != 500 {
		t.Errorf("oom_score_adj %v", spec.Process.OOMScoreAdj)
	}
	r := spec.Linux.Resources
	if r == nil || r.Memory == nil || *r.Memory.Limit != 64<<20 || r.Unified["memory.high"] != "1000000" {
		t.Errorf("resources %+v", r)
	}
	if u := state.updates["other"]; u == nil || u.CPU == nil || *u.CPU.Shares != 512 {
		t.Errorf("update of the other container %+v", u)
	}
}

func TestPluginErrorFailsCreate(t *testing.T) {
	p := &plugin{create: func(*api.PodSandbox, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
		return nil, nil, errors.New("refused by policy")
	}}
	svc := start(t, &fakeState{}, p)
	connected(svc, p)
	pod, c := testPod("p1"), testContainer("new", "p1")
	err := svc.CreateContainer(context.Background(), &pod, &c, &specs.Spec{Process: &specs.Process{}})
	if err == nil {
		t.Fatal("a plugin's error did not fail the create")
	}
}

func TestAdjustmentsCridCannotHonourAreErrors(t *testing.T) {
	svc := &Service{state: &fakeState{}}
	for name, adj := range map[string]func(*api.ContainerAdjustment){
		"block I/O class": func(a *api.ContainerAdjustment) { a.SetLinuxBlockIOClass("slow") },
		"RDT class":       func(a *api.ContainerAdjustment) { a.SetLinuxRDTClass("gold") },
		"CDI device":      func(a *api.ContainerAdjustment) { a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/dev=x"}) },
	} {
		t.Run(name, func(t *testing.T) {
			a := &api.ContainerAdjustment{}
			adj(a)
			if err := svc.adjust(&specs.Spec{Process: &specs.Process{}}, a); err == nil {
				t.Fatal("adjusted without an error")
			}
		})
	}
}
