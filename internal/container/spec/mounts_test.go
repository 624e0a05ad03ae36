package spec

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crierrors "k8s.io/cri-api/pkg/errors"
)

func findMount(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestMounts(t *testing.T) {
	host := t.TempDir()
	for _, d := range []string{"a", "b", "shm"} {
		if err := os.MkdirAll(filepath.Join(host, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(host, "hosts"), "")
	writeFile(t, filepath.Join(host, "resolv"), "")
	if err := os.Symlink(filepath.Join(host, "a"), filepath.Join(host, "link")); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(host, "a"), filepath.Join(host, "b")
	for _, tc := range []struct {
		name    string
		mounts  []*runtimeapi.Mount
		rro     bool
		check   func(t *testing.T, s *specs.Spec)
		wantErr string
	}{
		{
			name: "defaults and pod files",
			check: func(t *testing.T, s *specs.Spec) {
				var dsts []string
				for _, m := range s.Mounts {
					dsts = append(dsts, m.Destination)
				}
				want := []string{"/proc", "/dev", "/sys", "/dev/pts", "/dev/mqueue", "/etc/hosts", "/etc/resolv.conf", "/dev/shm", "/sys/fs/cgroup"}
				if !slices.Equal(dsts, want) {
					t.Errorf("mounts %v, want %v", dsts, want)
				}
				if m := findMount(s, "/dev/shm"); m.Type != "bind" || m.Source != filepath.Join(host, "shm") || !slices.Contains(m.Options, "rw") {
					t.Errorf("shm = %+v", m)
				}
				if m := findMount(s, "/sys"); !slices.Contains(m.Options, "ro") {
					t.Errorf("sys = %+v", m)
				}
			},
		},
		{
			name: "cri mounts sorted parents first",
			mounts: []*runtimeapi.Mount{
				{HostPath: b, ContainerPath: "/data/sub/x"},
				{HostPath: a, ContainerPath: "/data/", Readonly: true},
				{HostPath: b, ContainerPath: "/data/sub"},
			},
			check: func(t *testing.T, s *specs.Spec) {
				idx := func(d string) int {
					return slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == d })
				}
				if !(idx("/data") < idx("/data/sub") && idx("/data/sub") < idx("/data/sub/x")) {
					t.Errorf("order: %v", s.Mounts)
				}
				m := findMount(s, "/data")
				if !slices.Equal(m.Options, []string{"rbind", "rprivate", "ro"}) || m.Type != "bind" {
					t.Errorf("data = %+v", m)
				}
				if m := findMount(s, "/data/sub"); !slices.Contains(m.Options, "rw") {
					t.Errorf("sub = %+v", m)
				}
				if s.Linux.RootfsPropagation != "" {
					t.Errorf("rootfs propagation %q", s.Linux.RootfsPropagation)
				}
			},
		},
		{
			name:   "cri mount replaces pod file",
			mounts: []*runtimeapi.Mount{{HostPath: filepath.Join(host, "resolv"), ContainerPath: "/etc/hosts"}},
			check: func(t *testing.T, s *specs.Spec) {
				if m := findMount(s, "/etc/hosts"); m.Source != filepath.Join(host, "resolv") {
					t.Errorf("hosts = %+v", m)
				}
			},
		},
		{
			name:   "cri /dev replaces everything below",
			mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/dev"}},
			check: func(t *testing.T, s *specs.Spec) {
				for _, m := range s.Mounts {
					if filepath.Dir(m.Destination) == "/dev" {
						t.Errorf("%s kept", m.Destination)
					}
				}
			},
		},
		{
			name:   "symlink resolved",
			mounts: []*runtimeapi.Mount{{HostPath: filepath.Join(host, "link"), ContainerPath: "/l"}},
			check: func(t *testing.T, s *specs.Spec) {
				if m := findMount(s, "/l"); m.Source != a {
					t.Errorf("source %q", m.Source)
				}
			},
		},
		{
			name:   "rro supported",
			rro:    true,
			mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/r", Readonly: true, RecursiveReadOnly: true}},
			check: func(t *testing.T, s *specs.Spec) {
				if m := findMount(s, "/r"); !slices.Contains(m.Options, "rro") || slices.Contains(m.Options, "ro") {
					t.Errorf("options %v", m.Options)
				}
			},
		},
		{name: "rro unsupported", mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/r", Readonly: true, RecursiveReadOnly: true}},
			wantErr: crierrors.ErrRROUnsupported.Error()},
		{name: "rro needs readonly", rro: true, mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/r", RecursiveReadOnly: true}},
			wantErr: "requires readonly"},
		{name: "rro needs private", rro: true, mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/r", Readonly: true, RecursiveReadOnly: true,
			Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}, wantErr: "private propagation"},
		{name: "relative container path", mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "data"}}, wantErr: "not absolute"},
		{name: "dotdot container path", mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/data/../etc"}}, wantErr: `".."`},
		{name: "root container path", mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/"}}, wantErr: "root"},
		{name: "duplicate", mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/d"}, {HostPath: b, ContainerPath: "/d/"}}, wantErr: "duplicate"},
		{name: "missing host path", mounts: []*runtimeapi.Mount{{HostPath: filepath.Join(host, "nope"), ContainerPath: "/d"}}, wantErr: "does not exist"},
		{name: "empty host path", mounts: []*runtimeapi.Mount{{ContainerPath: "/d"}}, wantErr: "host_path"},
		{name: "relative host path", mounts: []*runtimeapi.Mount{{HostPath: "a", ContainerPath: "/d"}}, wantErr: "not absolute"},
		{name: "image volume not mounted", mounts: []*runtimeapi.Mount{{ContainerPath: "/d", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "busybox"}}}, wantErr: "not mounted"},
		{name: "idmapped", mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/d", UidMappings: []*runtimeapi.IDMapping{{Length: 1}}}}, wantErr: "need a pod with a user namespace"},
		{name: "unknown propagation", mounts: []*runtimeapi.Mount{{HostPath: a, ContainerPath: "/d", Propagation: 9}}, wantErr: "propagation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Config.Mounts = tc.mounts
			in.SupportsRRO = tc.rro
			in.ShmPath, in.HostsPath, in.ResolvConfPath = filepath.Join(host, "shm"), filepath.Join(host, "hosts"), filepath.Join(host, "resolv")
			s, _, err := Build(in)
			if checkErr(t, err, tc.wantErr) {
				tc.check(t, s)
			}
		})
	}
}

