package spec

import (
	"maps"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestNamespaces(t *testing.T) {
	type ns = specs.LinuxNamespace
	paths := NamespacePaths{Net: "/run/netns/p", IPC: "/run/ipcns/p", UTS: "/run/utsns/p", PID: "/proc/42/ns/pid"}
	usernsPaths := paths
	usernsPaths.User = "/run/userns/p"
	node, pod, ctr, target := runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_TARGET
	usernsPod := &runtimeapi.NamespaceOption{UsernsOptions: podUserNS(65536, 65536)}
	for _, tc := range []struct {
		name         string
		paths        NamespacePaths
		podNS, ctrNS *runtimeapi.NamespaceOption
		want         []ns
		wantHostname string
		wantErr      string
	}{
		{name: "fresh namespaces", want: []ns{{Type: "mount"}, {Type: "network"}, {Type: "ipc"}, {Type: "uts"}, {Type: "pid"}}, wantHostname: "pod-host"},
		{name: "join pod", paths: paths, want: []ns{{Type: "mount"}, {Type: "network", Path: paths.Net}, {Type: "ipc", Path: paths.IPC},
			{Type: "uts", Path: paths.UTS}, {Type: "pid", Path: paths.PID}}},
		{name: "host network and ipc", paths: NamespacePaths{PID: paths.PID}, podNS: &runtimeapi.NamespaceOption{Network: node, Ipc: node},
			want: []ns{{Type: "mount"}, {Type: "pid", Path: paths.PID}}},
		{name: "host pid", paths: paths, podNS: &runtimeapi.NamespaceOption{Pid: node},
			want: []ns{{Type: "mount"}, {Type: "network", Path: paths.Net}, {Type: "ipc", Path: paths.IPC}, {Type: "uts", Path: paths.UTS}}},
		{name: "container pid overrides pod", paths: paths, podNS: &runtimeapi.NamespaceOption{Pid: pod}, ctrNS: &runtimeapi.NamespaceOption{Pid: ctr},
			want: []ns{{Type: "mount"}, {Type: "network", Path: paths.Net}, {Type: "ipc", Path: paths.IPC}, {Type: "uts", Path: paths.UTS}, {Type: "pid"}}},
		{name: "target pid", paths: paths, ctrNS: &runtimeapi.NamespaceOption{Pid: target, TargetId: "other"},
			want: []ns{{Type: "mount"}, {Type: "network", Path: paths.Net}, {Type: "ipc", Path: paths.IPC}, {Type: "uts", Path: paths.UTS}, {Type: "pid", Path: paths.PID}}},
		{name: "target without id", ctrNS: &runtimeapi.NamespaceOption{Pid: target}, wantErr: "target_id"},
		{name: "unknown pid mode", ctrNS: &runtimeapi.NamespaceOption{Pid: 9}, wantErr: "pid"},
		{name: "userns pod", paths: usernsPaths, podNS: usernsPod, ctrNS: usernsPod,
			want: []ns{{Type: "mount"}, {Type: "network", Path: paths.Net}, {Type: "ipc", Path: paths.IPC}, {Type: "uts", Path: paths.UTS},
				{Type: "pid", Path: paths.PID}, {Type: "user", Path: usernsPaths.User}}},
		{name: "userns pod, container sends none", paths: usernsPaths, podNS: usernsPod,
			want: []ns{{Type: "mount"}, {Type: "network", Path: paths.Net}, {Type: "ipc", Path: paths.IPC}, {Type: "uts", Path: paths.UTS},
				{Type: "pid", Path: paths.PID}, {Type: "user", Path: usernsPaths.User}}},
		{name: "userns pod without pinned namespace", paths: paths, podNS: usernsPod, wantErr: "no user namespace"},
		{name: "userns container differs from pod", paths: usernsPaths, podNS: usernsPod,
			ctrNS: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: node}}, wantErr: "differs from the pod's"},
		{name: "userns pod without maps", podNS: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: pod}}, wantErr: "uids: 0 mappings"},
		{name: "userns container mode", ctrNS: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: ctr}}, wantErr: "CONTAINER is not supported"},
		{name: "userns node", podNS: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: node}},
			want: []ns{{Type: "mount"}, {Type: "network"}, {Type: "ipc"}, {Type: "uts"}, {Type: "pid"}}, wantHostname: "pod-host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Namespaces = tc.paths
			in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tc.podNS}}
			secCtx(&in).NamespaceOptions = tc.ctrNS
			s, _, err := Build(in)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if !slices.Equal(s.Linux.Namespaces, tc.want) {
				t.Errorf("namespaces %v, want %v", s.Linux.Namespaces, tc.want)
			}
			if s.Hostname != tc.wantHostname {
				t.Errorf("hostname %q, want %q", s.Hostname, tc.wantHostname)
			}
			if len(s.Linux.UIDMappings) > 0 || len(s.Linux.GIDMappings) > 0 {
				t.Errorf("maps %v %v, want none (the user namespace is joined by path)", s.Linux.UIDMappings, s.Linux.GIDMappings)
			}
		})
	}
}

