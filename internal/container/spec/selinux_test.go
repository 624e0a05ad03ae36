package spec

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestBuildSELinux(t *testing.T) {
	level := &runtimeapi.SELinuxOption{Level: "s0:c1,c2"}
	for _, tc := range []struct {
		name           string
		enabled        bool
		container, pod *runtimeapi.SELinuxOption
		wantErr        string
	}{
		// Without SELinux the options mean nothing: ignored, as in containerd.
		{name: "no selinux, container options", container: level},
		{name: "no selinux, pod options", pod: &runtimeapi.SELinuxOption{Type: "spc_t"}},
		{name: "selinux, no options", enabled: true},
		{name: "selinux, empty options", enabled: true, container: &runtimeapi.SELinuxOption{}, pod: &runtimeapi.SELinuxOption{}},
		{name: "selinux, container level", enabled: true, container: level,
			wantErr: `linux.security_context.selinux_options: SELinux options are not applied by crid on this host, which has SELinux enabled: refusing to run without the label ":::s0:c1,c2"`},
		{name: "selinux, container user", enabled: true, container: &runtimeapi.SELinuxOption{User: "system_u"}, wantErr: "not applied by crid"},
		{name: "selinux, container role", enabled: true, container: &runtimeapi.SELinuxOption{Role: "system_r"}, wantErr: "not applied by crid"},
		{name: "selinux, pod type", enabled: true, pod: &runtimeapi.SELinuxOption{Type: "spc_t"},
			wantErr: "sandbox_config.linux.security_context.selinux_options: SELinux options are not applied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.SELinuxEnabled = tc.enabled
			if tc.container != nil {
				secCtx(&in).SelinuxOptions = tc.container
			}
			if tc.pod != nil {
				in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{
					SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{SelinuxOptions: tc.pod},
				}
			}
			_, _, err := Build(in)
			checkErr(t, err, tc.wantErr)
		})
	}
}
