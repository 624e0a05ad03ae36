package container

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/crid-project/crid/internal/oci"
)

// handlerSet is the runtime handlers (RuntimeClass handler names) crid runs
// containers with. A reload replaces it whole (SetHandlers), so a call sees
// one set from start to end.
type handlerSet struct {
	byName map[string]oci.Handler // "" is the default handler too
	def    string
	// rro: the handler's runtime can make recursively read-only mounts.
	rro map[string]bool
	// userns: the handler can run pods in a user namespace of their own.
	userns map[string]bool
	// criu asks the handler's runtime for its CRIU options, once.
	criu map[string]func() criuCaps
}

// newHandlerSet reads each handler's runtime features. A handler runs pods
// in a user namespace when its runtime can idmap mounts (the pod's
// volumes) and crid can idmap the layers on this host (idmapLayers).
func newHandlerSet(hs map[string]oci.Handler, def string, idmapLayers bool) *handlerSet {
	s := &handlerSet{byName: maps.Clone(hs), def: def, rro: map[string]bool{}, userns: map[string]bool{}, criu: map[string]func() criuCaps{}}
	for name, h := range hs {
		f := runtimeFeatures(h.Path)
		s.rro[name] = f.rro
		s.userns[name] = f.idmap && idmapLayers
		s.criu[name] = sync.OnceValue(func() criuCaps { return runtimeCRIU(h.Path) })
	}
	return s
}

func (m *Manager) handlers() *handlerSet { return m.hset.Load() }

// criuCaps are the named handler's runtime's CRIU options.
func (m *Manager) criuCaps(handler string) criuCaps {
	if f, ok := m.handlers().criu[handler]; ok {
		return f()
	}
	return criuCaps{}
}

// SetHandlers replaces the runtime handlers (a configuration reload): new
// pods and containers get the new set at once. A handler that existing
// containers still use is kept, as it was, until crid restarts (a
// container is stopped and removed by the runtime that made it); its name
// is returned so that the reload can say so.
func (m *Manager) SetHandlers(hs map[string]oci.Handler, def string) (kept []string) {
	hs = maps.Clone(hs)
	old := m.handlers()
	for _, c := range m.recs.List(nil) {
		h, inUse := old.byName[c.Handler]
		if _, still := hs[c.Handler]; inUse && !still && !slices.Contains(kept, c.Handler) {
			hs[c.Handler] = h
			kept = append(kept, c.Handler)
		}
	}
	if h, ok := hs[def]; ok {
		hs[""] = h
	} else {
		delete(hs, "")
	}
	m.hset.Store(newHandlerSet(hs, def, m.cfg.IDMapLayers))
	sort.Strings(kept)
	return kept
}

// SupportsRRO reports whether the runtime handler can make recursively
// read-only mounts (the kubelet asks for them only when Status says so).
func (m *Manager) SupportsRRO(handler string) bool { return m.handlers().rro[handler] }

// SupportsUserNS reports whether the runtime handler ("" is the default)
// can run pods in a user namespace of their own.
func (m *Manager) SupportsUserNS(handler string) bool { return m.handlers().userns[handler] }

// HasHandler reports whether pods may ask for handler ("" is the default).
func (m *Manager) HasHandler(name string) bool {
	_, ok := m.handlers().byName[name]
	return ok
}

// DefaultHandler is the handler pods without a RuntimeClass get.
func (m *Manager) DefaultHandler() string { return m.handlers().def }

func (m *Manager) handler(name string) (oci.Handler, error) {
	s := m.handlers()
	if name == "" {
		name = s.def
	}
	h, ok := s.byName[name]
	if !ok {
		return oci.Handler{}, fmt.Errorf("runtime handler %q is not configured: %w", name, errdefs.ErrInvalidArgument)
	}
	return h, nil
}