func podUserNS(host, length uint32) *runtimeapi.UserNamespace {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: host, Length: length}}
	return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
}

func TestPodUserNS(t *testing.T) {
	mapping := func(c, h, l uint32) *runtimeapi.IDMapping {
		return &runtimeapi.IDMapping{ContainerId: c, HostId: h, Length: l}
	}
	one := []*runtimeapi.IDMapping{mapping(0, 65536, 65536)}
	for _, tc := range []struct {
		name    string
		opts    *runtimeapi.UserNamespace
		want    *UserNS
		wantErr string
	}{
		{name: "none"},
		{name: "node", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
		{name: "node with maps", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE, Uids: one}, wantErr: "mode NODE takes no"},
		{name: "pod", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: []*runtimeapi.IDMapping{mapping(0, 131072, 1000)}},
			want: &UserNS{UIDs: []specs.LinuxIDMapping{{HostID: 65536, Size: 65536}}, GIDs: []specs.LinuxIDMapping{{HostID: 131072, Size: 1000}}}},
		{name: "two uid maps", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{mapping(0, 1000, 10), mapping(0, 2000, 10)}, Gids: one},
			wantErr: "uids: 2 mappings"},
		{name: "no gid map", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one}, wantErr: "gids: 0 mappings"},
		{name: "root not mapped", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{mapping(1, 1000, 10)}, Gids: one},
			wantErr: "container ID 0 must be mapped"},
		{name: "empty range", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{mapping(0, 1000, 0)}, Gids: one},
			wantErr: "length 0"},
		{name: "overflow", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{mapping(0, 1<<32-10, 65536)}, Gids: one},
			wantErr: "overflow"},
		{name: "host root", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{mapping(0, 0, 65536)}, Gids: one},
			wantErr: "host ID 0"},
		{name: "container mode", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}, wantErr: "CONTAINER is not supported"},
		{name: "target mode", opts: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}, wantErr: "TARGET is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PodUserNS(&runtimeapi.NamespaceOption{UsernsOptions: tc.opts})
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if !sameUserNS(got, tc.want) {
				t.Errorf("PodUserNS = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSysctls(t *testing.T) {
	node := runtimeapi.NamespaceMode_NODE
	for _, tc := range []struct {
		name    string
		sysctls map[string]string
		podNS   *runtimeapi.NamespaceOption
		want    map[string]string
		wantErr string
	}{
		{name: "ipc and net", sysctls: map[string]string{"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100", "net.ipv4.ip_forward": "1"},
			want: map[string]string{"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100", "net.ipv4.ip_forward": "1"}},
		{name: "slash form", sysctls: map[string]string{"net/ipv4/conf/eth0.100/forwarding": "1"},
			want: map[string]string{"net.ipv4.conf.eth0/100.forwarding": "1"}},
		{name: "net on host network", sysctls: map[string]string{"net.ipv4.ip_forward": "1"}, podNS: &runtimeapi.NamespaceOption{Network: node}, wantErr: "host's network"},
		{name: "ipc on host ipc", sysctls: map[string]string{"kernel.sem": "1 2 3 4"}, podNS: &runtimeapi.NamespaceOption{Ipc: node}, wantErr: "host's ipc"},
		{name: "mqueue on host ipc", sysctls: map[string]string{"fs.mqueue.msg_max": "1"}, podNS: &runtimeapi.NamespaceOption{Ipc: node}, wantErr: "fs.mqueue.msg_max"},
		{name: "ipc on host network is fine", sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}, podNS: &runtimeapi.NamespaceOption{Network: node},
			want: map[string]string{"kernel.shm_rmid_forced": "1"}},
		{name: "not namespaced", sysctls: map[string]string{"vm.swappiness": "1"}, wantErr: "not a namespaced sysctl"},
		{name: "empty name", sysctls: map[string]string{"": "1"}, wantErr: "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{Sysctls: tc.sysctls,
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tc.podNS}}
			s, _, err := Build(in)
			if checkErr(t, err, tc.wantErr) && !maps.Equal(s.Linux.Sysctl, tc.want) {
				t.Errorf("sysctls %v, want %v", s.Linux.Sysctl, tc.want)
			}
		})
	}
}
