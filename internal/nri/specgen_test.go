package nri

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSpecEditor(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   specs.Spec
		edit func(e specEditor) error
		want specs.Spec
	}{{
		name: "env replaces a variable of the same name",
		in:   specs.Spec{Process: &specs.Process{Env: []string{"A=1", "B=2"}}},
		edit: func(e specEditor) error { e.AddProcessEnv("A", "x=y"); e.AddProcessEnv("C", ""); return nil },
		want: specs.Spec{Process: &specs.Process{Env: []string{"A=x=y", "B=2", "C="}}},
	}, {
		name: "a namespace of a kind is replaced, not doubled",
		in:   specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/old"}}}},
		edit: func(e specEditor) error { return e.AddOrReplaceLinuxNamespace("network", "/new") },
		want: specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/new"}}}},
	}, {
		name: "unknown namespace kind",
		edit: func(e specEditor) error { return e.AddOrReplaceLinuxNamespace("bogus", "") },
	}, {
		name: "a device at the same path is replaced",
		in:   specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/x", Major: 1}}}},
		edit: func(e specEditor) error { e.AddDevice(specs.LinuxDevice{Path: "/dev/x", Major: 2}); return nil },
		want: specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/x", Major: 2}}}},
	}, {
		name: "mounts are removed by destination",
		in:   specs.Spec{Mounts: []specs.Mount{{Destination: "/a"}, {Destination: "/b"}}},
		edit: func(e specEditor) error { e.RemoveMount("/a"); return nil },
		want: specs.Spec{Mounts: []specs.Mount{{Destination: "/b"}}},
	}, {
		name: "hugepage limit of a size is replaced",
		in:   specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}}}}},
		edit: func(e specEditor) error { e.AddLinuxResourcesHugepageLimit("2MB", 4); return nil },
		want: specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4}}}}},
	}, {
		name: "bad rootfs propagation",
		edit: func(e specEditor) error { return e.SetLinuxRootPropagation("sideways") },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.in
			err := tc.edit(specEditor{&s})
			if tc.want.Process == nil && tc.want.Linux == nil && tc.want.Mounts == nil {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s, tc.want) {
				t.Fatalf("got %+v\nwant %+v", s, tc.want)
			}
		})
	}
}
