package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKubeletSummary runs the upstream kubelet (test/kubelet, built from
// the Go module proxy) in standalone mode on crid: it starts a static pod,
// and its /stats/summary must show that pod's CPU, memory and network,
// which the kubelet takes from crid's ListPodSandboxStats and
// ListContainerStats (PodAndContainerStatsFromCRI).
//
// Opt-in (CRID_KUBELET_E2E=1) until two blockers are fixed: the kubelet's
// containers fail in runc with "cannot set hugetlb limit" (the kubelet
// sends hugepage limits and crid's spec keeps them on a host without the
// hugetlb cgroup controller), and the kubelet's cAdvisor finds no
// filesystem info for /dev/vda, so /stats/summary answers 500.
func TestKubeletSummary(t *testing.T) {
	if os.Getenv("CRID_KUBELET_E2E") != "1" {
		t.Skip("set CRID_KUBELET_E2E=1 to run the kubelet summary test")
	}
	kubelet := kubeletBinary(t)
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
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %q
fileCheckFrequency: 1s
syncFrequency: 2s
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
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
localStorageCapacityIsolation: false
featureGates: {PodAndContainerStatsFromCRI: true}
`, manifests, c.sock, port, filepath.Join(dir, "pod-logs"))
	os.WriteFile(filepath.Join(dir, "kubelet.yaml"), []byte(cfg), 0o644)
	kroot := filepath.Join(dir, "kubelet")
	k := start(t, kubelet, "--config", filepath.Join(dir, "kubelet.yaml"), "--root-dir", kroot,
		"--cert-dir", filepath.Join(kroot, "pki"), "--hostname-override", "crid-e2e", "--v", "2")
	t.Cleanup(func() {
		k.signal(9)
		// The kubelet mounts its pods' volume dirs under its root.
		out, _ := exec.Command("sh", "-c", "awk '{print $2}' /proc/mounts | grep '^"+kroot+"/' | sort -r").Output()
		for _, m := range strings.Fields(string(out)) {
			exec.Command("umount", "-l", m).Run()
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
	deadline := time.Now().Add(3 * time.Minute)
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

// kubeletBinary is _output/bin/kubelet, built from test/kubelet when
// missing (about 8 minutes on 2 cores with a cold build cache).
func kubeletBinary(t *testing.T) string {
	top, _ := filepath.Abs("../..")
	bin := filepath.Join(top, "_output/bin/kubelet")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(top, "test/kubelet")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build kubelet: %v\n%s", err, out)
	}
	return bin
}
