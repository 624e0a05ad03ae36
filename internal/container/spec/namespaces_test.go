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
	node, pod, ctr, target := runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_TARGET
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
		{name: "userns pod", podNS: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: pod}}, wantErr: "user namespaces are not supported"},
		{name: "userns container mode", ctrNS: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: ctr}}, wantErr: "user namespaces"},
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
