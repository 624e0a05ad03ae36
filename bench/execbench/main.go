// Command execbench measures ExecSync latency over CRI, as the kubelet's
// exec probes drive it: one pod with one sleeping busybox container per
// runtime, then N sequential ExecSync calls of /bin/true into each. The
// runtimes take turns in blocks of calls, with a pause at each switch: a
// load spike on this shared machine then hits them alike, and neither pays
// for the other's background work (containerd's shim keeps working for a
// few milliseconds after an exec returns). It prints, per runtime, median, p90, p99 and max
// in ms, and removes its pods.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/crid-project/crid/bench/internal/benchutil"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoints := flag.String("endpoint", "", "CRI endpoints, name=unix:///path[,name=unix:///path…]")
	n := flag.Int("n", 200, "timed ExecSync calls")
	warmup := flag.Int("warmup", 10, "untimed calls first")
	image := flag.String("image", "docker.io/library/busybox:latest", "container image (already pulled)")
	logDir := flag.String("log-dir", "/var/tmp/execbench-logs", "the pod's log directory")
	cmd := flag.String("cmd", "/bin/true", "command to exec")
	flag.Parse()
	if err := run(strings.Split(*endpoints, ","), *n, *warmup, *image, *logDir, *cmd); err != nil {
		benchutil.Fatal(err)
	}
}

// target is one runtime's container to exec into.
type target struct {
	name, container string
	rt              runtimeapi.RuntimeServiceClient
	d               []time.Duration
}

func run(endpoints []string, n, warmup int, image, logDir, cmd string) error {
	ctx, cancel := benchutil.Context()
	defer cancel()
	var targets []*target
	for _, ep := range endpoints {
		name, addr, ok := strings.Cut(ep, "=")
		if !ok {
			return fmt.Errorf("endpoint %q: want name=unix:///path", ep)
		}
		c, err := benchutil.Dial(addr)
		if err != nil {
			return err
		}
		defer c.Close()
		id, remove, err := setup(ctx, c.Runtime, image, logDir+"/"+name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer remove()
		targets = append(targets, &target{name: name, container: id, rt: c.Runtime})
	}
	const block = 25
	for start := 0; start < warmup+n; start += block {
		for _, t := range targets {
			time.Sleep(200 * time.Millisecond)
			for i := start; i < min(start+block, warmup+n); i++ {
				t0 := time.Now()
				resp, err := t.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: t.container, Cmd: []string{cmd}, Timeout: 10})
				el := time.Since(t0)
				if err != nil {
					return fmt.Errorf("%s: exec %d: %w", t.name, i, err)
				}
				if resp.ExitCode != 0 {
					return fmt.Errorf("%s: exec %d: exit code %d: %s", t.name, i, resp.ExitCode, resp.Stderr)
				}
				if i >= warmup {
					t.d = append(t.d, el)
				}
			}
		}
	}
	for _, t := range targets {
		d := benchutil.Sorted(t.d)
		q := func(p float64) string { return benchutil.MS(benchutil.AtIndex(d, p)) }
		fmt.Printf("%s execsync_ms median %s p90 %s p99 %s max %s n %d\n", t.name, q(0.5), q(0.9), q(0.99), q(1), len(d))
	}
	return nil
}

// setup runs a pod with one sleeping container and returns the container's
// ID and the function that removes the pod.
func setup(ctx context.Context, rt runtimeapi.RuntimeServiceClient, image, logDir string) (string, func(), error) {

	uid := fmt.Sprintf("execbench-%d", os.Getpid())
	podCfg := benchutil.PodConfig(uid, "bench", uid, logDir+"/"+uid)
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		return "", nil, fmt.Errorf("run pod: %w", err)
	}
	remove := func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		benchutil.RemovePod(cctx, rt, pod.PodSandboxId)
	}
	ctr, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: benchutil.SleepContainer("sleeper", image, "sleeper.log"),
	})
	if err != nil {
		remove()
		return "", nil, fmt.Errorf("create container: %w", err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		remove()
		return "", nil, fmt.Errorf("start container: %w", err)
	}
	return ctr.ContainerId, remove, nil
}
