package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The production-node tests: cgroup resources, OOM kills, AppArmor and
// crid under systemd. They run on this machine (cgroup v1, cgroupfs, no
// AppArmor) and in the guest node (test/guest: cgroup v2, systemd, AppArmor)
// with each cgroup driver, and check what each host should do.

// cgroupV2 reports a pure cgroup v2 host.
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// hostHas reports whether the host's cgroups have a file: on v2 in a child
// of the root (init.scope), on v1 at the path below /sys/fs/cgroup.
func hostHas(v2, v1 string) bool {
	path := filepath.Join("/sys/fs/cgroup", v1)
	if cgroupV2() {
		path = filepath.Join("/sys/fs/cgroup/init.scope", v2)
		if _, err := os.Stat("/sys/fs/cgroup/init.scope"); err != nil {
			path = filepath.Join("/sys/fs/cgroup", v2) // no systemd: a v2 root has no such files
		}
	}
	_, err := os.Stat(path)
	return err == nil
}

// ctrCgroupFile reads file of the container's cgroup.
func ctrCgroupFile(t *testing.T, pod, id, file string) string {
	t.Helper()
	return cgroupFile(t, filepath.Join(podCgroupDir(pod), cgroupName("crid", id)), file)
}

// cgroupFile reads file of cgroup dir: on v2 from the unified hierarchy,
// on v1 from the hierarchy of its controller (the name before the dot).
func cgroupFile(t *testing.T, dir, file string) string {
	t.Helper()
	path := filepath.Join("/sys/fs/cgroup", dir, file)
	if !cgroupV2() {
		ctl := strings.SplitN(file, ".", 2)[0]
		path = filepath.Join("/sys/fs/cgroup", ctl, dir, file)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// runPodWith runs pod name with one busybox container running script, the
// container's config edited by edit, over gRPC; an error from
// CreateContainer is returned, not fatal.
func (c *crid) runPodWith(name, script string, edit func(*runtimeapi.ContainerConfig)) (podID, ctrID string, err error) {
	c.t.Helper()
	c.mustCrictl("pull", "busybox")
	rt := runtimeapi.NewRuntimeServiceClient(dial(c.t, c.sock))
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(c.dir, "logs", name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: podParent(name)},
	}
	pod, err := rt.RunPodSandbox(ctx(c.t), &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sh", "-c", script},
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}},
	}
	edit(cfg)
	ctr, err := rt.CreateContainer(ctx(c.t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		return pod.PodSandboxId, "", err
	}
	if _, err := rt.StartContainer(ctx(c.t), &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		c.t.Fatal(err)
	}
	return pod.PodSandboxId, ctr.ContainerId, nil
}

// UpdatePodSandboxResources writes the pod's cgroup: its resources plus
// its overhead, as the kubelet sizes a pod cgroup.
func TestUpdatePodSandboxResources(t *testing.T) {
	c := newCrid(t, rig(t))
	podID, _, err := c.runPodWith("podres", "exec sleep 3600", func(*runtimeapi.ContainerConfig) {})
	if err != nil {
		t.Fatal(err)
	}
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	if _, err := rt.UpdatePodSandboxResources(ctx(t), &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: podID,
		Overhead:     &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20, CpuShares: 10},
		Resources:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000},
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"memory.limit_in_bytes": "150994944", "cpu.shares": "522", "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000"}
	if cgroupV2() {
		// opencontainers/cgroups' conversion of 522 shares to a weight
		// (runc's since 1.3; Debian's 1.1 maps linearly, 20).
		want = map[string]string{"memory.max": "150994944", "cpu.weight": "60", "cpu.max": "50000 100000"}
	}
	for file, v := range want {
		if got := cgroupFile(t, podCgroupDir("podres"), file); got != v {
			t.Errorf("pod cgroup %s = %s, want %s", file, got, v)
		}
	}
	if _, err := rt.UpdatePodSandboxResources(ctx(t), &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: podID, Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1},
	}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a negative limit: %v, want InvalidArgument", err)
	}
}

