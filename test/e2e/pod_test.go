package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podFiles writes a pod config and a container config running script in
// busybox, as crictl takes them, and returns their paths.
func (c *crid) podFiles(name, script string) (pod, ctr string) {
	return c.podFilesNS(name, script, map[string]any{"pid": 1})
}

// podFilesNS is podFiles with the pod's namespace options.
func (c *crid) podFilesNS(name, script string, nsOpts map[string]any) (pod, ctr string) {
	c.t.Helper()
	dir := filepath.Join(c.dir, "configs", name)
	os.MkdirAll(dir, 0o755)
	pod, ctr = filepath.Join(dir, "pod.json"), filepath.Join(dir, "ctr.json")
	write := func(path string, v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	write(pod, map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "e2e", "uid": name + "-uid"},
		"hostname":      name,
		"log_directory": filepath.Join(c.dir, "logs", name),
		"labels":        map[string]string{"test": name},
		"linux": map[string]any{
			"cgroup_parent":    podParent(name),
			"security_context": map[string]any{"namespace_options": nsOpts},
		},
	})
	write(ctr, map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": "busybox"},
		"command":  []string{"sh", "-c", script},
		"log_path": name + ".log",
		"linux":    map[string]any{"security_context": map[string]any{"namespace_options": nsOpts}},
	})
	return pod, ctr
}

// runPod pulls busybox, runs a pod and starts one container in it.
func (c *crid) runPod(name, script string) (podID, ctrID string) {
	c.t.Helper()
	c.mustCrictl("pull", "busybox")
	pod, ctr := c.podFiles(name, script)
	podID = strings.TrimSpace(c.mustCrictl("runp", pod))
	ctrID = strings.TrimSpace(c.mustCrictl("create", podID, ctr, pod))
	c.mustCrictl("start", ctrID)
	return podID, ctrID
}

func (c *crid) containerStatus(id string) *runtimeapi.ContainerStatus {
	c.t.Helper()
	resp, err := runtimeapi.NewRuntimeServiceClient(dial(c.t, c.sock)).ContainerStatus(ctx(c.t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.Status
}

// waitUntil waits a minute at most for cond: generous, for a loaded
// machine or the emulated guest.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitUntilFor(t, what, time.Minute, cond)
}

func waitUntilFor(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPodLifecycle(t *testing.T) {
	c := newCrid(t, rig(t))
	podID, ctrID := c.runPod("life", "echo hello; echo oops >&2; exec sleep 3600")

	var pod struct {
		Status struct {
			State   string
			Network struct{ IP string }
		}
	}
	json.Unmarshal([]byte(c.mustCrictl("inspectp", podID)), &pod)
	if pod.Status.State != "SANDBOX_READY" || !strings.HasPrefix(pod.Status.Network.IP, "10.77.") {
		t.Fatalf("pod status: %+v", pod.Status)
	}
	waitUntil(t, "container logs", func() bool {
		out, _ := c.crictl("logs", ctrID)
		return strings.Contains(out, "hello")
	})
	logFile, _ := os.ReadFile(filepath.Join(c.dir, "logs", "life", "life.log"))
	if !strings.Contains(string(logFile), " stdout F hello\n") || !strings.Contains(string(logFile), " stderr F oops\n") {
		t.Fatalf("CRI log file:\n%s", logFile)
	}
	// conmon has a cgroup of its own beside the container's, below the
	// pod's: the pod's cgroup holds no process (cgroup v2 requires it).
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.conmonPID(ctrID)))
	if !strings.Contains(string(cg), podCgroupDir("life")+"/"+cgroupName("crid-conmon", ctrID)+"\n") {
		t.Fatalf("conmon's cgroups:\n%s", cg)
	}
	if out := c.mustCrictl("exec", "-s", ctrID, "hostname"); strings.TrimSpace(out) != "life" {
		t.Fatalf("hostname in the pod: %q", out)
	}
	c.mustCrictl("stop", "-t", "1", ctrID)
	if st := c.containerStatus(ctrID); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Fatalf("after stop: %v exit %d", st.State, st.ExitCode)
	}
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	for range 2 { // both idempotent
		if _, err := rt.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := rt.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatal(err)
		}
	}
	if out := c.mustCrictl("pods", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("pods after rmp: %q", out)
	}
	c.assertNothingLeft()
}

// assertNothingLeft checks that crid holds no mounts, pinned namespaces,
// monitors, IP allocations or cgroups for pods that are gone.
func (c *crid) assertNothingLeft() {
	c.t.Helper()
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, c.dir) {
			c.t.Errorf("mount left: %s", line)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(c.state, "sandboxes")); len(entries) != 0 {
		c.t.Errorf("%d sandbox dirs left", len(entries))
	}
	if entries, _ := os.ReadDir(filepath.Join(c.state, "containers")); len(entries) != 0 {
		c.t.Errorf("%d container dirs left", len(entries))
	}
	if ips, _ := filepath.Glob(filepath.Join(c.ipam, "e2e", "10.*")); len(ips) != 0 {
		c.t.Errorf("IP allocations left: %v", ips)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p)
		if strings.HasPrefix(string(cmdline), "conmon\x00") && strings.Contains(string(cmdline), c.state) {
			c.t.Errorf("monitor left: %s", p)
		}
	}
	parent := filepath.Dir(podCgroupDir("x"))
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent + "/*/crid-*")
	v2, _ := filepath.Glob("/sys/fs/cgroup" + parent + "/*/crid-*")
	if dirs = append(dirs, v2...); len(dirs) != 0 {
		c.t.Errorf("container cgroups left: %v", dirs)
	}
}

