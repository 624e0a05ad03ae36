package spec

import (
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzBuild feeds arbitrary CRI configs to Build: it may reject them but
// must never panic.
func FuzzBuild(f *testing.F) {
	seed := func(c *runtimeapi.ContainerConfig, p *runtimeapi.PodSandboxConfig) {
		cb, _ := proto.Marshal(c)
		pb, _ := proto.Marshal(p)
		f.Add(cb, pb)
	}
	seed(&runtimeapi.ContainerConfig{Command: []string{"/bin/true"}}, &runtimeapi.PodSandboxConfig{})
	seed(&runtimeapi.ContainerConfig{
		Command: []string{"/bin/sh"},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2, MemoryLimitInBytes: 1 << 30, OomScoreAdj: 5},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities:     &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"CHOWN"}},
				RunAsUser:        &runtimeapi.Int64Value{Value: 1000},
				RunAsGroup:       &runtimeapi.Int64Value{Value: 1000},
				Seccomp:          &runtimeapi.SecurityProfile{},
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "x"},
				MaskedPaths:      []string{"/proc/kcore"},
			},
		},
		Mounts:  []*runtimeapi.Mount{{HostPath: "/tmp", ContainerPath: "/data", Readonly: true}},
		Devices: []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/n", Permissions: "rw"}},
		Envs:    []*runtimeapi.KeyValue{{Key: "A", Value: []byte("b")}},
	}, &runtimeapi.PodSandboxConfig{
		Hostname: "h",
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			Sysctls:         map[string]string{"net.ipv4.ip_forward": "1", "kernel/shm_rmid_forced": "1"},
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}},
		},
	})
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, cb, pb []byte) {
		var c runtimeapi.ContainerConfig
		var p runtimeapi.PodSandboxConfig
		if proto.Unmarshal(cb, &c) != nil || proto.Unmarshal(pb, &p) != nil {
			return
		}
		// Privileged containers walk the host's /dev: correct but slow, and
		// covered by TestBuildPrivileged.
		if c.GetLinux().GetSecurityContext().GetPrivileged() {
			c.Linux.SecurityContext.Privileged = false
		}
		s, u, err := Build(Input{ID: "f", Config: &c, Sandbox: &p, RootFS: root, SeccompProfileRoot: root})
		if err == nil && (s == nil || u == nil || s.Process == nil || len(s.Process.Args) == 0) {
			t.Fatalf("incomplete result without error: %+v", s)
		}
	})
}