// Resources the kubelet sets land in the container's cgroup (v1 or v2,
// either driver), an update changes them, conmon sits beside the container
// and crid reports the driver it uses.
func TestCgroupResources(t *testing.T) {
	c := newCrid(t, rig(t))
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	rc, err := rt.RuntimeConfig(ctx(t), &runtimeapi.RuntimeConfigRequest{})
	if err != nil || !strings.EqualFold(rc.GetLinux().GetCgroupDriver().String(), driver) {
		t.Fatalf("RuntimeConfig: %v, %v; want driver %s", rc, err, driver)
	}
	// Swap and hugetlb limits where the host's cgroups have them.
	swap := hostHas("memory.swap.max", "memory/memory.memsw.limit_in_bytes")
	hugetlb := hostHas("hugetlb.2MB.max", "hugetlb/hugetlb.2MB.limit_in_bytes")
	_, ctrID, err := c.runPodWith("res", "exec sleep 3600", func(cfg *runtimeapi.ContainerConfig) {
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: 64 << 20, CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512,
		}
		if swap {
			cfg.Linux.Resources.MemorySwapLimitInBytes = 128 << 20
		}
		if hugetlb {
			cfg.Linux.Resources.HugepageLimits = []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}
		}
		if cgroupV2() {
			cfg.Linux.Resources.Unified = map[string]string{"pids.max": "100"}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"memory.limit_in_bytes": "67108864", "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000", "cpu.shares": "512",
	}
	if swap {
		want["memory.memsw.limit_in_bytes"] = "134217728"
	}
	if hugetlb {
		want["hugetlb.2MB.limit_in_bytes"] = "0"
	}
	if cgroupV2() {
		// runc's conversion of 512 shares to a weight: 1 + (512-2)*9999/262142.
		want = map[string]string{"memory.max": "67108864", "cpu.max": "50000 100000", "cpu.weight": "20", "pids.max": "100"}
		if swap {
			want["memory.swap.max"] = "67108864" // v2 counts swap alone
		}
		if hugetlb {
			want["hugetlb.2MB.max"] = "0"
		}
	}
	t.Logf("checking %v", want)
	for file, v := range want {
		if got := ctrCgroupFile(t, "res", ctrID, file); got != v {
			t.Errorf("%s = %q, want %q", file, got, v)
		}
	}
	if _, err := rt.UpdateContainerResources(ctx(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: ctrID,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512}}); err != nil {
		t.Fatal(err)
	}
	memFile := map[bool]string{false: "memory.limit_in_bytes", true: "memory.max"}[cgroupV2()]
	if got := ctrCgroupFile(t, "res", ctrID, memFile); got != "134217728" {
		t.Errorf("after update: %s = %q", memFile, got)
	}
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.conmonPID(ctrID)))
	if !strings.Contains(string(cg), podCgroupDir("res")+"/"+cgroupName("crid-conmon", ctrID)+"\n") {
		t.Errorf("conmon's cgroups:\n%s", cg)
	}
	// The pod's stats come from its cgroup (a slice with systemd).
	pods, err := rt.ListPodSandboxStats(ctx(t), &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil || len(pods.Stats) != 1 || pods.Stats[0].GetLinux().GetMemory().GetWorkingSetBytes().GetValue() == 0 {
		t.Errorf("pod stats: %v, %v", pods, err)
	}
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}

// A container that goes over its memory limit is reported OOMKilled.
func TestOOMKilled(t *testing.T) {
	c := newCrid(t, rig(t))
	// Doubling a shell variable until the limit ends it.
	_, ctrID, err := c.runPodWith("oom", `x=aaaaaaaaaaaaaaaa; while :; do x="$x$x"; done`, func(cfg *runtimeapi.ContainerConfig) {
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}
	})
	if err != nil {
		t.Fatal(err)
	}
	var st *runtimeapi.ContainerStatus
	waitUntilFor(t, "the container to exit", 2*time.Minute, func() bool {
		st = c.containerStatus(ctrID)
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	if st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("exited %d, reason %q; want 137, OOMKilled", st.ExitCode, st.Reason)
	}
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
}