// kill -9 crid with pods running and restart it: the same pods and
// containers, still running, logs still flowing; a container that exited
// while crid was down shows its exit code and time.
func TestKill9KeepsContainers(t *testing.T) {
	c := newCrid(t, rig(t))
	_, runner := c.runPod("runner", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")
	_, quitter := c.runPod("quitter", "sleep 2; exit 3")
	before := c.mustCrictl("pods", "-q")

	c.p.signal(syscall.SIGKILL)
	killedAt := time.Now()
	time.Sleep(3 * time.Second) // the quitter exits while crid is down
	c.start()

	if after := c.mustCrictl("pods", "-q"); after != before {
		t.Fatalf("pods changed across restart:\n%s\n%s", before, after)
	}
	st := c.containerStatus(runner)
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("runner after restart: %v", st.State)
	}
	logs := func() string { out, _ := c.crictl("logs", runner); return out }
	n := strings.Count(logs(), "tick")
	waitUntil(t, "more log lines after restart", func() bool { return strings.Count(logs(), "tick") > n+2 })

	q := c.containerStatus(quitter)
	finished := time.Unix(0, q.FinishedAt)
	if q.State != runtimeapi.ContainerState_CONTAINER_EXITED || q.ExitCode != 3 || q.Reason != "Error" ||
		finished.Before(killedAt) || finished.After(killedAt.Add(3*time.Second)) {
		t.Fatalf("quitter: state %v code %d reason %q finished %v (crid killed at %v)", q.State, q.ExitCode, q.Reason, finished, killedAt)
	}
	if out := c.mustCrictl("exec", "-s", runner, "echo", "alive"); strings.TrimSpace(out) != "alive" {
		t.Fatalf("exec after restart: %q", out)
	}
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}

// Bad input gets a clear error and changes nothing.
func TestBadPodInput(t *testing.T) {
	c := newCrid(t, rig(t))
	c.mustCrictl("pull", "busybox")
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	podCfg := func() *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: "bad", Namespace: "e2e", Uid: "bad-uid"},
			LogDirectory: filepath.Join(c.dir, "logs", "bad"),
			Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: podParent("bad"),
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
		}
	}
	for name, tc := range map[string]struct {
		call func() error
		code codes.Code
	}{
		"empty pod name": {func() error {
			cfg := podCfg()
			cfg.Metadata.Name = ""
			_, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			return err
		}, codes.InvalidArgument},
		"unknown runtime handler": {func() error {
			_, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg(), RuntimeHandler: "nope"})
			return err
		}, codes.InvalidArgument},
		"relative log directory": {func() error {
			cfg := podCfg()
			cfg.LogDirectory = "logs/../x"
			_, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			return err
		}, codes.InvalidArgument},
		"status of unknown pod": {func() error {
			_, err := rt.PodSandboxStatus(ctx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "0123456789"})
			return err
		}, codes.NotFound},
		"start unknown container": {func() error {
			_, err := rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: "0123456789"})
			return err
		}, codes.NotFound},
		"create in unknown pod": {func() error {
			_, err := rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: "0123456789",
				Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "x"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}}})
			return err
		}, codes.NotFound},
	} {
		if err := tc.call(); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", name, err, tc.code)
		}
	}
	// Idempotent calls on unknown IDs succeed.
	if _, err := rt.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: "0123456789"}); err != nil {
		t.Errorf("stop unknown pod: %v", err)
	}
	if _, err := rt.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: "0123456789"}); err != nil {
		t.Errorf("stop unknown container: %v", err)
	}

	// Container configs that must fail against a real pod, changing nothing.
	resp, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg()})
	if err != nil {
		t.Fatal(err)
	}
	ctrCfg := func() *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Command:  []string{"true"},
		}
	}
	for name, mod := range map[string]func(*runtimeapi.ContainerConfig){
		"empty name":       func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "" },
		"log path with ..": func(c *runtimeapi.ContainerConfig) { c.LogPath = "../../etc/x.log" },
		"missing host path": func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{HostPath: "/no/such/dir", ContainerPath: "/x"}}
		},
		"container path ..": func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{HostPath: "/tmp", ContainerPath: "/x/../../y"}}
		},
		"absurd cpu shares": func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: 1 << 40}}
		},
		"negative memory": func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}}
		},
		"unknown capability": func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"CAP_FLY"}}}}
		},
	} {
		cfg := ctrCfg()
		mod(cfg)
		_, err := rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: resp.PodSandboxId, Config: cfg, SandboxConfig: podCfg()})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if out := c.mustCrictl("ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Fatalf("bad creates left containers: %q", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.state, "containers")); len(entries) != 0 {
		out, _ := exec.Command("find", filepath.Join(c.state, "containers")).CombinedOutput()
		t.Fatalf("bad creates left container dirs: %s", out)
	}
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}
