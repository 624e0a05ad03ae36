// Package container owns containers: their records, their overlayfs root
// filesystems, the OCI bundle built from the CRI config, and their lifecycle
// through the OCI runtime driver (runc under conmon). Exits are learned from
// conmon's exit files, so crid can be down while containers run and exit.
//
// A container is recorded as "creating" before anything is made for it, and
// each side effect is recorded before it is made (internal/steps), so a
// crash at any step is undone or finished by the next start; a
// reconciler (reconcile.go) repairs what breaks later, such as a monitor
// that died.
package container

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/cgroup"
	"github.com/crid-project/crid/internal/events"
	"github.com/crid-project/crid/internal/image"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
	"github.com/crid-project/crid/internal/steps"
	"github.com/crid-project/crid/internal/store"
)

const bucket = "containers"

// State of a container.
type State string

const (
	StateCreating State = "creating"
	StateCreated  State = "created"
	StateRunning  State = "running"
	StateExited   State = "exited"
)

// Container is the stored record of a container.
type Container struct {
	ID        string        `json:"id"`
	SandboxID string        `json:"sandboxID"`
	Name      string        `json:"name"`   // reserved name
	Config    []byte        `json:"config"` // runtimeapi.ContainerConfig, protobuf
	ImageID   digest.Digest `json:"imageID"`
	ImageName string        `json:"imageName"` // as the kubelet asked for it
	Handler   string        `json:"handler"`
	State     State         `json:"state"`

	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	ExitCode   int32     `json:"exitCode"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	Pid        int       `json:"pid,omitempty"`

	LogPath string `json:"logPath,omitempty"`
	// StopSignal is what StopContainer sends before SIGKILL: the config's
	// stop_signal, else the image's StopSignal, else SIGTERM.
	StopSignal int `json:"stopSignal"`
	// MonitorCgroup is the cgroupfs path of conmon's own cgroup, if any.
	MonitorCgroup string `json:"monitorCgroup,omitempty"`
	Infra         bool   `json:"infra,omitempty"`     // a pod's pause process: hidden from CRI calls
	User          []byte `json:"user,omitempty"`      // runtimeapi.ContainerUser, protobuf
	Resources     []byte `json:"resources,omitempty"` // runtimeapi.LinuxContainerResources, protobuf
	// ImageVolumes are the images mounted for the config's image mounts,
	// recorded with the record itself: InUse sees them before they are
	// mounted and until the record is gone.
	ImageVolumes []ImageVolume `json:"imageVolumes,omitempty"`
	// Restore, for a container made from a checkpoint archive, is its
	// unpacked checkpoint: StartContainer restores from it.
	Restore string `json:"restore,omitempty"`

	// Steps are the side effects made for the container (see steps.go).
	Steps steps.Log `json:"steps,omitempty"`
	// Removing is set once RemoveContainer began: the container is hidden
	// and its removal is finished by a retry or by the next start.
	Removing bool `json:"removing,omitempty"`

	legacy
	config *runtimeapi.ContainerConfig
}

// ContainerConfig decodes the CRI config.
func (c *Container) ContainerConfig() *runtimeapi.ContainerConfig {
	if c.config == nil {
		c.config = &runtimeapi.ContainerConfig{}
		_ = proto.Unmarshal(c.Config, c.config)
	}
	return c.config
}

// Images is what the container manager needs of the image store.
type Images interface {
	Get(ref string) (image.Image, error)
	Pull(ctx context.Context, ref string, auth *image.Auth) (digest.Digest, error)
	Config(img image.Image) ([]byte, error)
	LayerDir(diffID digest.Digest) string
}

// Sandboxes is what it needs of the sandbox manager.
type Sandboxes interface {
	Get(id string) (sandbox.Sandbox, error)
	// Use holds a ready pod while a container is created in it.
	Use(id string) (sb sandbox.Sandbox, release func(), err error)
	// Lookup returns the pod's record, in any state.
	Lookup(id string) (sandbox.Sandbox, bool)
}

// Observer is told of lifecycle changes (the kubelet's event stream) and
// of how long each stage of creating a container took (metrics). It must
// not block.
type Observer interface {
	Event(ev events.Event)
	Stage(op, stage string, d time.Duration)
}

// Runtime is what the manager needs of the OCI runtime driver (runc
// under conmon in crid; a fake in the unit tests).
type Runtime interface {
	Create(ctx context.Context, opts oci.CreateOptions) (pid int, err error)
	Start(ctx context.Context, id string, h oci.Handler) error
	Kill(ctx context.Context, id string, h oci.Handler, sig syscall.Signal, all bool) error
	Delete(ctx context.Context, id string, h oci.Handler) error
	State(ctx context.Context, id string, h oci.Handler) (oci.State, error)
	UpdateResources(ctx context.Context, id string, h oci.Handler, res *specs.LinuxResources) error
	Checkpoint(ctx context.Context, id string, h oci.Handler, opts oci.CheckpointOptions) error
	Pause(ctx context.Context, id string, h oci.Handler) error
	Resume(ctx context.Context, id string, h oci.Handler) error
	ExecSync(ctx context.Context, id string, h oci.Handler, p *specs.Process, timeout time.Duration) (oci.ExecResult, error)
	Exec(ctx context.Context, id string, h oci.Handler, p *specs.Process, opts oci.ExecOptions) (int32, error)
	Attach(ctx context.Context, id string, opts oci.AttachOptions) error
	ReopenLog(ctx context.Context, id string) error

	// ExitStatus is the exit the monitor recorded, if it has.
	ExitStatus(id string) (oci.Exit, bool)
	// MonitorAlive reports whether the container's monitor still runs.
	MonitorAlive(id string) bool
	// WatchMonitor has MonitorExits report the end of id's monitor.
	WatchMonitor(id string) error
	Exits() <-chan string
	MonitorExits() <-chan string
	Rescans() <-chan struct{}
	// Check reports why monitors cannot be started (their binary is gone).
	Check() error
}

// Config configures the manager.
type Config struct {
	RootDir, StateDir string
	CgroupDriver      cgroup.Driver
	Handlers          map[string]oci.Handler // at start; a reload calls SetHandlers
	DefaultHandler    string
	SandboxImage      string // pause image for pods sharing a PID namespace
	// SELinuxEnabled: the host has SELinux, and crid, which applies no
	// labels, refuses containers that ask for one.
	SELinuxEnabled bool
	// CDISpecDirs hold the CDI spec files that name the devices containers
	// ask for (config [cdi] spec_dirs); none: no CDI device resolves.
	CDISpecDirs []string
	// IDMapLayers: image layers under RootDir can be mounted idmapped
	// (namespaces.IDMapSupported), which pods in a user namespace need.
	IDMapLayers bool
	// CheckpointOff says why containers cannot be checkpointed here (config
	// [checkpoint], or CRIU's check); nil: they can.
	CheckpointOff error
	// CRIUDir holds the CRIU binary, named criu, that the OCI runtime runs
	// (checkpoint.BinDir); "": the one in PATH.
	CRIUDir string
	// Version is crid's, written into pod checkpoints.
	Version string
}

// Manager creates and tracks containers.
type Manager struct {
	cfg       Config
	cgroups   cgroup.Layout
	rt        Runtime
	images    Images
	sandboxes Sandboxes
	log       *slog.Logger
	host      hostFacts
	cdi       *cdiRegistry
	recs      *store.Table[Container]
	steps     steps.Recorder[Container]

	hset atomic.Pointer[handlerSet] // Config's handlers until SetHandlers

	Observer Observer // set after construction; nil: nobody is told
	Plugins  Plugins  // set after construction; nil: NRI is off
	// stopOnce holds a sync.Once per container (id → *sync.Once): the
	// plugins hear of its stop once, and before its removal, whichever of
	// the exit watcher and the removal comes to it first (plugins.go).
	stopOnce sync.Map

	// OnLayerMade, if set, is told of each new writable-layer dir (the
	// disk usage cache then knows it empty instead of unmeasured).
	OnLayerMade func(dir string)
	// OnInfraExit, if set, is told that a pod's infra process exited.
	OnInfraExit func(podID string)

	// processes caches each container's OCI process spec for exec.
	processes sync.Map // id → *specs.Process
}

// New loads the stored containers.
func New(cfg Config, db *store.Store, rt Runtime, images Images, sandboxes Sandboxes, log *slog.Logger) (*Manager, error) {
	host, err := readHostFacts()
	if err != nil {
		return nil, err
	}
	recs, err := store.NewTable(db, bucket, "container", store.Keys[Container]{
		ID:   func(c *Container) string { return c.ID },
		Name: func(c *Container) string { return c.Name },
	})
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg: cfg, cgroups: cgroup.Layout{Driver: cfg.CgroupDriver}, rt: rt, images: images, sandboxes: sandboxes,
		log: log, host: host, recs: recs, cdi: newCDIRegistry(cfg.CDISpecDirs, log),
	}
	m.steps = steps.Recorder[Container]{Table: recs, Log: func(c *Container) *steps.Log { return &c.Steps }, Op: "container"}
	m.hset.Store(newHandlerSet(cfg.Handlers, cfg.DefaultHandler, cfg.IDMapLayers))
	for _, c := range recs.List(nil) {
		if err := m.migrate(c); err != nil {
			return nil, err
		}
		m.stopOnce.Store(c.ID, new(sync.Once))
	}
	return m, nil
}

// Get returns a copy of the container with id (a unique prefix is accepted).
func (m *Manager) Get(id string) (Container, error) { return m.recs.Find(id, visible) }

// getAny is Get including infra containers.
func (m *Manager) getAny(id string) (Container, error) {
	return m.recs.Find(id, func(c *Container) bool { return c.State != StateCreating && !c.Removing })
}

// visible: half-made, half-removed and infra containers are not the
// kubelet's to see.
func visible(c *Container) bool { return c.State != StateCreating && !c.Removing && !c.Infra }

// List returns copies of all existing containers the kubelet made.
func (m *Manager) List() []Container { return m.recs.List(visible) }

// PodStatuses are the statuses of every container of the pod the kubelet
// made, newest first: PodSandboxStatus reports them (containers_statuses,
// for the kubelet's evented PLEG) and so do the pod's lifecycle events.
func (m *Manager) PodStatuses(podID string) []*runtimeapi.ContainerStatus {
	cs := m.recs.List(func(c *Container) bool { return visible(c) && c.SandboxID == podID })
	out := make([]*runtimeapi.ContainerStatus, 0, len(cs))
	for _, c := range Sorted(cs) {
		out = append(out, c.CRIStatus())
	}
	return out
}

// InUse reports whether any container uses the image (its layers are the
// lower directories of the container's rootfs or of an image volume).
func (m *Manager) InUse(imageID digest.Digest) (string, bool) {
	for _, c := range m.recs.List(func(c *Container) bool { return c.usesImage(imageID) }) {
		return c.ID, true
	}
	return "", false
}

// Recovering counts the objects the start-up reconciler has yet to see.
func (m *Manager) Recovering() int { return m.recs.Recovering() }

func (m *Manager) checkRecovered(id string) error { return m.recs.CheckRecovered(id) }

// Dirs of a container: the bundle and rootfs mount point live in the state
// dir; the writable layer in the root dir.
func (m *Manager) bundleDir(id string) string { return filepath.Join(m.cfg.StateDir, "containers", id) }
func (m *Manager) rootfsDir(id string) string { return filepath.Join(m.bundleDir(id), "rootfs") }
func (m *Manager) layerDir(id string) string  { return filepath.Join(m.cfg.RootDir, "containers", id) }

// event tells the observer that c changed; infra containers are not the
// kubelet's and are not reported.
func (m *Manager) event(t runtimeapi.ContainerEventType, c *Container) {
	if m.Observer == nil || c.Infra {
		return
	}
	m.Observer.Event(events.Event{Type: t, ContainerID: c.ID, PodID: c.SandboxID, At: time.Now()})
}

func (m *Manager) stage(stage string, d time.Duration) {
	if m.Observer != nil {
		m.Observer.Stage("container", stage, d)
	}
}

// StatsPaths are where c's usage is read: its cgroup (a cgroupfs path,
// whichever the driver; empty if the pod's parent is no valid slice name,
// which runc would have refused) and its writable layer (the overlay upper
// dir).
func (m *Manager) StatsPaths(sb *sandbox.Sandbox, c *Container) (cgroupDir, upper string) {
	cgroupDir, _ = cgroup.Dir(m.cgroups.Container(sb.CgroupParent, c.ID))
	return cgroupDir, filepath.Join(m.layerDir(c.ID), "upper")
}

// LayersDir holds every container's writable layer: the container
// filesystem ImageFsInfo reports.
func (m *Manager) LayersDir() string { return filepath.Join(m.cfg.RootDir, "containers") }
