// Package network attaches pods to the node's network through CNI plugins
// (libcni): ADD when a pod starts, DEL when it stops, CHECK on demand, and
// tracking of the CNI config dir for the runtime's NetworkReady status.
//
// Results of ADD are cached by libcni under Config.CacheDir, which must
// survive crid restarts: Teardown deletes a pod's network with the config
// and arguments cached at ADD time, so a pod can be torn down after a
// restart even if the config dir changed meanwhile.
package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// Defaults match the paths kubelet-era CNI installers write to; Debian's
// containernetworking-plugins package installs into /usr/lib/cni.
var (
	DefaultConfDir  = "/etc/cni/net.d"
	DefaultBinDirs  = []string{"/opt/cni/bin", "/usr/lib/cni"}
	DefaultCacheDir = "/var/lib/cni" // libcni's own default, shared with containerd
)

// ifName is the pod's interface name, as every CRI runtime uses.
const ifName = "eth0"

// cleanupTimeout bounds a rollback DEL that runs after the request's
// context is done.
const cleanupTimeout = time.Minute

// ErrNotReady is returned by Setup when no usable network config exists.
var ErrNotReady = errors.New("network not ready")

// Config says where CNI configs, plugins and cached results live.
type Config struct {
	ConfDir  string   // default DefaultConfDir
	BinDirs  []string // default DefaultBinDirs
	CacheDir string   // libcni result cache; must persist across restarts (crid passes <root>/cni/cache)
}

// PortMapping is a pod port published on the host (portmap plugin).
type PortMapping struct {
	Protocol      string // tcp, udp or sctp; empty means tcp
	ContainerPort int32
	HostPort      int32
	HostIP        string
}

// PodNetwork identifies a pod to the CNI plugins.
type PodNetwork struct {
	ID, Name, Namespace, UID string // sandbox ID and pod metadata (K8S_POD_* CNI_ARGS)
	NetNS                    string // pinned netns path
	PortMappings             []PortMapping
}

// Result is the pod's addressing after Setup.
type Result struct {
	IPs       []net.IP // IPv4 first, then IPv6
	Interface string
}

// Manager runs CNI operations for pods.
type Manager struct {
	cfg Config
	log *slog.Logger
	cni *libcni.CNIConfig

	watcher   *fsnotify.Watcher
	watchDone chan struct{}
	watching  atomic.Bool
	stale     atomic.Bool

	mu   sync.Mutex // guards conf
	conf loaded

	ipRanges atomic.Pointer[[][]map[string]string]
}

// New returns a Manager watching cfg.ConfDir (created if missing, as
// containerd does, so that the watch can start before a network is
// installed).
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	if cfg.ConfDir == "" {
		cfg.ConfDir = DefaultConfDir
	}
	if len(cfg.BinDirs) == 0 {
		cfg.BinDirs = DefaultBinDirs
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = DefaultCacheDir
	}
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{
		cfg: cfg,
		log: log,
		cni: libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, cfg.CacheDir, newTimedExec(log)),
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		// Status then rescans the dir on every call instead.
		m.log.Warn("cannot watch CNI config dir; rescanning on every call", "err", err)
	} else {
		m.watcher = w
		m.watchDone = make(chan struct{})
		go m.watch()
	}
	m.stale.Store(true)
	return m, nil
}

// Close stops watching the config dir.
func (m *Manager) Close() error {
	if m.watcher == nil {
		return nil
	}
	err := m.watcher.Close()
	<-m.watchDone
	if err != nil {
		return fmt.Errorf("close CNI config watcher: %w", err)
	}
	return nil
}

// Ready reports whether a usable network config exists, and why not.
// It is cheap while the config dir is unchanged.
func (m *Manager) Ready() (ok bool, reason, message string) {
	c := m.current()
	if c.list == nil {
		return false, reasonNotReady, c.msg
	}
	return true, "", ""
}