func TestMountOptions(t *testing.T) {
	host := t.TempDir()
	for _, tc := range []struct {
		name     string
		readonly bool
		opts     []string
		want     []string // the mount's options after rbind and rprivate
		wantErr  string
	}{
		{name: "none", want: []string{"rw"}},
		{name: "kubernetes' three", opts: []string{"noexec", "nodev", "nosuid"}, want: []string{"rw", "noexec", "nodev", "nosuid"}},
		{name: "with readonly", readonly: true, opts: []string{"noexec"}, want: []string{"ro", "noexec"}},
		{name: "access times", opts: []string{"noatime", "nodiratime"}, want: []string{"rw", "noatime", "nodiratime"}},
		{name: "strictatime", opts: []string{"strictatime"}, want: []string{"rw", "strictatime"}},
		{name: "relatime", opts: []string{"relatime"}, want: []string{"rw", "relatime"}},
		{name: "repeated once", opts: []string{"noexec", "noexec"}, want: []string{"rw", "noexec"}},
		{name: "two atime policies", opts: []string{"noatime", "relatime"}, wantErr: `mount_options[1]: "relatime" conflicts with "noatime"`},
		{name: "exec lifts", opts: []string{"exec"}, wantErr: `mount_options[0]: "exec" is not a bind mount option`},
		{name: "suid lifts", opts: []string{"nodev", "suid"}, wantErr: `mount_options[1]: "suid"`},
		{name: "dev lifts", opts: []string{"dev"}, wantErr: `"dev"`},
		{name: "ro has a field", opts: []string{"ro"}, wantErr: "set readonly"},
		{name: "rw has a field", readonly: true, opts: []string{"rw"}, wantErr: "set readonly"},
		{name: "propagation has a field", opts: []string{"rshared"}, wantErr: "set propagation"},
		{name: "filesystem data", opts: []string{"size=1m"}, wantErr: `"size=1m"`},
		{name: "bind", opts: []string{"bind"}, wantErr: `"bind"`},
		{name: "empty", opts: []string{""}, wantErr: `mount_options[0]: ""`},
		{name: "case matters", opts: []string{"NOEXEC"}, wantErr: `"NOEXEC"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Config.Mounts = []*runtimeapi.Mount{{HostPath: host, ContainerPath: "/v", Readonly: tc.readonly, MountOptions: tc.opts}}
			s, _, err := Build(in)
			if !checkErr(t, err, tc.wantErr) {
				if !errdefs.IsInvalidArgument(err) {
					t.Errorf("error %v is no InvalidArgument", err)
				}
				return
			}
			m := findMount(s, "/v")
			if want := append([]string{"rbind", "rprivate"}, tc.want...); !slices.Equal(m.Options, want) {
				t.Errorf("options %v, want %v", m.Options, want)
			}
		})
	}
}

func TestMountsReadonlyRootfsPodFiles(t *testing.T) {
	in := testInput(t)
	secCtx(&in).ReadonlyRootfs = true
	host := t.TempDir()
	writeFile(t, filepath.Join(host, "hosts"), "")
	in.HostsPath, in.ShmPath = filepath.Join(host, "hosts"), host
	s, _, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if m := findMount(s, "/etc/hosts"); !slices.Contains(m.Options, "ro") {
		t.Errorf("hosts %v", m.Options)
	}
	if m := findMount(s, "/dev/shm"); !slices.Contains(m.Options, "rw") {
		t.Errorf("shm %v", m.Options)
	}
}

// TestMountPropagation mounts a private tmpfs, then makes it shared and then
// a slave, checking that Build accepts each propagation only when the host
// mount can honour it.
func TestMountPropagation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	sub := filepath.Join(dir, "vol")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	makeProp := func(flag uintptr) {
		if err := unix.Mount("", dir, "", flag, ""); err != nil {
			t.Fatal(err)
		}
	}
	build := func(p runtimeapi.MountPropagation) (*specs.Spec, error) {
		in := testInput(t)
		in.Config.Mounts = []*runtimeapi.Mount{{HostPath: sub, ContainerPath: "/v", Propagation: p}}
		s, _, err := Build(in)
		return s, err
	}
	h2c, bidi := runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL

	makeProp(unix.MS_PRIVATE)
	if _, err := build(h2c); !checkErr(t, err, "not a shared or slave mount") {
		t.Log("ok")
	}
	_, err := build(bidi)
	checkErr(t, err, "not a shared mount")
	s, err := build(runtimeapi.MountPropagation_PROPAGATION_PRIVATE)
	checkErr(t, err, "")
	if m := findMount(s, "/v"); !slices.Contains(m.Options, "rprivate") {
		t.Errorf("options %v", m.Options)
	}

	makeProp(unix.MS_SHARED)
	s, err = build(bidi)
	checkErr(t, err, "")
	if m := findMount(s, "/v"); !slices.Contains(m.Options, "rshared") || s.Linux.RootfsPropagation != "rshared" {
		t.Errorf("options %v rootfs %q", m.Options, s.Linux.RootfsPropagation)
	}
	s, err = build(h2c)
	checkErr(t, err, "")
	if m := findMount(s, "/v"); !slices.Contains(m.Options, "rslave") || s.Linux.RootfsPropagation != "rslave" {
		t.Errorf("options %v rootfs %q", m.Options, s.Linux.RootfsPropagation)
	}

	// A slave of a shared mount receives host mounts: enough for rslave.
	peer := t.TempDir()
	if err := unix.Mount(dir, peer, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(peer, unix.MNT_DETACH) })
	if err := unix.Mount("", peer, "", unix.MS_SLAVE, ""); err != nil {
		t.Fatal(err)
	}
	in := testInput(t)
	in.Config.Mounts = []*runtimeapi.Mount{{HostPath: filepath.Join(peer, "vol"), ContainerPath: "/v", Propagation: h2c}}
	_, _, err = Build(in)
	checkErr(t, err, "")
	in.Config.Mounts[0].Propagation = bidi
	_, _, err = Build(in)
	checkErr(t, err, "not a shared mount")
}

func TestDevices(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	writeFile(t, file, "")
	for _, tc := range []struct {
		name    string
		devs    []*runtimeapi.Device
		check   func(t *testing.T, s *specs.Spec)
		wantErr string
	}{
		{name: "none: deny all", check: func(t *testing.T, s *specs.Spec) {
			r := s.Linux.Resources.Devices
			if len(r) != 1 || r[0].Allow || r[0].Access != "rwm" || len(s.Linux.Devices) != 0 {
				t.Errorf("rules %+v devices %+v", r, s.Linux.Devices)
			}
		}},
		{name: "null renamed", devs: []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"}},
			check: func(t *testing.T, s *specs.Spec) {
				d := s.Linux.Devices[0]
				if d.Path != "/dev/mynull" || d.Type != "c" || d.Major != 1 || d.Minor != 3 {
					t.Errorf("device %+v", d)
				}
				r := s.Linux.Resources.Devices[1]
				if !r.Allow || r.Type != "c" || *r.Major != 1 || *r.Minor != 3 || r.Access != "rw" {
					t.Errorf("rule %+v", r)
				}
			}},
		{name: "default container path and permissions", devs: []*runtimeapi.Device{{HostPath: "/dev/zero"}},
			check: func(t *testing.T, s *specs.Spec) {
				if d := s.Linux.Devices[0]; d.Path != "/dev/zero" || s.Linux.Resources.Devices[1].Access != "rwm" {
					t.Errorf("device %+v", d)
				}
			}},
		{name: "bad permissions", devs: []*runtimeapi.Device{{HostPath: "/dev/null", Permissions: "rwx"}}, wantErr: "permissions"},
		{name: "not a device", devs: []*runtimeapi.Device{{HostPath: file}}, wantErr: "not a device"},
		{name: "missing", devs: []*runtimeapi.Device{{HostPath: "/dev/nonexistent-crid"}}, wantErr: "host_path"},
		{name: "relative", devs: []*runtimeapi.Device{{HostPath: "null"}}, wantErr: "host_path"},
		{name: "bad container path", devs: []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "../null"}}, wantErr: "container_path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Config.Devices = tc.devs
			s, _, err := Build(in)
			if checkErr(t, err, tc.wantErr) {
				tc.check(t, s)
			}
		})
	}
}

func TestIDMappedMounts(t *testing.T) {
	host := t.TempDir()
	pod := podUserNS(65536, 65536)
	for _, tc := range []struct {
		name    string
		podNS   *runtimeapi.UserNamespace
		uids    []*runtimeapi.IDMapping
		want    []specs.LinuxIDMapping
		wantErr string
	}{
		{name: "pod maps", podNS: pod, uids: pod.GetUids(), want: []specs.LinuxIDMapping{{HostID: 65536, Size: 65536}}},
		{name: "no maps asked", podNS: pod},
		{name: "other maps", podNS: pod, uids: []*runtimeapi.IDMapping{{HostId: 1000, Length: 65536}}, wantErr: "differ from the pod's"},
		{name: "no pod userns", uids: pod.GetUids(), wantErr: "need a pod with a user namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Namespaces.User = "/run/userns/p"
			in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.podNS}}}
			in.Config.Mounts = []*runtimeapi.Mount{{HostPath: host, ContainerPath: "/d", UidMappings: tc.uids, GidMappings: tc.uids}}
			s, _, err := Build(in)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			m := findMount(s, "/d")
			if m == nil || !slices.Equal(m.UIDMappings, tc.want) || !slices.Equal(m.GIDMappings, tc.want) {
				t.Errorf("mount %+v, want maps %v", m, tc.want)
			}
		})
	}
}
