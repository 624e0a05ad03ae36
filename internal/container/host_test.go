package container

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHugetlbController(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "cgroup")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory hugetlb pids\n"), 0o644)
	v1 := "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	for _, tc := range []struct {
		name, mountinfo string
		want            bool
	}{
		{"v1 with hugetlb", v1 + "36 31 0:33 / /sys/fs/cgroup/hugetlb rw,relatime - cgroup cgroup rw,hugetlb\n", true},
		{"v1 without hugetlb", v1, false},
		// Hybrid: runc sets v1 controllers only, whatever the v2 tree lists.
		{"hybrid", v1 + "41 31 0:38 / " + root + "/unified rw,relatime - cgroup2 cgroup2 rw\n", false},
		{"unified", "30 23 0:27 / " + root + " rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", true},
	} {
		mi := filepath.Join(dir, "mountinfo")
		os.WriteFile(mi, []byte(tc.mountinfo), 0o644)
		if got := hugetlbController(mi, root); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644)
	if hugetlbController(filepath.Join(dir, "mountinfo"), root) {
		t.Error("unified without hugetlb: got true")
	}
}

func TestRuntimeCRIUOptions(t *testing.T) {
	dir := t.TempDir()
	for name, help := range map[string]string{
		// runc 1.1's help and runc 1.5's, cut down.
		"runc11": "   --tcp-established  allow open tcp connections\n   --manage-cgroups-mode value  cgroups mode: 'soft' (default), 'full' and 'strict'\n",
		"runc15": "   --tcp-skip-in-flight  skip in-flight tcp connections\n   --manage-cgroups-mode value  cgroups mode: soft|full|strict|ignore (default: soft)\n",
	} {
		script := "#!/bin/sh\n[ \"$2\" = --help ] && printf '%s' \"" + help + "\"\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]criuCaps{
		"runc11": {},
		"runc15": {restore: true, skipInFlight: true},
		"none":   {},
	} {
		if got := runtimeCRIU(filepath.Join(dir, name)); got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
}