// SetPodCIDR sets the node's pod CIDR(s), comma-separated for dual stack,
// from UpdateRuntimeConfig. Plugins declaring the "ipRanges" capability
// (host-local) then allocate from them.
func (m *Manager) SetPodCIDR(cidr string) {
	var sets [][]map[string]string
	for c := range strings.SplitSeq(cidr, ",") {
		if c = strings.TrimSpace(c); c != "" {
			// One range set per CIDR: host-local gives the pod one
			// address from each set, i.e. one per IP family.
			sets = append(sets, []map[string]string{{"subnet": c}})
		}
	}
	if len(sets) == 0 {
		m.ipRanges.Store(nil)
		return
	}
	m.ipRanges.Store(&sets)
}

// Setup attaches the pod to the network (CNI ADD). If ADD fails part way,
// the plugins that ran are undone (DEL) even when ctx is already done.
func (m *Manager) Setup(ctx context.Context, pod PodNetwork) (_ Result, retErr error) {
	if pod.NetNS == "" {
		return Result{}, fmt.Errorf("set up network for pod %s: no netns", pod.ID)
	}
	c := m.current()
	if c.list == nil {
		return Result{}, fmt.Errorf("set up network for pod %s: %w: %s", pod.ID, ErrNotReady, c.msg)
	}
	rt := m.runtimeConf(pod)
	start := time.Now()
	defer func() {
		if retErr == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := m.cni.DelNetworkList(dctx, c.list, rt); err != nil {
			m.log.Error("roll back CNI ADD", "pod", pod.ID, "network", c.list.Name, "err", err)
		}
	}()
	res, err := m.cni.AddNetworkList(ctx, skipIdle(c.list, rt), rt)
	if err != nil {
		return Result{}, fmt.Errorf("set up network %s for pod %s: %w", c.list.Name, pod.ID, err)
	}
	out, err := parseResult(res)
	if err != nil {
		return Result{}, fmt.Errorf("set up network %s for pod %s: %w", c.list.Name, pod.ID, err)
	}
	m.log.Debug("CNI ADD", "pod", pod.ID, "network", c.list.Name, "ips", out.IPs, "took", time.Since(start))
	return out, nil
}

