package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// conmonPID reads a container's monitor pid from its pid file.
func (c *crid) conmonPID(id string) int {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.state, "containers", id, "conmon.pid"))
	if err != nil {
		c.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		c.t.Fatal(err)
	}
	return pid
}

// A container whose monitor is killed is reported exited (137, "monitor
// gone") without anyone asking, and then stops and removes like any other,
// as does its pod.
func TestConmonKilled(t *testing.T) {
	c := newCrid(t, rig(t))
	var pods, ctrs []string
	for i := range 3 {
		pod, ctr := c.runPod(fmt.Sprintf("orphan%d", i), "exec sleep 3600")
		pods, ctrs = append(pods, pod), append(ctrs, ctr)
	}
	for _, id := range ctrs {
		if err := syscall.Kill(c.conmonPID(id), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ctrs {
		waitUntil(t, "container "+id+" reported exited", func() bool {
			return c.containerStatus(id).State == runtimeapi.ContainerState_CONTAINER_EXITED
		})
		if st := c.containerStatus(id); st.ExitCode != 137 || !strings.Contains(st.Message, "monitor gone") {
			t.Fatalf("container %s: exit %d reason %q message %q", id, st.ExitCode, st.Reason, st.Message)
		}
		c.mustCrictl("stop", id)
		c.mustCrictl("rm", id)
	}
	for _, pod := range pods {
		c.mustCrictl("stopp", pod)
		c.mustCrictl("rmp", pod)
	}
	c.assertNothingLeft()
}

// A pod whose infra process dies turns not ready (the kubelet then makes
// a new one), and its containers are stopped.
func TestInfraKilled(t *testing.T) {
	c := newCrid(t, rig(t))
	c.mustCrictl("pull", "busybox")
	pod, ctr := c.podFilesNS("shared", "exec sleep 3600", map[string]any{"pid": 0})
	podID := strings.TrimSpace(c.mustCrictl("runp", pod))
	ctrID := strings.TrimSpace(c.mustCrictl("create", podID, ctr, pod))
	c.mustCrictl("start", ctrID)
	var inspect struct {
		Info struct {
			InfraPID int `json:"infraPID"`
		} `json:"info"`
	}
	out := c.mustCrictl("inspectp", podID)
	if err := json.Unmarshal([]byte(out), &inspect); err != nil || inspect.Info.InfraPID <= 0 {
		t.Fatalf("no infra pid in inspectp (%v):\n%s", err, out)
	}
	if err := syscall.Kill(inspect.Info.InfraPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	waitUntil(t, "pod not ready", func() bool {
		resp, err := rt.PodSandboxStatus(ctx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
		return err == nil && resp.Status.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	})
	waitUntil(t, "container stopped", func() bool {
		return c.containerStatus(ctrID).State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}

// With a CNI plugin whose DEL hangs, crid serves at once after a restart
// and runs new pods while the old pod waits for its DEL; once the plugin
// returns, the old pod is cleaned up.
func TestHungCNIAtStart(t *testing.T) {
	c := newCrid(t, rig(t), "--cni-bin-dir", bin.cniDir+":/usr/lib/cni:/opt/cni/bin")
	c.mustCrictl("pull", "busybox")
	hang := filepath.Join(c.dir, "hang")
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "e2e", "plugins": [
  {"type": "bridge", "bridge": "e2e0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.77.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "cnihang", "hangFile": %q}]}`, c.ipam, hang)
	if err := os.WriteFile(filepath.Join(c.netConf, "10-e2e.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// Crash after CNI ADD: the next start owes the pod a DEL.
	c.p.signal(syscall.SIGTERM)
	c.startWith(bin.cridCrash, "CRID_CRASH_AT=pod/network/made")
	c.waitRecovered()
	pod, _ := c.podFiles("stuck", "exec sleep 3600")
	if _, err := c.crictl("runp", pod); err == nil {
		t.Fatal("runp succeeded through a crash point")
	}
	c.p.cmd.Wait()
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.startWith(bin.crid) // returns once the socket is there
	if c.recovered() {
		t.Fatal("recovery finished while the CNI DEL hangs")
	}
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	if _, err := rt.Version(ctx(t), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("crid does not serve while recovering: %v", err)
	}
	podID, ctrID := c.runPod("fresh", "exec sleep 3600")
	if st := c.containerStatus(ctrID); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("new pod's container: %v", st.State)
	}
	if c.recovered() {
		t.Fatal("recovery finished while the CNI DEL hangs")
	}
	os.Remove(hang)
	c.waitRecovered()
	c.mustCrictl("stopp", podID)
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}

// With an OCI runtime that hangs, crid serves at once after a restart:
// the container it cannot ask about answers with its last known state, and
// Unavailable to changes, until the runtime answers.
func TestHungRuntimeAtStart(t *testing.T) {
	dir := t.TempDir()
	hang := filepath.Join(dir, "hang")
	wrapper := filepath.Join(dir, "runc-hang")
	script := fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = state ]; then\n    while [ -e %q ]; do sleep 0.02; done\n  fi\ndone\nexec runc \"$@\"\n", hang)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "crid.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[runtimes.runc]\npath = %q\n", wrapper)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCrid(t, rig(t), "--config", cfg)
	podID, ctrID := c.runPod("hung", "exec sleep 3600")
	c.p.signal(syscall.SIGKILL)
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.startWith(bin.crid)
	if st := c.containerStatus(ctrID); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container while its runtime hangs: %v", st.State)
	}
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	if _, err := rt.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: ctrID}); status.Code(err) != codes.Unavailable {
		t.Fatalf("StopContainer while recovering: %v, want Unavailable", err)
	}
	if c.recovered() {
		t.Fatal("recovery finished while the runtime hangs")
	}
	os.Remove(hang)
	c.waitRecovered()
	if st := c.containerStatus(ctrID); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after recovery: %v", st.State)
	}
	c.mustCrictl("stopp", podID)
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}

// A node without its OCI runtime or conmon says so in Status, with the
// reason, and advertises only the handlers it can run.
func TestRuntimeNotReady(t *testing.T) {
	hosts := rig(t)
	for _, tc := range []struct{ name, config, reason string }{
		{"no runc", "[runtimes.runc]\npath = \"/nonexistent/runc\"\n", "RuntimeHandlerMissing"},
		{"no conmon", "conmon = \"/nonexistent/conmon\"\n", "MonitorMissing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "crid.toml")
			if err := os.WriteFile(cfg, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			c := newCrid(t, hosts, "--config", cfg)
			resp, err := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock)).Status(ctx(t), &runtimeapi.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, cond := range resp.Status.Conditions {
				if cond.Type == runtimeapi.RuntimeReady && (cond.Status || cond.Reason != tc.reason || cond.Message == "") {
					t.Fatalf("RuntimeReady: %v", cond)
				}
			}
			for _, h := range resp.RuntimeHandlers {
				if tc.reason == "RuntimeHandlerMissing" && (h.Name == "" || h.Name == "runc") {
					t.Fatalf("handler %q advertised without its runtime", h.Name)
				}
			}
		})
	}
}
