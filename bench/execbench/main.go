// Command execbench measures ExecSync latency over CRI, as the kubelet's
// exec probes drive it: one pod with one sleeping busybox container, then
// N sequential ExecSync calls of /bin/true. It prints median, p90, p99 and
// max in ms, and removes its pod.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/crid-project/crid/bench/internal/benchutil"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "CRI endpoint, unix:///path")
	n := flag.Int("n", 200, "timed ExecSync calls")
	warmup := flag.Int("warmup", 10, "untimed calls first")
	image := flag.String("image", "docker.io/library/busybox:latest", "container image (already pulled)")
	logDir := flag.String("log-dir", "/var/tmp/execbench-logs", "the pod's log directory")
	cmd := flag.String("cmd", "/bin/true", "command to exec")
	flag.Parse()
	if err := run(*endpoint, *n, *warmup, *image, *logDir, *cmd); err != nil {
		benchutil.Fatal(err)
	}
}

func run(endpoint string, n, warmup int, image, logDir, cmd string) error {
	c, err := benchutil.Dial(endpoint)
	if err != nil {
		return err
	}
	defer c.Close()
	rt := c.Runtime
	ctx, cancel := benchutil.Context()
	defer cancel()

	uid := fmt.Sprintf("execbench-%d", os.Getpid())
	podCfg := benchutil.PodConfig(uid, "bench", uid, logDir+"/"+uid)
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		return fmt.Errorf("run pod: %w", err)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		benchutil.RemovePod(cctx, rt, pod.PodSandboxId)
	}()
	ctr, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: benchutil.SleepContainer("sleeper", image, "sleeper.log"),
	})
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	var d []time.Duration
	for i := range warmup + n {
		t0 := time.Now()
		resp, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{cmd}, Timeout: 10})
		el := time.Since(t0)
		if err != nil {
			return fmt.Errorf("exec %d: %w", i, err)
		}
		if resp.ExitCode != 0 {
			return fmt.Errorf("exec %d: exit code %d: %s", i, resp.ExitCode, resp.Stderr)
		}
		if i >= warmup {
			d = append(d, el)
		}
	}
	d = benchutil.Sorted(d)
	q := func(p float64) string { return benchutil.MS(benchutil.AtIndex(d, p)) }
	fmt.Printf("execsync_ms median %s p90 %s p99 %s max %s n %d\n", q(0.5), q(0.9), q(0.99), q(1), len(d))
	return nil
}