// skipIdle drops from an ADD the chained plugins known to do nothing for
// this pod: portmap without port mappings only echoes its prevResult, and
// its exec costs ~2.5 ms of a ~25 ms ADD here. The returned list keeps the
// original Bytes, so libcni caches the full config and DEL still runs every
// plugin (portmap's DEL is idempotent).
func skipIdle(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) *libcni.NetworkConfigList {
	if _, ok := rt.CapabilityArgs["portMappings"]; ok {
		return list
	}
	var keep []*libcni.PluginConfig
	for i, p := range list.Plugins {
		if i > 0 && p.Network.Type == "portmap" {
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) == len(list.Plugins) {
		return list
	}
	l := *list
	l.Plugins = keep
	return &l
}

// Teardown detaches the pod from the network (CNI DEL). It is safe to call
// again, after a crid restart, and after the netns is gone (plugins then get
// an empty CNI_NETNS, as the CNI spec allows, and release what they can).
func (m *Manager) Teardown(ctx context.Context, pod PodNetwork) error {
	lists, rts, err := m.attachments(pod)
	if err != nil {
		return fmt.Errorf("tear down network for pod %s: %w", pod.ID, err)
	}
	var errs []error
	for i, list := range lists {
		start := time.Now()
		if err := m.cni.DelNetworkList(ctx, list, rts[i]); err != nil {
			errs = append(errs, fmt.Errorf("tear down network %s for pod %s: %w", list.Name, pod.ID, err))
			continue
		}
		m.log.Debug("CNI DEL", "pod", pod.ID, "network", list.Name, "took", time.Since(start))
	}
	return errors.Join(errs...)
}

// Check asks the plugins whether the pod's network is still as set up
// (CNI CHECK, config version 0.4.0 or later).
func (m *Manager) Check(ctx context.Context, pod PodNetwork) error {
	lists, rts, err := m.attachments(pod)
	if err != nil {
		return fmt.Errorf("check network for pod %s: %w", pod.ID, err)
	}
	if len(lists) == 0 {
		return fmt.Errorf("check network for pod %s: %w", pod.ID, ErrNotReady)
	}
	for i, list := range lists {
		if err := m.cni.CheckNetworkList(ctx, list, rts[i]); err != nil {
			return fmt.Errorf("check network %s for pod %s: %w", list.Name, pod.ID, err)
		}
	}
	return nil
}

// attachments returns the networks the pod is attached to with the
// arguments used at ADD: from libcni's cache when present (so DEL matches
// ADD even if the config dir changed or crid restarted), else the current
// config (a cache lost or never written still gets a best-effort DEL).
func (m *Manager) attachments(pod PodNetwork) ([]*libcni.NetworkConfigList, []*libcni.RuntimeConf, error) {
	netns := pod.NetNS
	if !isNetNS(netns) {
		netns = ""
	}
	cached, err := m.cni.GetCachedAttachments(pod.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("read CNI cache: %w", err)
	}
	var (
		lists []*libcni.NetworkConfigList
		rts   []*libcni.RuntimeConf
	)
	for _, a := range cached {
		if a.IfName != ifName {
			continue
		}
		list, err := libcni.NetworkConfFromBytes(a.Config)
		if err != nil {
			m.log.Warn("unreadable cached CNI config; using current config", "pod", pod.ID, "network", a.Network, "err", err)
			continue
		}
		lists = append(lists, list)
		rts = append(rts, &libcni.RuntimeConf{
			ContainerID: pod.ID, NetNS: netns, IfName: ifName,
			Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs,
		})
	}
	if len(lists) > 0 {
		return lists, rts, nil
	}
	c := m.current()
	if c.list == nil {
		// Nothing cached and no network: nothing was set up that we
		// could undo.
		return nil, nil, nil
	}
	rt := m.runtimeConf(pod)
	rt.NetNS = netns
	return []*libcni.NetworkConfigList{c.list}, []*libcni.RuntimeConf{rt}, nil
}

func (m *Manager) runtimeConf(pod PodNetwork) *libcni.RuntimeConf {
	caps := map[string]any{}
	if pm := portMappings(pod.PortMappings); len(pm) > 0 {
		caps["portMappings"] = pm
	}
	if r := m.ipRanges.Load(); r != nil {
		caps["ipRanges"] = *r
	}
	return &libcni.RuntimeConf{
		ContainerID: pod.ID,
		NetNS:       pod.NetNS,
		IfName:      ifName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", pod.Namespace},
			{"K8S_POD_NAME", pod.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", pod.ID},
			{"K8S_POD_UID", pod.UID},
		},
		CapabilityArgs: caps,
	}
}

// portMapping is the "portMappings" capability entry the portmap plugin
// reads from runtimeConfig.
type portMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

func portMappings(in []PortMapping) []portMapping {
	var out []portMapping
	for _, p := range in {
		// Kubernetes lists container ports without a host port too;
		// they are informational and must not reach portmap.
		if p.HostPort <= 0 {
			continue
		}
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, portMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
	}
	return out
}

// parseResult extracts the pod's addresses from an ADD result of any CNI
// version, IPv4 first.
func parseResult(res types.Result) (Result, error) {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return Result{}, fmt.Errorf("convert CNI result: %w", err)
	}
	var out Result
	inPod := func(ip *current.IPConfig) bool {
		// Results older than 0.3.0 have no interfaces; every IP is the pod's.
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(r.Interfaces) {
			return true
		}
		iface := r.Interfaces[*ip.Interface]
		if iface.Sandbox == "" {
			return false
		}
		if out.Interface == "" {
			out.Interface = iface.Name
		}
		return true
	}
	for _, ip := range r.IPs {
		if inPod(ip) {
			out.IPs = append(out.IPs, ip.Address.IP)
		}
	}
	if len(out.IPs) == 0 {
		return Result{}, errors.New("CNI result has no pod IP")
	}
	if out.Interface == "" {
		out.Interface = ifName
	}
	sort.SliceStable(out.IPs, func(i, j int) bool {
		return out.IPs[i].To4() != nil && out.IPs[j].To4() == nil
	})
	return out, nil
}

// isNetNS reports whether path is a mounted network namespace pin. A pin
// whose mount is gone is an empty regular file, which plugins cannot enter.
func isNetNS(path string) bool {
	if path == "" {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}
