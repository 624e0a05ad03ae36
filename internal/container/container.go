// Package container owns containers: their records, their overlayfs root
// filesystems, the OCI bundle built from the CRI config, and their lifecycle
// through the OCI runtime driver (runc under conmon). Exits are learned from
// conmon's exit files, so crid can be down while containers run and exit.
//
// A container is recorded as "creating" before anything is made for it, so a
// crash at any step of CreateContainer is rolled back by the next start.
package container

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/events"
	"github.com/crid-project/crid/internal/ids"
	"github.com/crid-project/crid/internal/image"
	"github.com/crid-project/crid/internal/names"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
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

	LogPath       string `json:"logPath,omitempty"`
	RootfsMounted bool   `json:"rootfsMounted"`
	OCICreated    bool   `json:"ociCreated"` // conmon/runc state exist: runc delete is owed
	StopSignal    int    `json:"stopSignal"`
	Infra         bool   `json:"infra,omitempty"`     // a pod's pause process: hidden from CRI calls
	User          []byte `json:"user,omitempty"`      // runtimeapi.ContainerUser, protobuf
	Resources     []byte `json:"resources,omitempty"` // runtimeapi.LinuxContainerResources, protobuf

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
}

// Observer is told of lifecycle changes (the kubelet's event stream) and
// of how long each stage of creating a container took (metrics). It must
// not block.
type Observer interface {
	Event(ev events.Event)
	Stage(op, stage string, d time.Duration)
}

// Config configures the manager.
type Config struct {
	RootDir, StateDir string
	CgroupDriver      string // cgroupfs or systemd
	Handlers          map[string]oci.Handler
	DefaultHandler    string
	SandboxImage      string // pause image for pods sharing a PID namespace
}

// Manager creates and tracks containers.
type Manager struct {
	cfg       Config
	db        *store.Store
	rt        *oci.Runtime
	images    Images
	sandboxes Sandboxes
	names     *names.Registry
	log       *slog.Logger
	host      hostFacts

	Observer Observer        // set after construction; nil: nobody is told
	rro      map[string]bool // handler → supports recursive read-only mounts

	mu         sync.Mutex
	containers map[string]*Container
	exited     map[string]chan struct{} // closed when the container's exit is recorded
	locks      ids.Locks                // serialises operations on one object
	// processes caches each container's OCI process spec for exec.
	processes sync.Map // id → *specs.Process
}

// New loads the stored containers.
func New(cfg Config, db *store.Store, rt *oci.Runtime, images Images, sandboxes Sandboxes, log *slog.Logger) (*Manager, error) {
	host, err := readHostFacts()
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg: cfg, db: db, rt: rt, images: images, sandboxes: sandboxes,
		names: names.New(), log: log, host: host,
		containers: map[string]*Container{}, exited: map[string]chan struct{}{},
	}
	m.rro = map[string]bool{}
	for name, h := range cfg.Handlers {
		m.rro[name] = runtimeFeatures(h.Path)
	}
	err = db.View(func(tx *store.Tx) error {
		all, err := store.List[Container](tx, bucket)
		for i := range all {
			c := &all[i]
			c.ContainerConfig() // decode once; copies share it read-only
			m.containers[c.ID] = c
			if c.State != StateCreating {
				m.names.Load(c.Name, c.ID)
			}
			ch := make(chan struct{})
			if c.State == StateExited {
				close(ch)
			}
			m.exited[c.ID] = ch
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load containers: %w", err)
	}
	return m, nil
}

// SupportsRRO reports whether the runtime handler can make recursively
// read-only mounts (the kubelet asks for them only when Status says so).
func (m *Manager) SupportsRRO(handler string) bool { return m.rro[handler] }

func (m *Manager) handler(name string) (oci.Handler, error) {
	if name == "" {
		name = m.cfg.DefaultHandler
	}
	h, ok := m.cfg.Handlers[name]
	if !ok {
		return oci.Handler{}, fmt.Errorf("runtime handler %q is not configured: %w", name, errdefs.ErrInvalidArgument)
	}
	return h, nil
}

func (m *Manager) lock(id string) func() { return m.locks.Lock(id) }

// Get returns a copy of the container with id (a unique prefix is accepted).
func (m *Manager) Get(id string) (Container, error) {
	c, err := m.getAny(id)
	if err == nil && c.Infra {
		return Container{}, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, err
}

// getAny is Get including infra containers.
func (m *Manager) getAny(id string) (Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.findLocked(id)
	if err != nil {
		return Container{}, err
	}
	return *c, nil
}

func (m *Manager) findLocked(id string) (*Container, error) {
	c, err := ids.Find(m.containers, id, "container", func(c *Container) bool { return c.State != StateCreating && !c.Infra })
	if err == nil && c.State == StateCreating {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, err
}

// List returns copies of all existing containers the kubelet made.
func (m *Manager) List() []Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Container, 0, len(m.containers))
	for _, c := range m.containers {
		if c.State != StateCreating && !c.Infra {
			out = append(out, *c)
		}
	}
	return out
}

// InUse reports whether any container uses the image (its layers are the
// container's overlayfs lower directories).
func (m *Manager) InUse(imageID digest.Digest) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.containers {
		if c.ImageID == imageID {
			return c.ID, true
		}
	}
	return "", false
}

func (m *Manager) save(c *Container) error {
	if err := m.db.Update(func(tx *store.Tx) error { return tx.Put(bucket, c.ID, c) }); err != nil {
		return fmt.Errorf("record container %s: %w", c.ID, err)
	}
	cp := *c
	m.mu.Lock()
	m.containers[c.ID] = &cp
	if _, ok := m.exited[c.ID]; !ok {
		m.exited[c.ID] = make(chan struct{})
	}
	m.mu.Unlock()
	return nil
}

func (m *Manager) delete(c *Container) error {
	if err := m.db.Update(func(tx *store.Tx) error { return tx.Delete(bucket, c.ID) }); err != nil {
		return fmt.Errorf("delete container record %s: %w", c.ID, err)
	}
	m.mu.Lock()
	delete(m.containers, c.ID)
	delete(m.exited, c.ID)
	m.mu.Unlock()
	m.names.Release(c.Name, c.ID)
	m.locks.Forget(c.ID)
	m.processes.Delete(c.ID)
	return nil
}

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

// StatsPaths are where c's usage is read: its cgroup (cgroupfs form) and
// its writable layer (the overlay upper dir).
func (m *Manager) StatsPaths(sb *sandbox.Sandbox, c *Container) (cgroup, upper string) {
	return m.cgroupsPath(sb, c.ID), filepath.Join(m.layerDir(c.ID), "upper")
}

// LayersDir holds every container's writable layer: the container
// filesystem ImageFsInfo reports.
func (m *Manager) LayersDir() string { return filepath.Join(m.cfg.RootDir, "containers") }
