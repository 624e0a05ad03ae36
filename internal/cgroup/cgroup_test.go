package cgroup

import "testing"

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		driver                  Driver
		parent                  string
		container, monitor, dir string
	}{
		{Cgroupfs, "/kubepods/besteffort/pod1", "/kubepods/besteffort/pod1/crid-abc", "/kubepods/besteffort/pod1/crid-conmon-abc", "/kubepods/besteffort/pod1/crid-abc"},
		{Cgroupfs, "", "/crid/crid-abc", "/crid/crid-conmon-abc", "/crid/crid-abc"},
		{Systemd, "kubepods-besteffort-pod1.slice", "kubepods-besteffort-pod1.slice:crid:abc", "kubepods-besteffort-pod1.slice:crid-conmon:abc",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crid-abc.scope"},
		{Systemd, "", "system.slice:crid:abc", "system.slice:crid-conmon:abc", "/system.slice/crid-abc.scope"},
	} {
		l := Layout{Driver: tc.driver}
		if got := l.Container(tc.parent, "abc"); got != tc.container {
			t.Errorf("%s %q: container %q, want %q", tc.driver, tc.parent, got, tc.container)
		}
		if got := l.Monitor(tc.parent, "abc"); got != tc.monitor {
			t.Errorf("%s %q: monitor %q, want %q", tc.driver, tc.parent, got, tc.monitor)
		}
		if got, err := Dir(l.Container(tc.parent, "abc")); err != nil || got != tc.dir {
			t.Errorf("%s %q: dir %q, %v, want %q", tc.driver, tc.parent, got, err, tc.dir)
		}
	}
}

func TestDir(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"", "", false},
		{"/kubepods/burstable/pod1", "/kubepods/burstable/pod1", false},
		{"kubepods-burstable-pod1.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice", false},
		{"kubepods.slice", "/kubepods.slice", false},
		{"kubepods--x.slice", "", true},
		{"kubepods.slice:crid-conmon:x", "/kubepods.slice/crid-conmon-x.scope", false},
		{"a:b:c", "a:b:c", false}, // not a slice: a cgroupfs path, odd as it is
	} {
		got, err := Dir(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("Dir(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzDir(f *testing.F) {
	for _, s := range []string{"kubepods-burstable-pod1.slice", "x.slice:crid:1", "/a/b", "-.slice", ":::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Dir(s)
	})
}
