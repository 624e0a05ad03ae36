package spec

import (
	"maps"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// setNamespaces fills the namespace list and the hostname. The pod's
// NamespaceOptions decide host network/IPC (containers cannot differ from
// their pod there); the container's own options, when sent, decide its pid
// namespace (the kubelet copies the pod's, critest sets them explicitly).
func setNamespaces(s *specs.Spec, in Input) error {
	podNS := in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions()
	ctrNS := in.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if ctrNS == nil {
		ctrNS = podNS
	}
	// Every container gets its own mount namespace.
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	add := func(t specs.LinuxNamespaceType, path string, host bool) {
		if path == "" && host {
			return
		}
		ns = append(ns, specs.LinuxNamespace{Type: t, Path: path})
	}
	hostNet := podNS.GetNetwork() == runtimeapi.NamespaceMode_NODE
	add(specs.NetworkNamespace, in.Namespaces.Net, hostNet)
	add(specs.IPCNamespace, in.Namespaces.IPC, podNS.GetIpc() == runtimeapi.NamespaceMode_NODE)
	// A host-network pod also has the host's hostname, as in containerd.
	add(specs.UTSNamespace, in.Namespaces.UTS, hostNet)

	switch mode := ctrNS.GetPid(); mode {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_TARGET:
		if mode == runtimeapi.NamespaceMode_TARGET && ctrNS.GetTargetId() == "" {
			return invalid("linux.security_context.namespace_options.target_id", "empty with pid mode TARGET")
		}
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: in.Namespaces.PID})
	case runtimeapi.NamespaceMode_CONTAINER:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	default:
		return invalid("linux.security_context.namespace_options.pid", "unknown mode %d", mode)
	}
	s.Linux.Namespaces = ns
	if err := setUserNamespace(s, in); err != nil {
		return err
	}

	// The hostname is set where the UTS namespace is created: in the pod's
	// pinned namespace by whoever made it, here only when the container gets
	// a fresh one. runc refuses a hostname without a private UTS namespace.
	if in.Namespaces.UTS == "" && !hostNet {
		s.Hostname = in.Sandbox.GetHostname()
	}
	return nil
}

// ipcSysctls are the IPC-namespaced sysctls besides fs.mqueue.* (runc's list).
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true,
	"kernel.sem": true, "kernel.shmall": true, "kernel.shmmax": true,
	"kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// normalizeSysctl turns the slash form the kubelet accepts
// ("net/ipv4/conf/eth0.100/forwarding") into the dotted one.
func normalizeSysctl(k string) string {
	i := strings.IndexAny(k, "./")
	if i < 0 || k[i] == '.' {
		return k
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, k)
}

// setSysctls applies the pod's sysctls to the container. runc writes them
// inside the container's namespaces, so each must belong to a namespace the
// container has a private copy of; reject the others here with a clear error
// instead of letting runc fail at start (and, for host namespaces, instead of
// changing the host).
func setSysctls(s *specs.Spec, sysctls map[string]string) error {
	if len(sysctls) == 0 {
		return nil
	}
	has := map[specs.LinuxNamespaceType]bool{}
	for _, n := range s.Linux.Namespaces {
		has[n.Type] = true
	}
	out := make(map[string]string, len(sysctls))
	for _, k := range sortedKeys(sysctls) {
		v := sysctls[k]
		name := normalizeSysctl(k)
		field := "linux.sysctls[" + k + "]"
		if name == "" || strings.Contains(name, "..") || strings.HasPrefix(name, ".") {
			return invalid(field, "malformed name")
		}
		var need specs.LinuxNamespaceType
		switch {
		case ipcSysctls[name] || strings.HasPrefix(name, "fs.mqueue."):
			need = specs.IPCNamespace
		case strings.HasPrefix(name, "net."):
			need = specs.NetworkNamespace
		case name == "kernel.hostname" || name == "kernel.domainname":
			need = specs.UTSNamespace
		default:
			return invalid(field, "not a namespaced sysctl")
		}
		if !has[need] {
			return invalid(field, "the pod shares the host's %s namespace", need)
		}
		out[name] = v
	}
	s.Linux.Sysctl = out
	return nil
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
