package spec

import (
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCapabilities(t *testing.T) {
	without := func(list []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(list), func(c string) bool { return slices.Contains(drop, c) })
	}
	// Keep knownCaps order.
	ordered := func(list ...string) []string {
		return slices.DeleteFunc(slices.Clone(knownCaps), func(c string) bool { return !slices.Contains(list, c) })
	}
	noSysResource := without(knownCaps, "CAP_SYS_RESOURCE")
	for _, tc := range []struct {
		name        string
		sc          *runtimeapi.LinuxContainerSecurityContext
		host        []string
		want        []string
		wantAmbient []string
		wantErr     string
	}{
		{name: "default", want: ordered(defaultCaps...)},
		{name: "add and drop", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			AddCapabilities: []string{"NET_ADMIN", "CAP_SYS_TIME"}, DropCapabilities: []string{"net_raw"}}},
			want: ordered(append(without(defaultCaps, "CAP_NET_RAW"), "CAP_NET_ADMIN", "CAP_SYS_TIME")...)},
		{name: "add ALL", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}},
			host: noSysResource, want: noSysResource},
		{name: "add ALL drop one", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			AddCapabilities: []string{"all"}, DropCapabilities: []string{"CHOWN"}}},
			want: without(knownCaps, "CAP_CHOWN")},
		{name: "drop ALL", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}},
			want: []string{}},
		{name: "drop ALL add one", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"KILL"}}},
			want: []string{"CAP_KILL"}},
		{name: "host bounding set limits adds", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			AddCapabilities: []string{"SYS_RESOURCE", "SYS_ADMIN"}}},
			host: noSysResource, want: ordered(append(slices.Clone(defaultCaps), "CAP_SYS_ADMIN")...)},
		{name: "host bounding set limits defaults", host: []string{"CAP_CHOWN", "CAP_BPF"}, want: []string{"CAP_CHOWN"}},
		{name: "privileged", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true,
			Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}},
			host: noSysResource, want: noSysResource},
		{name: "ambient", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE", "SYS_RESOURCE"}}},
			host: noSysResource, want: []string{"CAP_NET_BIND_SERVICE"}, wantAmbient: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "unknown cap", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			AddCapabilities: []string{"FLY"}}}, wantErr: "add_capabilities"},
		{name: "unknown drop", sc: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			DropCapabilities: []string{"CAP_"}}}, wantErr: "drop_capabilities"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := capabilities(tc.sc, tc.host)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			for name, set := range map[string][]string{"bounding": got.Bounding, "effective": got.Effective, "permitted": got.Permitted} {
				if !slices.Equal(set, tc.want) {
					t.Errorf("%s = %v, want %v", name, set, tc.want)
				}
			}
			if !slices.Equal(got.Ambient, tc.wantAmbient) || !slices.Equal(got.Inheritable, tc.wantAmbient) {
				t.Errorf("ambient %v inheritable %v, want %v", got.Ambient, got.Inheritable, tc.wantAmbient)
			}
		})
	}
}

func TestHostCapabilities(t *testing.T) {
	caps, err := HostCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range caps {
		if !slices.Contains(knownCaps, c) {
			t.Errorf("unknown %s", c)
		}
	}
}
