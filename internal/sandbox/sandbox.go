// Package sandbox owns pod sandboxes: the namespaces crid creates and pins
// for a pod (network, IPC, UTS: no pause process unless the pod shares its
// PID namespace), the pod's files (resolv.conf, hosts, hostname, /dev/shm),
// its CNI network, and its record in the store.
//
// A sandbox is recorded as "creating" before anything is made for it, so a
// crash at any step of RunPodSandbox is rolled back by the next start.
package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/events"
	"github.com/crid-project/crid/internal/ids"
	"github.com/crid-project/crid/internal/names"
	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/network"
	"github.com/crid-project/crid/internal/store"
)

const bucket = "sandboxes"

// State of a sandbox.
type State string

const (
	StateCreating State = "creating" // RunPodSandbox in progress (or interrupted)
	StateReady    State = "ready"
	StateNotReady State = "notready"
)

// Sandbox is the stored record of a pod sandbox.
type Sandbox struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`   // reserved name: name_namespace_uid_attempt
	Config         []byte            `json:"config"` // runtimeapi.PodSandboxConfig, protobuf
	RuntimeHandler string            `json:"runtimeHandler"`
	State          State             `json:"state"`
	CreatedAt      time.Time         `json:"createdAt"`
	Dir            string            `json:"dir"`
	Namespaces     namespaces.Pinned `json:"namespaces,omitempty"`
	IPs            []string          `json:"ips,omitempty"`
	Network        bool              `json:"network"` // CNI ADD ran: DEL is owed
	ShmMounted     bool              `json:"shmMounted"`
	InfraID        string            `json:"infraID,omitempty"` // pause container holding a shared PID namespace
	InfraPID       int               `json:"infraPID,omitempty"`
	CgroupParent   string            `json:"cgroupParent,omitempty"`
	config         *runtimeapi.PodSandboxConfig
}

// PodConfig decodes the pod's CRI config.
func (s *Sandbox) PodConfig() *runtimeapi.PodSandboxConfig {
	if s.config == nil {
		s.config = &runtimeapi.PodSandboxConfig{}
		_ = proto.Unmarshal(s.Config, s.config)
	}
	return s.config
}

// Files the pod's containers mount.
func (s *Sandbox) ResolvConf() string { return filepath.Join(s.Dir, "resolv.conf") }
func (s *Sandbox) Hosts() string      { return filepath.Join(s.Dir, "hosts") }
func (s *Sandbox) Hostname() string   { return filepath.Join(s.Dir, "hostname") }

// Shm is the pod's /dev/shm: its own tmpfs, or the host's for host-IPC pods.
func (s *Sandbox) Shm() string {
	if !s.ShmMounted {
		return "/dev/shm"
	}
	return s.shmDir()
}

func (s *Sandbox) shmDir() string { return filepath.Join(s.Dir, "shm") }

// Containers is what the sandbox manager needs of the container manager.
type Containers interface {
	StopPod(ctx context.Context, podID string) error
	RemovePod(ctx context.Context, podID string) error
}

// Infra runs the pause process of a pod that shares its PID namespace.
type Infra interface {
	StartInfra(ctx context.Context, sb *Sandbox) (id string, pid int, err error)
	StopInfra(ctx context.Context, sb *Sandbox) error
}

// Observer is told of lifecycle changes (the kubelet's event stream) and
// of how long each stage of creating a pod took (metrics). It must not
// block.
type Observer interface {
	Event(ev events.Event)
	Stage(op, stage string, d time.Duration)
}

// Config configures the manager.
type Config struct {
	StateDir string
	ShmSize  int64 // bytes of each pod's /dev/shm
	Handlers map[string]bool
}

// Manager creates and tracks sandboxes.
type Manager struct {
	cfg   Config
	db    *store.Store
	net   *network.Manager
	names *names.Registry
	log   *slog.Logger

	Containers Containers // set after construction: the two managers refer to each other
	Infra      Infra
	Observer   Observer // set after construction; nil: nobody is told

	mu        sync.Mutex
	sandboxes map[string]*Sandbox
	locks     ids.Locks // serialises operations on one object
}

// New loads the stored sandboxes.
func New(cfg Config, db *store.Store, net *network.Manager, log *slog.Logger) (*Manager, error) {
	m := &Manager{cfg: cfg, db: db, net: net, names: names.New(), log: log, sandboxes: map[string]*Sandbox{}}
	err := db.View(func(tx *store.Tx) error {
		all, err := store.List[Sandbox](tx, bucket)
		for i := range all {
			sb := &all[i]
			sb.PodConfig() // decode once; copies share it read-only
			m.sandboxes[sb.ID] = sb
			if sb.State != StateCreating {
				m.names.Load(sb.Name, sb.ID)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load sandboxes: %w", err)
	}
	return m, nil
}

func (m *Manager) lock(id string) func() { return m.locks.Lock(id) }

// Get returns a copy of the sandbox with id (a unique prefix is accepted).
func (m *Manager) Get(id string) (Sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sb, err := m.findLocked(id)
	if err != nil {
		return Sandbox{}, err
	}
	return *sb, nil
}

func (m *Manager) findLocked(id string) (*Sandbox, error) {
	sb, err := ids.Find(m.sandboxes, id, "pod sandbox", func(sb *Sandbox) bool { return sb.State != StateCreating })
	if err == nil && sb.State == StateCreating {
		return nil, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return sb, err
}

// List returns copies of all sandboxes that exist (not half-created ones).
func (m *Manager) List() []Sandbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Sandbox, 0, len(m.sandboxes))
	for _, sb := range m.sandboxes {
		if sb.State != StateCreating {
			out = append(out, *sb)
		}
	}
	return out
}

// save writes sb to the store and the in-memory index.
func (m *Manager) save(sb *Sandbox) error {
	if err := m.db.Update(func(tx *store.Tx) error { return tx.Put(bucket, sb.ID, sb) }); err != nil {
		return fmt.Errorf("record pod sandbox %s: %w", sb.ID, err)
	}
	c := *sb
	m.mu.Lock()
	m.sandboxes[sb.ID] = &c
	m.mu.Unlock()
	return nil
}

func (m *Manager) delete(sb *Sandbox) error {
	if err := m.db.Update(func(tx *store.Tx) error { return tx.Delete(bucket, sb.ID) }); err != nil {
		return fmt.Errorf("delete pod sandbox record %s: %w", sb.ID, err)
	}
	m.mu.Lock()
	delete(m.sandboxes, sb.ID)
	m.mu.Unlock()
	m.names.Release(sb.Name, sb.ID)
	return nil
}

// NetworkReady reports the CNI status for the runtime's Status call.
func (m *Manager) NetworkReady() (bool, string, string) { return m.net.Ready() }

// SetPodCIDR passes the kubelet's pod CIDR to the CNI plugins.
func (m *Manager) SetPodCIDR(cidr string) { m.net.SetPodCIDR(cidr) }

func (s *Sandbox) nsDir() string { return filepath.Join(s.Dir, "ns") }

// event tells the observer that the pod changed; pod events carry the pod's
// ID as the container ID, as containerd's do.
func (m *Manager) event(t runtimeapi.ContainerEventType, id string) {
	if m.Observer != nil {
		m.Observer.Event(events.Event{Type: t, ContainerID: id, PodID: id, At: time.Now()})
	}
}

func (m *Manager) stage(stage string, d time.Duration) {
	if m.Observer != nil {
		m.Observer.Stage("pod", stage, d)
	}
}
