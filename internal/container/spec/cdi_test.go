package spec

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

// testCDISpec names harmless devices: /dev/null and /dev/zero under other
// paths, one with a mount, env and a group, and one whose host device is
// missing.
const testCDISpec = `cdiVersion: "0.7.0"
kind: vendor.example/dev
containerEdits:
  env: [VENDOR_EXAMPLE=1]
devices:
- name: "null"
  containerEdits:
    deviceNodes:
    - {path: /dev/cdi-null, hostPath: /dev/null, permissions: rw}
    env: [CDI_NULL=1]
    additionalGids: [4242]
    mounts:
    - {hostPath: /dev/null, containerPath: /opt/cdi/null, options: [ro, rbind]}
- name: zero
  containerEdits:
    deviceNodes:
    - {path: /dev/cdi-zero, hostPath: /dev/zero}
- name: gone
  containerEdits:
    deviceNodes:
    - {path: /dev/cdi-gone, hostPath: /dev/nonexistent-crid-cdi}
`

// cdiCache keeps CDIInjector's contract over a cache, as the container
// manager's registry does: unresolved devices come with the spec files
// that did not load.
type cdiCache struct{ *cdi.Cache }

func (c cdiCache) InjectDevices(s *specs.Spec, devices ...string) ([]string, error) {
	specErr := c.Refresh()
	unresolved, err := c.Cache.InjectDevices(s, devices...)
	if len(unresolved) > 0 {
		return unresolved, specErr
	}
	return nil, err
}

func testCDICache(t *testing.T) cdiCache {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "vendor.yaml"), testCDISpec)
	writeFile(t, filepath.Join(dir, "broken.yaml"), "cdiVersion: [\n")
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	return cdiCache{cache}
}

func TestCDIDevices(t *testing.T) {
	cache := testCDICache(t)
	cdiDev := func(names ...string) []*runtimeapi.CDIDevice {
		var out []*runtimeapi.CDIDevice
		for _, n := range names {
			out = append(out, &runtimeapi.CDIDevice{Name: n})
		}
		return out
	}
	device := func(s *specs.Spec, path string) *specs.LinuxDevice {
		for i := range s.Linux.Devices {
			if s.Linux.Devices[i].Path == path {
				return &s.Linux.Devices[i]
			}
		}
		return nil
	}
	for _, tc := range []struct {
		name        string
		devices     []*runtimeapi.CDIDevice
		annotations map[string]string
		injector    bool // false: no CDI configured
		check       func(t *testing.T, s *specs.Spec, u *runtimeapi.ContainerUser)
		wantErr     string
		code        func(error) bool
	}{
		{name: "none", injector: true, check: func(t *testing.T, s *specs.Spec, _ *runtimeapi.ContainerUser) {
			if slices.Contains(s.Process.Env, "VENDOR_EXAMPLE=1") || len(s.Linux.Devices) != 0 {
				t.Errorf("edits applied without a device: env %v devices %v", s.Process.Env, s.Linux.Devices)
			}
		}},
		{name: "none and no CDI", check: func(*testing.T, *specs.Spec, *runtimeapi.ContainerUser) {}},
		{name: "device with its edits", injector: true, devices: cdiDev("vendor.example/dev=null"),
			check: func(t *testing.T, s *specs.Spec, u *runtimeapi.ContainerUser) {
				d := device(s, "/dev/cdi-null")
				if d == nil || d.Type != "c" || d.Major != 1 || d.Minor != 3 {
					t.Fatalf("device %+v in %+v", d, s.Linux.Devices)
				}
				rules := s.Linux.Resources.Devices
				if r := rules[len(rules)-1]; !r.Allow || r.Type != "c" || *r.Major != 1 || *r.Minor != 3 || r.Access != "rw" {
					t.Errorf("cgroup rule %+v", r)
				}
				if rules[0].Allow {
					t.Errorf("the deny-all rule is not first: %+v", rules)
				}
				for _, e := range []string{"VENDOR_EXAMPLE=1", "CDI_NULL=1"} {
					if !slices.Contains(s.Process.Env, e) {
						t.Errorf("env %v lacks %s", s.Process.Env, e)
					}
				}
				if m := findMount(s, "/opt/cdi/null"); m == nil || m.Source != "/dev/null" {
					t.Errorf("mount %+v", m)
				}
				if !slices.Contains(s.Process.User.AdditionalGids, 4242) || !slices.IsSorted(s.Process.User.AdditionalGids) {
					t.Errorf("groups %v", s.Process.User.AdditionalGids)
				}
				if !slices.Contains(u.GetLinux().GetSupplementalGroups(), 4242) {
					t.Errorf("ContainerUser %v lacks the device's group", u)
				}
			}},
		{name: "annotation", injector: true, annotations: map[string]string{"cdi.k8s.io/plugin_x": "vendor.example/dev=zero,vendor.example/dev=null"},
			check: func(t *testing.T, s *specs.Spec, _ *runtimeapi.ContainerUser) {
				if device(s, "/dev/cdi-zero") == nil || device(s, "/dev/cdi-null") == nil {
					t.Errorf("devices %+v", s.Linux.Devices)
				}
			}},
		{name: "field and annotation name one device once", injector: true, devices: cdiDev("vendor.example/dev=zero", "vendor.example/dev=zero"),
			annotations: map[string]string{"cdi.k8s.io/a": "vendor.example/dev=zero", "other/key": "not=cdi"},
			check: func(t *testing.T, s *specs.Spec, _ *runtimeapi.ContainerUser) {
				if len(s.Linux.Devices) != 1 {
					t.Errorf("devices %+v", s.Linux.Devices)
				}
			}},
		{name: "unknown device", injector: true, devices: cdiDev("vendor.example/dev=zero", "vendor.example/dev=nope"),
			wantErr: "unknown CDI device vendor.example/dev=nope: no CDI spec file names it (spec files that did not load: ", code: errdefs.IsInvalidArgument},
		{name: "unknown vendor", injector: true, devices: cdiDev("other.example/gpu=0"),
			wantErr: "other.example/gpu=0", code: errdefs.IsInvalidArgument},
		{name: "unqualified name", injector: true, devices: cdiDev("vendor.example/dev=zero", "gpu0"),
			wantErr: `CDI_devices[1].name: "gpu0" is no qualified CDI device name`, code: errdefs.IsInvalidArgument},
		{name: "bad annotation", injector: true, annotations: map[string]string{"cdi.k8s.io/x": "vendor.example/dev=zero,"},
			wantErr: `annotations[cdi.k8s.io/x]: "" is no qualified`, code: errdefs.IsInvalidArgument},
		{name: "host device missing", injector: true, devices: cdiDev("vendor.example/dev=gone"),
			wantErr: "nonexistent-crid-cdi", code: errdefs.IsFailedPrecondition},
		{name: "no CDI configured", devices: cdiDev("vendor.example/dev=null"),
			wantErr: "CDI is not configured", code: errdefs.IsFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Config.CDIDevices = tc.devices
			in.Config.Annotations = tc.annotations
			if tc.injector {
				in.CDI = cache
			}
			s, u, err := Build(in)
			if checkErr(t, err, tc.wantErr) {
				tc.check(t, s, u)
				return
			}
			if !tc.code(err) {
				t.Errorf("error %v is of the wrong kind", err)
			}
		})
	}
}
