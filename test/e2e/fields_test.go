package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The newer CRI fields, on real runc: a CDI device and its env in the
// container, the configured stop signal, bind mount options, and the
// container statuses PodSandboxStatus carries.
func TestCRIFields(t *testing.T) {
	dir := t.TempDir()
	cdiDir := filepath.Join(dir, "cdi")
	os.MkdirAll(cdiDir, 0o755)
	// A harmless device: the host's /dev/null under another name.
	os.WriteFile(filepath.Join(cdiDir, "example.yaml"), []byte(`cdiVersion: "0.6.0"
kind: vendor.example/dev
devices:
- name: "null"  # quoted: bare null is YAML's null
  containerEdits:
    deviceNodes: [{path: /dev/crid-null, hostPath: /dev/null}]
    env: [CRID_CDI=yes]
`), 0o644)
	cfgFile := filepath.Join(dir, "crid.toml")
	os.WriteFile(cfgFile, []byte("[cdi]\nspec_dirs = [\""+cdiDir+"\"]\n"), 0o644)
	c := newCrid(t, rig(t), "--config", cfgFile)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	vol := filepath.Join(dir, "vol")
	os.MkdirAll(vol, 0o755)

	podID, ctrID, err := c.runPodWith("fields", `trap 'echo got USR1; exit 3' USR1; test -c /dev/crid-null && echo "cdi $CRID_CDI"; grep " /vol " /proc/self/mountinfo; while :; do sleep 1; done`,
		func(cfg *runtimeapi.ContainerConfig) {
			cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=null"}}
			cfg.StopSignal = runtimeapi.Signal_SIGNAL_SIGUSR1
			cfg.Mounts = []*runtimeapi.Mount{{HostPath: vol, ContainerPath: "/vol", MountOptions: []string{"noexec", "nodev"}}}
		})
	if err != nil {
		t.Fatal(err)
	}
	var logs string
	waitUntil(t, "the container's report", func() bool {
		logs, _ = c.crictl("logs", ctrID)
		return strings.Contains(logs, " /vol ")
	})
	if !strings.Contains(logs, "cdi yes") {
		t.Errorf("no CDI device or env in the container:\n%s", logs)
	}
	if line := logs[strings.Index(logs, " /vol "):]; !strings.Contains(line, "noexec") || !strings.Contains(line, "nodev") {
		t.Errorf("the volume's mount lacks its options: %s", line)
	}
	ps, err := rt.PodSandboxStatus(ctx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || len(ps.ContainersStatuses) != 1 || ps.ContainersStatuses[0].Id != ctrID || ps.Timestamp == 0 {
		t.Errorf("PodSandboxStatus: %v containers, timestamp %d, %v", len(ps.GetContainersStatuses()), ps.GetTimestamp(), err)
	}
	if st := c.containerStatus(ctrID); st.StopSignal != runtimeapi.Signal_SIGNAL_SIGUSR1 {
		t.Errorf("status stop signal %v", st.StopSignal)
	}
	if _, err := rt.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 30}); err != nil {
		t.Fatal(err)
	}
	if st := c.containerStatus(ctrID); st.ExitCode != 3 {
		t.Errorf("stopped with exit %d, want 3 (the stop signal's trap)", st.ExitCode)
	}

	for name, edit := range map[string]func(*runtimeapi.ContainerConfig){
		"unknown CDI device": func(cfg *runtimeapi.ContainerConfig) {
			cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=nope"}}
		},
		"unsafe mount option": func(cfg *runtimeapi.ContainerConfig) {
			cfg.Mounts = []*runtimeapi.Mount{{HostPath: vol, ContainerPath: "/vol", MountOptions: []string{"exec"}}}
		},
	} {
		if _, _, err := c.runPodWith("bad-"+strings.ReplaceAll(name, " ", "-"), "true", edit); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}
