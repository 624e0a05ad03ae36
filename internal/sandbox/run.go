package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/container/spec"
	"github.com/crid-project/crid/internal/ids"
	"github.com/crid-project/crid/internal/namespaces"
	"github.com/crid-project/crid/internal/network"
	"github.com/crid-project/crid/internal/steps"
)

// Run creates a pod sandbox and returns its ID. A retry of a create that is
// in flight or finished after its caller gave up returns the same ID.
func (m *Manager) Run(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	md := cfg.GetMetadata()
	switch {
	case md.GetName() == "":
		return "", fmt.Errorf("config.metadata.name: required: %w", errdefs.ErrInvalidArgument)
	case md.GetNamespace() == "":
		return "", fmt.Errorf("config.metadata.namespace: required: %w", errdefs.ErrInvalidArgument)
	case md.GetUid() == "":
		return "", fmt.Errorf("config.metadata.uid: required: %w", errdefs.ErrInvalidArgument)
	}
	if handler != "" && (m.cfg.HasHandler == nil || !m.cfg.HasHandler(handler)) {
		return "", fmt.Errorf("runtime handler %q is not configured: %w", handler, errdefs.ErrInvalidArgument)
	}
	if err := validatePodPaths(cfg); err != nil {
		return "", err
	}
	userns, err := m.userNS(cfg, handler)
	if err != nil {
		return "", err
	}
	if m.cfg.SELinuxEnabled {
		if err := spec.RefuseSELinux("config.linux.security_context.selinux_options", cfg.GetLinux().GetSecurityContext().GetSelinuxOptions()); err != nil {
			return "", err
		}
	}
	name := strings.Join([]string{md.GetName(), md.GetNamespace(), md.GetUid(), fmt.Sprint(md.GetAttempt())}, "_")
	id := ids.New()
	res, existing, err := m.recs.Reserve(ctx, name, id)
	if err != nil {
		return "", err
	}
	if existing != "" {
		return existing, nil
	}
	err = m.run(ctx, id, name, cfg, handler, userns)
	res.Done(err, ctx.Err() != nil)
	if err != nil {
		return "", err
	}
	return id, nil
}

func validatePodPaths(cfg *runtimeapi.PodSandboxConfig) error {
	if d := cfg.GetLogDirectory(); d != "" && (!filepath.IsAbs(d) || hasDotDot(d)) {
		return fmt.Errorf("config.log_directory %q: must be an absolute path without '..': %w", d, errdefs.ErrInvalidArgument)
	}
	return nil
}

