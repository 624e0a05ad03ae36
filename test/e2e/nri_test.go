package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// NRI plugins adjust containers as crid creates them. One plugin, which
// crid starts from its plugin dir and configures from its conf dir,
// injects an env var and a read-only mount; one that connects to crid's
// socket refuses containers while a file exists: the create fails with
// its error and leaves nothing behind, and the same create succeeds once
// the plugin agrees.
func TestNRIPlugins(t *testing.T) {
	dir := t.TempDir()
	pluginDir, confDir, shared := filepath.Join(dir, "plugins"), filepath.Join(dir, "conf.d"), filepath.Join(dir, "shared")
	for _, d := range []string{pluginDir, confDir, shared} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(shared, "hello"), []byte("from the plugin\n"), 0o644)
	plugin, err := os.ReadFile(bin.nriPlugin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(pluginDir, "10-inject"), plugin, 0o755)
	os.WriteFile(filepath.Join(confDir, "10-inject.conf"), []byte("env NRI_INJECTED=yes\nmount "+shared+":/nri\n"), 0o644)
	cfgFile := filepath.Join(dir, "crid.toml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("[nri]\nplugin_path = %q\nplugin_config_path = %q\nplugin_request_timeout = \"10s\"\n", pluginDir, confDir)), 0o644)
	// Registered first, so run last: after crid is gone.
	t.Cleanup(func() { endPlugins(t, pluginDir) })
	c := newCrid(t, rig(t), "--config", cfgFile)

	failWhile, ready := filepath.Join(dir, "refuse"), filepath.Join(dir, "refuser-ready")
	os.WriteFile(failWhile, nil, 0o644)
	start(t, bin.nriPlugin, "-socket", filepath.Join(c.dir, "nri.sock"), "-name", "refuser", "-idx", "20", "-fail-while", failWhile, "-ready", ready)
	waitUntil(t, "the refusing plugin to connect", func() bool { _, err := os.Stat(ready); return err == nil })

	c.mustCrictl("pull", "busybox")
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "nri", Namespace: "e2e", Uid: "nri-uid"},
		LogDirectory: filepath.Join(c.dir, "logs", "nri"),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: podParent("nri")},
	}
	pod, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	create := &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "nri"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sh", "-c", `echo "env $NRI_INJECTED"; cat /nri/hello; touch /nri/x 2>/dev/null || echo read-only; exec sleep 3600`},
		LogPath:  "nri.log",
	}}
	// What the pod's own infra container made: the refused create must
	// leave exactly this.
	leftovers := func() string {
		var out []string
		for _, d := range []string{filepath.Join(c.root, "containers"), filepath.Join(c.state, "containers")} {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
		mounts, _ := os.ReadFile("/proc/self/mounts")
		for _, line := range strings.Split(string(mounts), "\n") {
			if strings.Contains(line, c.dir) {
				out = append(out, line)
			}
		}
		return strings.Join(out, "\n")
	}
	before := leftovers()
	// The plugin is connected once synchronised; the library registers it
	// just after, so a create may still pass it by: it is removed and tried
	// again.
	var refusal error
	waitUntil(t, "the plugin to refuse a create", func() bool {
		resp, err := rt.CreateContainer(ctx(t), create)
		if err == nil {
			c.mustCrictl("rm", resp.ContainerId)
			return false
		}
		refusal = err
		return true
	})
	if !strings.Contains(refusal.Error(), "nriplugin refuses container nri") {
		t.Fatalf("create failed with %v, want the plugin's refusal", refusal)
	}
	if out := c.mustCrictl("ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("a refused container is listed: %q", out)
	}
	if after := leftovers(); after != before {
		t.Errorf("a refused container left dirs or mounts:\n%s\nwhere there were:\n%s", after, before)
	}

	os.Remove(failWhile)
	resp, err := rt.CreateContainer(ctx(t), create)
	if err != nil {
		t.Fatalf("the retried create: %v", err)
	}
	if _, err := rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatal(err)
	}
	var logs string
	waitUntil(t, "the container's report", func() bool {
		logs, _ = c.crictl("logs", resp.ContainerId)
		return strings.Contains(logs, "read-only") || strings.Contains(logs, "No such file")
	})
	for _, want := range []string{"env yes", "from the plugin", "read-only"} {
		if !strings.Contains(logs, want) {
			t.Errorf("container output lacks %q:\n%s", want, logs)
		}
	}
}

// endPlugins ends the plugins crid started from dir, by PID, once crid is
// gone, and waits until they are.
func endPlugins(t *testing.T, dir string) {
	pids := func() []int {
		var out []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); strings.HasPrefix(exe, dir+"/") {
				out = append(out, pid)
			}
		}
		return out
	}
	waitUntil(t, "crid's plugins to exit", func() bool {
		left := pids()
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		return len(left) == 0
	})
}