// apparmorEnabled reports whether the host enforces AppArmor.
func apparmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// profiles are the AppArmor labels of the container's own process (which
// printed it to its log first thing) and of a process exec'd in it.
func (c *crid) profiles(id string) (own, exec string) {
	c.t.Helper()
	waitUntil(c.t, "the container's log", func() bool {
		own, _ = c.crictl("logs", id)
		return strings.TrimSpace(own) != ""
	})
	exec = c.mustCrictl("exec", "-s", id, "cat", "/proc/self/attr/current")
	return strings.TrimSpace(own), strings.TrimSpace(exec)
}

// RuntimeDefault confines a container with crid's default profile,
// Localhost with the named profile (an error if it is not loaded),
// Unconfined with none; the deprecated string field means the same. On a
// host without AppArmor, RuntimeDefault is a no-op and Localhost an error
// (FailedPrecondition: the host lacks what the request needs).
func TestAppArmor(t *testing.T) {
	c := newCrid(t, rig(t))
	enabled := apparmorEnabled()
	const testProfile = "crid-e2e-deny-write"
	if enabled {
		profile := filepath.Join(t.TempDir(), "profile")
		os.WriteFile(profile, []byte("#include <tunables/global>\nprofile "+testProfile+" flags=(attach_disconnected) {\n  #include <abstractions/base>\n  file,\n  deny /tmp/** w,\n}\n"), 0o644)
		if out, err := exec.Command("apparmor_parser", "-r", profile).CombinedOutput(); err != nil {
			t.Fatalf("load test profile: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("apparmor_parser", "-R", profile).Run() })
	} else if os.Getenv("CRID_E2E_GUEST") == "1" {
		t.Fatal("the guest node must have AppArmor")
	}
	for _, tc := range []struct {
		name    string
		profile *runtimeapi.SecurityProfile
		legacy  string
		want    string // the label; "" on a host without AppArmor
		code    codes.Code
	}{
		{"default", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, "", "crid-default (enforce)", codes.OK},
		{"legacy-default", nil, "runtime/default", "crid-default (enforce)", codes.OK},
		{"unconfined", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, "", "unconfined", codes.OK},
		{"localhost", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: testProfile}, "", testProfile + " (enforce)", codes.OK},
		{"legacy-localhost", nil, "localhost/" + testProfile, testProfile + " (enforce)", codes.OK},
		{"not-loaded", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "crid-e2e-absent"}, "", "", codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, want := tc.code, tc.want
			if !enabled {
				want = ""
				if tc.profile.GetProfileType() == runtimeapi.SecurityProfile_Localhost || strings.HasPrefix(tc.legacy, "localhost/") {
					code = codes.FailedPrecondition
				}
			}
			_, ctrID, err := c.runPodWith("aa-"+tc.name, "cat /proc/self/attr/current; exec sleep 3600", func(cfg *runtimeapi.ContainerConfig) {
				cfg.Linux.SecurityContext.Apparmor = tc.profile
				cfg.Linux.SecurityContext.ApparmorProfile = tc.legacy
			})
			defer c.crictl("rmp", "-fa")
			if status.Code(err) != code {
				t.Fatalf("CreateContainer: %v, want code %v", err, code)
			}
			if err != nil || want == "" {
				return
			}
			if own, exec := c.profiles(ctrID); own != want || exec != want {
				t.Errorf("confined by %q, exec'd process by %q; want %q", own, exec, want)
			}
			if tc.name == "localhost" {
				if _, err := c.crictl("exec", "-s", ctrID, "touch", "/tmp/x"); err == nil {
					t.Error("the profile let the container write /tmp")
				}
			}
		})
	}
	c.assertNothingLeft()
}

