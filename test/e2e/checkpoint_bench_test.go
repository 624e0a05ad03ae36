package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCheckpointBenchmark measures CheckpointPod, and RestorePod with the
// StartContainer of each restored container, for a pod of two containers
// that each hold N MiB in memory, and CheckpointContainer of one of them.
// A benchmark, on demand (CRID_E2E_BENCH=1, where CRIU works: in the
// guest, `CRID_E2E_BENCH=1 test/guest/run.sh e2e TestCheckpointBenchmark`),
// never in CI.
func TestCheckpointBenchmark(t *testing.T) {
	if os.Getenv("CRID_E2E_BENCH") == "" {
		t.Skip("a benchmark: CRID_E2E_BENCH=1 runs it")
	}
	if why := criuCheck(); why != "" {
		t.Skipf("criu check: %s", why)
	}
	c := newCrid(t, rig(t), "--config", configFile(t, restoringRunc))
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	c.mustCrictl("pull", "busybox")
	var rows []string
	for _, mib := range []int{1, 25, 50, 100} {
		name := fmt.Sprintf("bench%d", mib)
		podFile, ctrFile := c.podFiles(name, "unused")
		pod := &runtimeapi.PodSandboxConfig{}
		readJSON(t, podFile, pod)
		podResp, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: pod})
		if err != nil {
			t.Fatal(err)
		}
		// Each container fills a shell variable with mib MiB, then idles.
		script := fmt.Sprintf("x=$(head -c %d /dev/zero | tr '\\0' x); touch /ready; while true; do sleep 1; done", mib<<20)
		var cfgs []*runtimeapi.ContainerConfig
		var ids []string
		for _, ctr := range []string{"one", "two"} {
			cfg := &runtimeapi.ContainerConfig{}
			readJSON(t, ctrFile, cfg)
			cfg.Metadata.Name, cfg.Command, cfg.LogPath = ctr, []string{"sh", "-c", script}, ctr+".log"
			created, err := rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podResp.GetPodSandboxId(), Config: cfg, SandboxConfig: pod})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: created.GetContainerId()}); err != nil {
				t.Fatal(err)
			}
			cfgs, ids = append(cfgs, cfg), append(ids, created.GetContainerId())
		}
		for _, id := range ids {
			waitUntilFor(t, "the memory to be filled", 5*time.Minute, func() bool { _, err := c.crictl("exec", "-s", id, "test", "-e", "/ready"); return err == nil })
		}

		archive := filepath.Join(t.TempDir(), "one.tar")
		start := time.Now()
		if _, err := rt.CheckpointContainer(longCtx(t), &runtimeapi.CheckpointContainerRequest{ContainerId: ids[0], Location: archive}); err != nil {
			t.Fatal(err)
		}
		ckptContainer := time.Since(start)

		out := t.TempDir()
		start = time.Now()
		if _, err := rt.CheckpointPod(longCtx(t), &runtimeapi.CheckpointPodRequest{PodSandboxId: podResp.GetPodSandboxId(), OutputPath: out, ContainerIds: ids}); err != nil {
			t.Fatal(err)
		}
		ckptPod := time.Since(start)
		c.mustCrictl("rmp", "-f", podResp.GetPodSandboxId())

		pod.Metadata.Uid = name + "-restored"
		req := &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: pod}
		for _, cfg := range cfgs {
			req.ContainerConfigs = append(req.ContainerConfigs, proto.Clone(cfg).(*runtimeapi.ContainerConfig))
		}
		start = time.Now()
		resp, err := rt.RestorePod(longCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		restorePod := time.Since(start)
		for _, rc := range resp.GetRestoredContainers() {
			if _, err := rt.StartContainer(longCtx(t), &runtimeapi.StartContainerRequest{ContainerId: rc.GetContainerId()}); err != nil {
				t.Fatal(err)
			}
		}
		restoreAll := time.Since(start)
		c.mustCrictl("rmp", "-f", resp.GetPodSandboxId())
		rows = append(rows, fmt.Sprintf("| %d MiB × 2 | %.1f s | %.1f s | %.1f s | %.1f s | %d MiB |", mib,
			ckptContainer.Seconds(), ckptPod.Seconds(), restorePod.Seconds(), restoreAll.Seconds(), dirSize(t, out)>>20))
	}
	t.Logf("checkpoint benchmark:\n| memory | CheckpointContainer (one) | CheckpointPod | RestorePod | RestorePod + 2 StartContainer | pod checkpoint size |\n|---|---|---|---|---|---|\n%s",
		strings.Join(rows, "\n"))
}

func readJSON(t *testing.T, path string, m proto.Message) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
}

// dirSize is the bytes of the regular files under dir.
func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
