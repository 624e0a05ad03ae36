package container

import (
	"log/slog"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

// cdiRegistry resolves CDI devices from the spec files in the configured
// dirs (spec.CDIInjector). The dirs are read again for each container that
// asks for a device, never otherwise: a DRA driver writes a device's spec
// file just before the kubelet creates the container that uses it, and no
// watcher runs for nodes that use none.
type cdiRegistry struct {
	cache *cdi.Cache // nil without spec dirs: nothing resolves
	log   *slog.Logger
}

func newCDIRegistry(dirs []string, log *slog.Logger) *cdiRegistry {
	r := &cdiRegistry{log: log}
	if len(dirs) > 0 {
		// (cdi.WithSpecDirs with none would mean its default dirs.)
		r.cache, _ = cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(false))
	}
	return r
}

func (r *cdiRegistry) InjectDevices(s *specs.Spec, devices ...string) ([]string, error) {
	if r.cache == nil {
		return devices, nil
	}
	specErr := r.cache.Refresh()
	if specErr != nil {
		// The devices of the files that load still resolve.
		r.log.Warn("CDI spec files with errors are left out", "dirs", r.cache.GetSpecDirectories(), "error", specErr)
	}
	unresolved, err := r.cache.InjectDevices(s, devices...)
	if len(unresolved) > 0 {
		// Perhaps named by a file that did not load.
		return unresolved, specErr
	}
	return nil, err
}