// Under systemd, crid runs as the unit hack/systemd/crid.service describes:
// start waits for READY, a restart of the unit keeps every container running
// and adopted (KillMode=process), and a reload (SIGHUP) keeps it serving.
func TestSystemdService(t *testing.T) {
	if fi, err := os.Stat("/run/systemd/system"); err != nil || !fi.IsDir() {
		if os.Getenv("CRID_E2E_GUEST") == "1" {
			t.Fatal("the guest node must run systemd")
		}
		t.Skip("systemd does not run this host")
	}
	c := newCrid(t, rig(t))
	// The same crid, now started by systemd from the project's unit.
	c.p.signal(9)
	unit := fmt.Sprintf("crid-e2e-%d.service", os.Getpid())
	body, err := os.ReadFile("../../hack/systemd/crid.service")
	if err != nil {
		t.Fatal(err)
	}
	// No --cgroup-driver: crid picks systemd itself, as systemd booted
	// this host.
	args := c.args()
	if i := slices.Index(args, "--cgroup-driver"); i >= 0 {
		args = slices.Delete(args, i, i+2)
	}
	exe := "ExecStart=/usr/bin/nsenter --net=/run/netns/" + netns + " " + bin.crid + " " + strings.Join(args, " ")
	text := strings.Replace(string(body), "ExecStart=/usr/local/bin/crid", exe, 1)
	if text == string(body) {
		t.Fatal("no ExecStart=/usr/local/bin/crid in hack/systemd/crid.service")
	}
	unitFile := filepath.Join("/run/systemd/system", unit)
	if err := os.WriteFile(unitFile, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	systemctl := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
			t.Fatalf("systemctl %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		c.crictl("rmp", "-fa")
		exec.Command("systemctl", "stop", unit).Run()
		os.Remove(unitFile)
		exec.Command("systemctl", "daemon-reload").Run()
	})
	systemctl("daemon-reload")
	// Type=notify: start returns once crid said READY=1, so the socket
	// serves at once.
	systemctl("start", unit)
	if _, err := c.crictl("version"); err != nil {
		t.Fatalf("after systemctl start: %v", err)
	}
	rc, err := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock)).RuntimeConfig(ctx(t), &runtimeapi.RuntimeConfigRequest{})
	if err != nil || rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_SYSTEMD {
		t.Fatalf("RuntimeConfig without a configured driver: %v, %v; want SYSTEMD", rc, err)
	}
	if out, _ := exec.Command("journalctl", "-u", unit, "--no-pager").Output(); !strings.Contains(string(out), "cgroup_driver_source=detected") {
		t.Errorf("crid's log does not say it detected the driver:\n%s", out)
	}
	podID, ctrID := c.runPod("svc", "exec sleep 3600")
	monitor := c.conmonPID(ctrID)
	mainPID := func() string {
		out, _ := exec.Command("systemctl", "show", "-p", "MainPID", "--value", unit).Output()
		return strings.TrimSpace(string(out))
	}
	before := mainPID()
	systemctl("restart", unit)
	if mainPID() == before {
		t.Fatal("crid's main PID did not change on restart")
	}
	c.waitRecoveredUnit()
	if st := c.containerStatus(ctrID); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after restart: container %v", st.State)
	}
	if c.conmonPID(ctrID) != monitor || !alive(monitor) {
		t.Fatal("the container's monitor did not survive the restart")
	}
	systemctl("reload", unit)
	if out := c.mustCrictl("exec", "-s", ctrID, "echo", "ok"); strings.TrimSpace(out) != "ok" {
		t.Fatalf("exec after reload: %q", out)
	}
	c.mustCrictl("stopp", podID)
	c.mustCrictl("rmp", podID)
	c.assertNothingLeft()
}

// waitRecoveredUnit is waitRecovered for a crid that systemd runs.
func (c *crid) waitRecoveredUnit() {
	c.t.Helper()
	waitUntilFor(c.t, "crid to recover", 3*time.Minute, c.recovered)
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }
