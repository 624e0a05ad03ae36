package container

import (
	"fmt"
	"os/exec"
	"sort"

	"golang.org/x/sys/unix"
)

// RuntimeReady reports whether containers can run here: the default
// runtime handler's binary and the monitor resolve, and crid's root and
// state dirs are writable. The kubelet schedules no pods to a node whose
// runtime is not ready, which beats every RunPodSandbox failing.
func (m *Manager) RuntimeReady() (ok bool, reason, message string) {
	hs := m.handlers()
	h, found := hs.byName[hs.def]
	if !found {
		return false, "RuntimeHandlerMissing", fmt.Sprintf("the default runtime handler %q has no usable OCI runtime binary", hs.def)
	}
	if _, err := exec.LookPath(h.Path); err != nil {
		return false, "RuntimeBinaryMissing", fmt.Sprintf("runtime handler %q: %v", h.Name, err)
	}
	if err := m.rt.Check(); err != nil {
		return false, "MonitorMissing", err.Error()
	}
	for _, dir := range []string{m.cfg.RootDir, m.cfg.StateDir} {
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			return false, "StateDirUnusable", fmt.Sprintf("%s: %v", dir, err)
		}
	}
	return true, "", ""
}

// HandlerNames are the runtime handlers whose OCI runtime binary resolved
// (at start or the last reload), sorted: only those are advertised to the
// kubelet.
func (m *Manager) HandlerNames() []string {
	hs := m.handlers().byName
	out := make([]string, 0, len(hs))
	for name := range hs {
		if name != "" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