// userNS checks a pod's user namespace options (hostUsers: false): valid
// maps, no host namespace beside them (as Kubernetes validates pods), and a
// runtime handler that can run such a pod. It returns the namespace's
// maps, nil for a pod in the host's user namespace.
func (m *Manager) userNS(cfg *runtimeapi.PodSandboxConfig, handler string) (*namespaces.UserNS, error) {
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	userns, err := spec.PodUserNS(nsOpts)
	if err != nil || userns == nil {
		return nil, err
	}
	const field = "config.linux.security_context.namespace_options"
	for kind, mode := range map[string]runtimeapi.NamespaceMode{"network": nsOpts.GetNetwork(), "ipc": nsOpts.GetIpc(), "pid": nsOpts.GetPid()} {
		if mode == runtimeapi.NamespaceMode_NODE {
			return nil, fmt.Errorf("%s: a pod with a user namespace cannot use the host's %s namespace: %w", field, kind, errdefs.ErrInvalidArgument)
		}
	}
	if m.cfg.SupportsUserNS == nil || !m.cfg.SupportsUserNS(handler) {
		return nil, fmt.Errorf("%s.userns_options: runtime handler %q cannot run pods in a user namespace (it needs idmapped mounts: `crid check` says what is missing): %w",
			field, handler, errdefs.ErrFailedPrecondition)
	}
	conv := func(in []specs.LinuxIDMapping) []namespaces.IDMap {
		out := make([]namespaces.IDMap, len(in))
		for i, m := range in {
			out[i] = namespaces.IDMap{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size}
		}
		return out
	}
	return &namespaces.UserNS{UIDs: conv(userns.UIDs), GIDs: conv(userns.GIDs)}, nil
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

func (m *Manager) run(ctx context.Context, id, name string, cfg *runtimeapi.PodSandboxConfig, handler string, userns *namespaces.UserNS) (retErr error) {
	raw, err := proto.Marshal(cfg)
	if err != nil {
		return err
	}
	unlock := m.recs.Lock(id)
	defer unlock()
	// The intent record comes first: whatever follows, a crash is undone
	// at the next start from what this record and its steps say.
	if err := m.recs.Insert(Sandbox{
		ID:             id,
		Name:           name,
		Config:         raw,
		RuntimeHandler: handler,
		State:          StateCreating,
		CreatedAt:      time.Now(),
		Dir:            filepath.Join(m.cfg.StateDir, "sandboxes", id),
		CgroupParent:   cfg.GetLinux().GetCgroupParent(),
		config:         cfg,
	}); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			// Roll back on a context of its own: a kubelet timeout must not
			// leave half a pod.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := m.destroy(cctx, id); err != nil {
				m.log.Error("roll back pod sandbox", "pod", id, "error", err)
			}
		}
	}()
	start := time.Now()
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	hostNet := nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostIPC := nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE
	hostname := cfg.GetHostname()
	if hostNet {
		if hostname, err = os.Hostname(); err != nil {
			return err
		}
	}
	var kinds []namespaces.Kind
	if !hostNet {
		// A host-network pod keeps the host's UTS namespace too, as in Kubernetes.
		kinds = append(kinds, namespaces.Net, namespaces.UTS)
	}
	if !hostIPC {
		kinds = append(kinds, namespaces.IPC)
	}
	var pinned namespaces.Pinned
	var ips []string
	var infraPID int
	plan := []steps.Step[Sandbox]{{
		Name: stepDir,
		Make: func(_ context.Context, sb Sandbox) error {
			if err := os.MkdirAll(sb.Dir, 0o711); err != nil {
				return fmt.Errorf("create sandbox dir: %w", err)
			}
			return writePodFiles(&sb, cfg, hostNet, hostname)
		},
	}}
	if len(kinds) > 0 {
		plan = append(plan, steps.Step[Sandbox]{
			Name: stepNamespaces,
			Make: func(_ context.Context, sb Sandbox) (err error) {
				if userns == nil {
					pinned, err = namespaces.Create(sb.nsDir(), kinds, hostname)
				} else {
					pinned, err = namespaces.CreateWithUser(sb.nsDir(), kinds, hostname, *userns)
				}
				if err != nil {
					return fmt.Errorf("create pod namespaces: %w", err)
				}
				return nil
			},
			Made: func(sb *Sandbox) { sb.Namespaces = pinned },
		})
	}
	if !hostIPC {
		plan = append(plan, steps.Step[Sandbox]{
			Name: stepShm,
			Make: func(_ context.Context, sb Sandbox) error { return mountShm(sb.shmDir(), m.cfg.ShmSize) },
		})
	}
	if !hostNet {
		plan = append(plan, steps.Step[Sandbox]{
			Name: stepNetwork,
			Make: func(ctx context.Context, sb Sandbox) error {
				res, err := m.net.Setup(ctx, podNetwork(&sb))
				if err != nil {
					return fmt.Errorf("set up pod network: %w", err)
				}
				for _, ip := range res.IPs {
					ips = append(ips, ip.String())
				}
				return nil
			},
			Made: func(sb *Sandbox) { sb.IPs = ips },
		})
	}
	if nsOpts.GetPid() == runtimeapi.NamespaceMode_POD {
		if m.Infra == nil {
			return fmt.Errorf("a pod-wide PID namespace needs an infra process: %w", errdefs.ErrNotImplemented)
		}
		plan = append(plan, steps.Step[Sandbox]{
			Name: stepInfra,
			// The infra container's ID is recorded before it exists, so
			// a crash between its start and the end of this step is
			// undone by removing it.
			Intent: func(sb *Sandbox) { sb.InfraID = ids.New() },
			Make: func(ctx context.Context, sb Sandbox) (err error) {
				if infraPID, err = m.Infra.StartInfra(ctx, &sb); err != nil {
					return fmt.Errorf("start infra process: %w", err)
				}
				// Containers join the pod's PID namespace by a pin, never
				// by a pid that could be reused once the infra is gone.
				if _, err := namespaces.PinProcess(sb.nsDir(), namespaces.PID, infraPID); err != nil {
					return fmt.Errorf("pin the pod's PID namespace: %w", err)
				}
				return nil
			},
			Made: func(sb *Sandbox) {
				sb.InfraPID = infraPID
				// A copy: other copies of the record share the map.
				ns := maps.Clone(sb.Namespaces)
				if ns == nil {
					ns = namespaces.Pinned{}
				}
				sb.Namespaces = ns
				sb.Namespaces[namespaces.PID] = filepath.Join(sb.nsDir(), string(namespaces.PID))
			},
		})
	}
	unblockSync := func() {}
	defer func() { unblockSync() }()
	if m.Plugins != nil {
		plan = append(plan, steps.Step[Sandbox]{
			Name: stepPlugins,
			Make: func(ctx context.Context, sb Sandbox) error {
				// Held until the pod is committed (or rolled back): a
				// plugin connecting meanwhile lists it.
				unblockSync = sync.OnceFunc(m.Plugins.BlockSync())
				if err := m.Plugins.RunPodSandbox(ctx, &sb); err != nil {
					return fmt.Errorf("NRI: %w", err)
				}
				return nil
			},
		})
	}
	sb, took, err := m.steps.RunAll(ctx, id, plan, func(sb *Sandbox) { sb.State = StateReady })
	unblockSync()
	if err != nil {
		return err
	}
	m.stage("namespaces", took[stepDir]+took[stepNamespaces]+took[stepShm])
	m.stage("network", took[stepNetwork])
	if d, ok := took[stepInfra]; ok {
		m.stage("infra", d)
	}
	m.stage("total", time.Since(start))
	m.event(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, id)
	m.event(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, id)
	m.log.Info("pod sandbox ready", "pod", id, "name", name, "ips", sb.IPs,
		"network", took[stepNetwork], "total", time.Since(start))
	return nil
}

