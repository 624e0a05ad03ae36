package spec

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/parser"
)

// CDIInjector applies the edits of CDI devices (devices, mounts, env,
// hooks, groups) to an OCI spec: a tags.cncf.io/container-device-interface
// cache over the CDI spec dirs. It returns the devices no spec file names,
// if any, and then nothing is applied and err, if not nil, says which spec
// files did not load.
type CDIInjector interface {
	InjectDevices(s *specs.Spec, devices ...string) (unresolved []string, err error)
}

// cdiAnnotationPrefix marks the annotations that ask for CDI devices, as
// device plugins and DRA drivers did before CDI_devices existed (a comma
// separated list of qualified names; containerd and CRI-O read them too).
const cdiAnnotationPrefix = "cdi.k8s.io/"

// cdiDevices are the qualified names of the CDI devices the container asks
// for: CDI_devices in order, then the annotations' by key, each once.
func cdiDevices(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for i, d := range cfg.GetCDIDevices() {
		name := d.GetName()
		if _, _, _, err := parser.ParseQualifiedName(name); err != nil {
			return nil, invalid(fmt.Sprintf("CDI_devices[%d].name", i), "%q is no qualified CDI device name (vendor.com/class=name): %v", name, err)
		}
		add(name)
	}
	annotations := cfg.GetAnnotations()
	for _, key := range slices.Sorted(maps.Keys(annotations)) {
		if !strings.HasPrefix(key, cdiAnnotationPrefix) {
			continue
		}
		for name := range strings.SplitSeq(annotations[key], ",") {
			if _, _, _, err := parser.ParseQualifiedName(name); err != nil {
				return nil, invalid("annotations["+key+"]", "%q is no qualified CDI device name (vendor.com/class=name): %v", name, err)
			}
			add(name)
		}
	}
	return out, nil
}

// setCDIDevices applies the edits of the container's CDI devices; a device
// no CDI spec names is InvalidArgument, a spec whose edits cannot be made
// here (say, a device node the host lacks) FailedPrecondition.
func setCDIDevices(s *specs.Spec, in Input) error {
	devices, err := cdiDevices(in.Config)
	if err != nil || len(devices) == 0 {
		return err
	}
	if in.CDI == nil {
		return fmt.Errorf("%w: CDI_devices: CDI is not configured", errdefs.ErrFailedPrecondition)
	}
	unresolved, err := in.CDI.InjectDevices(s, devices...)
	if len(unresolved) > 0 {
		msg := fmt.Sprintf("unknown CDI device %s: no CDI spec file names it", strings.Join(unresolved, ", "))
		if err != nil {
			msg += fmt.Sprintf(" (spec files that did not load: %v)", err)
		}
		return invalid("CDI_devices", "%s", msg)
	}
	if err != nil {
		return fmt.Errorf("%w: CDI_devices: %w", errdefs.ErrFailedPrecondition, err)
	}
	// Groups the edits added are supplementary groups like the others.
	if s.Process != nil {
		slices.Sort(s.Process.User.AdditionalGids)
		s.Process.User.AdditionalGids = slices.Compact(s.Process.User.AdditionalGids)
	}
	return nil
}
