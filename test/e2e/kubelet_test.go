package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestKubeletSummary runs the upstream kubelet (test/kubelet, built from
// the Go module proxy into _output/bin/kubelet by hack/install-deps.sh) in
// standalone mode on crid: it starts a static pod, and its /stats/summary
// must show that pod's CPU, memory and network, which the kubelet takes from
// crid's ListPodSandboxStats and ListContainerStats
// (PodAndContainerStatsFromCRI).
func TestKubeletSummary(t *testing.T) {
	kubelet := kubeletBinary(t)
	// The kubelet creates its QoS cgroups (/kubepods) in every hierarchy:
	// remove them after the pods, unless they were there before.
	for _, p := range append(must(filepath.Glob("/sys/fs/cgroup/*/kubepods*")), "/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/kubepods.slice") {
		if _, err := os.Stat(p); err == nil {
			if os.Getenv("CRID_E2E_REQUIRED") == "1" {
				t.Fatalf("%s exists: another kubelet runs on this host", p)
			}
			t.Skipf("%s exists: another kubelet runs on this host", p)
		}
	}
	t.Cleanup(func() {
		if driver == "systemd" {
			exec.Command("systemctl", "stop", "kubepods.slice").Run()
		}
		for _, root := range append(must(filepath.Glob("/sys/fs/cgroup/*")), "/sys/fs/cgroup") {
			for _, dir := range must(filepath.Glob(root + "/kubepods*")) {
				removeCgroups(strings.TrimPrefix(dir, root))
			}
		}
	})
	// Fixed paths, whatever --root-dir: the device plugin socket dir
	// (/var/lib/kubelet/device-plugins) and the container log symlinks.
	for _, p := range []string{"/var/lib/kubelet", "/var/log/containers"} {
		removeNew(t, p)
	}
	c := newCrid(t, rig(t))
	dir := c.dir
	manifests := filepath.Join(dir, "manifests")
	os.MkdirAll(manifests, 0o755)
	os.WriteFile(filepath.Join(manifests, "stats.yaml"), []byte(`apiVersion: v1
kind: Pod
metadata: {name: stats, namespace: default}
spec:
  containers:
  - name: busy
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero of=/filler bs=1M count=2 2>/dev/null; while :; do sleep 1; done"]
`), 0o644)
	const port = 10255
	// localStorageCapacityIsolation must stay true (the default): with
	// container stats from the CRI, the kubelet asks its cAdvisor to collect
	// disk usage only when it is set, and without it cAdvisor's root
	// container has no filesystem stats, so the summary's node rootfs
	// lookup fails: 500 "failed to get rootFs info: cannot find filesystem
	// info for device /dev/vda" (pkg/kubelet/cadvisor/cadvisor_linux.go).
	// The root's device is fine.
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %q
fileCheckFrequency: 1s
syncFrequency: 2s
failCgroupV1: false
failSwapOn: false
cgroupDriver: %s
cgroupsPerQOS: true
enforceNodeAllocatable: []
containerRuntimeEndpoint: "unix://%s"
address: 127.0.0.1
port: 10250
readOnlyPort: %d
healthzPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
podLogsDir: %q
resolvConf: ""
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
featureGates: {PodAndContainerStatsFromCRI: true}
`, manifests, driver, c.sock, port, filepath.Join(dir, "pod-logs"))
	os.WriteFile(filepath.Join(dir, "kubelet.yaml"), []byte(cfg), 0o644)
	kroot := filepath.Join(dir, "kubelet")
	k := start(t, kubelet, "--config", filepath.Join(dir, "kubelet.yaml"), "--root-dir", kroot,
		"--cert-dir", filepath.Join(kroot, "pki"), "--hostname-override", "crid-e2e", "--v", "2")
	t.Cleanup(func() {
		k.signal(9)
		// The kubelet bind-mounts its root onto itself (shared
		// propagation) and mounts its pods' volume dirs under it.
		raw, _ := os.ReadFile("/proc/self/mounts")
		var mounts []string
		for line := range strings.Lines(string(raw)) {
			if f := strings.Fields(line); len(f) > 1 && (f[1] == kroot || strings.HasPrefix(f[1], kroot+"/")) {
				mounts = append(mounts, f[1])
			}
		}
		slices.Sort(mounts)
		for i := len(mounts) - 1; i >= 0; i-- {
			if err := exec.Command("umount", mounts[i]).Run(); err != nil {
				exec.Command("umount", "-l", mounts[i]).Run()
			}
		}
	})

	type iface struct {
		Name    string  `json:"name"`
		RxBytes *uint64 `json:"rxBytes"`
		TxBytes *uint64 `json:"txBytes"`
	}
	var summary struct {
		Pods []struct {
			PodRef struct{ Name string } `json:"podRef"`
			CPU    struct {
				UsageNanoCores       *uint64 `json:"usageNanoCores"`
				UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
			Memory struct {
				WorkingSetBytes *uint64 `json:"workingSetBytes"`
			} `json:"memory"`
			Network *struct {
				iface
				Interfaces []iface `json:"interfaces"`
			} `json:"network"`
			Containers []struct {
				Name   string `json:"name"`
				Rootfs *struct {
					UsedBytes *uint64 `json:"usedBytes"`
				} `json:"rootfs"`
			} `json:"containers"`
		} `json:"pods"`
	}
	var last string
	// Generous: the kubelet's first sync is slow on a loaded machine, and
	// slower in the emulated guest.
	deadline := time.Now().Add(6 * time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("kubelet summary never showed the pod's CPU, memory and network; last:\n%s", last)
		}
		if k.cmd.ProcessState != nil {
			t.Fatalf("kubelet exited")
		}
		time.Sleep(2 * time.Second)
		out, err := exec.Command("nsenter", "--net=/run/netns/"+netns, "curl", "-sf",
			fmt.Sprintf("http://127.0.0.1:%d/stats/summary", port)).Output()
		if err != nil {
			continue
		}
		last = string(out)
		if json.Unmarshal(out, &summary) != nil {
			continue
		}
		for _, p := range summary.Pods {
			if p.PodRef.Name != "stats-crid-e2e" {
				continue
			}
			if p.CPU.UsageNanoCores != nil && p.CPU.UsageCoreNanoSeconds != nil && *p.CPU.UsageCoreNanoSeconds > 0 &&
				p.Memory.WorkingSetBytes != nil && *p.Memory.WorkingSetBytes > 0 &&
				p.Network != nil && p.Network.Name == "eth0" && p.Network.RxBytes != nil && p.Network.TxBytes != nil &&
				len(p.Containers) == 1 && p.Containers[0].Rootfs != nil && p.Containers[0].Rootfs.UsedBytes != nil &&
				*p.Containers[0].Rootfs.UsedBytes >= 2<<20 {
				t.Logf("summary: cpu %d nanocores, working set %d B, eth0 rx %d B tx %d B, rootfs %d B",
					*p.CPU.UsageNanoCores, *p.Memory.WorkingSetBytes, *p.Network.RxBytes, *p.Network.TxBytes, *p.Containers[0].Rootfs.UsedBytes)
				return
			}
		}
	}
}

// kubeletBinary is _output/bin/kubelet, which hack/install-deps.sh builds
// from test/kubelet (about 8 minutes on 2 cores with a cold build cache).
func kubeletBinary(t *testing.T) string {
	top, _ := filepath.Abs("../..")
	bin := filepath.Join(top, "_output/bin/kubelet")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CRID_E2E_REQUIRED") == "1" {
			t.Fatalf("%s missing: run hack/install-deps.sh", bin)
		}
		t.Skipf("%s missing: run hack/install-deps.sh", bin)
	}
	return bin
}

// removeNew removes at the end of the test what appeared under path during
// it: path itself when it did not exist, else the entries that are new.
func removeNew(t *testing.T, path string) {
	before := map[string]bool{}
	filepath.WalkDir(path, func(p string, _ os.DirEntry, err error) error {
		if err == nil {
			before[p] = true
		}
		return nil
	})
	t.Cleanup(func() {
		var added []string
		filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
			if err == nil && !before[p] {
				added = append(added, p)
				if d.IsDir() {
					return filepath.SkipDir
				}
			}
			return nil
		})
		for _, p := range added {
			os.RemoveAll(p)
		}
	})
}

func must[T any](v T, _ error) T { return v }