func podNetwork(sb *Sandbox) network.PodNetwork {
	cfg := sb.PodConfig()
	md := cfg.GetMetadata()
	pn := network.PodNetwork{
		ID:        sb.ID,
		Name:      md.GetName(),
		Namespace: md.GetNamespace(),
		UID:       md.GetUid(),
		NetNS:     sb.Namespaces[namespaces.Net],
	}
	for _, pm := range cfg.GetPortMappings() {
		if pm.GetHostPort() <= 0 {
			continue
		}
		proto := strings.ToLower(pm.GetProtocol().String())
		pn.PortMappings = append(pn.PortMappings, network.PortMapping{
			Protocol:      proto,
			ContainerPort: pm.GetContainerPort(),
			HostPort:      pm.GetHostPort(),
			HostIP:        pm.GetHostIp(),
		})
	}
	return pn
}

// writePodFiles writes resolv.conf, hosts and hostname for the pod's
// containers to bind-mount.
func writePodFiles(sb *Sandbox, cfg *runtimeapi.PodSandboxConfig, hostNet bool, hostname string) error {
	var resolv []byte
	if dns := cfg.GetDnsConfig(); dns != nil && (len(dns.GetServers()) > 0 || len(dns.GetSearches()) > 0 || len(dns.GetOptions()) > 0) {
		var b strings.Builder
		if s := dns.GetSearches(); len(s) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(s, " "))
		}
		for _, s := range dns.GetServers() {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		if o := dns.GetOptions(); len(o) > 0 {
			fmt.Fprintf(&b, "options %s\n", strings.Join(o, " "))
		}
		resolv = []byte(b.String())
	} else {
		var err error
		if resolv, err = os.ReadFile("/etc/resolv.conf"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	hosts := []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	if hostNet {
		if h, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = h
		}
	}
	for path, data := range map[string][]byte{
		sb.ResolvConf(): resolv,
		sb.Hosts():      hosts,
		sb.Hostname():   []byte(hostname + "\n"),
	} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("write pod file: %w", err)
		}
	}
	return nil
}

func mountShm(path string, size int64) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	opts := fmt.Sprintf("mode=1777,size=%d", size)
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount pod /dev/shm: %w", err)
	}
	return nil
}
