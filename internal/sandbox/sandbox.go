// Package sandbox owns pod sandboxes: the namespaces crid creates and pins
// for a pod (network, IPC, UTS: no pause process unless the pod shares its
// PID namespace), the pod's files (resolv.conf, hosts, hostname, /dev/shm),
// its CNI network, and its record in the store.
//
// A sandbox is recorded as "creating" before anything is made for it, and
// each side effect is recorded before it is made (internal/steps), so a
// crash at any step of RunPodSandbox, StopPodSandbox or RemovePodSandbox
// is undone or finished by the next start.
package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/events"
	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/network"
	"github.com/crid-project/crid/internal/steps"
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
	InfraID        string            `json:"infraID,omitempty"` // pause container holding a shared PID namespace
	InfraPID       int               `json:"infraPID,omitempty"`
	CgroupParent   string            `json:"cgroupParent,omitempty"`
	// Steps are the side effects made for the pod (see steps.go), in order.
	Steps steps.Log `json:"steps,omitempty"`
	// Removing is set once RemovePodSandbox began: the pod is hidden and
	// its removal is finished by a retry or by the next start.
	Removing bool `json:"removing,omitempty"`
	// Reason says why a pod is not ready when crid, not the kubelet,
	// stopped it (its infra process died, the node rebooted).
	Reason string `json:"reason,omitempty"`

	legacy
	config *runtimeapi.PodSandboxConfig
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
	if !s.Steps.Has(stepShm) {
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
	// StartInfra creates and starts the infra container with the ID the
	// pod's record already holds, and returns its pid.
	StartInfra(ctx context.Context, sb *Sandbox) (pid int, err error)
	// StopInfra removes it; an infra container that does not exist (a
	// crash came before its create) is not an error.
	StopInfra(ctx context.Context, sb *Sandbox) error
	// InfraExited reports whether the infra process is known to be gone.
	InfraExited(sb *Sandbox) bool
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
	// HasHandler reports whether a runtime handler pods may ask for is
	// configured (the container manager's, which a reload changes).
	HasHandler func(name string) bool
	// SELinuxEnabled: the host has SELinux, and crid, which applies no
	// labels, refuses pods that ask for one.
	SELinuxEnabled bool
	// SupportsUserNS reports whether a runtime handler ("" is the
	// default) can run pods in a user namespace of their own.
	SupportsUserNS func(handler string) bool
}

// Manager creates and tracks sandboxes.
type Manager struct {
	cfg   Config
	net   Network
	log   *slog.Logger
	recs  *store.Table[Sandbox]
	steps steps.Recorder[Sandbox]

	Containers Containers // set after construction: the two managers refer to each other
	Infra      Infra
	Observer   Observer // set after construction; nil: nobody is told
	Plugins    Plugins  // set after construction; nil: NRI is off
}

// Plugins are told of the lifecycle of pods (NRI, internal/nri).
type Plugins interface {
	// BlockSync holds back the synchronisation of a connecting plugin
	// until unblock: a pod announced to the plugins is committed before
	// a new plugin lists what exists.
	BlockSync() (unblock func())
	// RunPodSandbox comes before the pod is ready; an error fails it.
	RunPodSandbox(ctx context.Context, sb *Sandbox) error
	StopPodSandbox(ctx context.Context, sb *Sandbox) error
	RemovePodSandbox(ctx context.Context, sb *Sandbox) error
	// UpdatePodSandbox comes before new pod resources are applied; an
	// error refuses them.
	UpdatePodSandbox(ctx context.Context, sb *Sandbox, overhead, resources *runtimeapi.LinuxContainerResources) error
	PostUpdatePodSandbox(ctx context.Context, sb *Sandbox) error
}

// Network is what the manager needs of the CNI manager.
type Network interface {
	Setup(ctx context.Context, pod network.PodNetwork) (network.Result, error)
	Teardown(ctx context.Context, pod network.PodNetwork) error
	Ready() (ok bool, reason, message string)
	SetPodCIDR(cidr string)
}

// New loads the stored sandboxes.
func New(cfg Config, db *store.Store, net Network, log *slog.Logger) (*Manager, error) {
	recs, err := store.NewTable(db, bucket, "pod sandbox", store.Keys[Sandbox]{
		ID:   func(sb *Sandbox) string { return sb.ID },
		Name: func(sb *Sandbox) string { return sb.Name },
	})
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, net: net, log: log, recs: recs}
	m.steps = steps.Recorder[Sandbox]{Table: recs, Log: func(sb *Sandbox) *steps.Log { return &sb.Steps }, Op: "pod"}
	for _, sb := range recs.List(nil) {
		if err := m.migrate(sb); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// visible: half-made and half-removed pods are not the kubelet's to see.
func visible(sb *Sandbox) bool { return sb.State != StateCreating && !sb.Removing }

// Get returns a copy of the sandbox with id (a unique prefix is accepted).
func (m *Manager) Get(id string) (Sandbox, error) { return m.recs.Find(id, visible) }

// Lookup returns the pod's record, in any state.
func (m *Manager) Lookup(id string) (Sandbox, bool) { return m.recs.Get(id) }

// List returns copies of all sandboxes that exist (not half-created ones).
func (m *Manager) List() []Sandbox { return m.recs.List(visible) }

// Use returns the ready sandbox id and holds it until release is called:
// meanwhile it cannot be stopped or removed, so a container created in it
// is never orphaned by a concurrent RemovePodSandbox.
func (m *Manager) Use(id string) (sb Sandbox, release func(), err error) {
	sb, err = m.Get(id)
	if err != nil {
		return Sandbox{}, nil, err
	}
	if err := m.checkRecovered(sb.ID); err != nil {
		return Sandbox{}, nil, err
	}
	release = m.recs.RLock(sb.ID)
	if sb, err = m.Get(sb.ID); err != nil {
		release()
		return Sandbox{}, nil, err
	}
	if sb.State != StateReady {
		release()
		return Sandbox{}, nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	return sb, release, nil
}

// Recovering counts the objects the start-up reconciler has yet to see.
func (m *Manager) Recovering() int { return m.recs.Recovering() }

func (m *Manager) checkRecovered(id string) error { return m.recs.CheckRecovered(id) }

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
