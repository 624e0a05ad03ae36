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
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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
		fmt.Fprintln(os.Stderr, "execbench:", err)
		os.Exit(1)
	}
}

func run(endpoint string, n, warmup int, image, logDir, cmd string) error {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	uid := fmt.Sprintf("execbench-%d", os.Getpid())
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: uid, Namespace: "bench", Uid: uid},
		LogDirectory: logDir + "/" + uid,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		return fmt.Errorf("run pod: %w", err)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		rt.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		rt.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	}()
	ctr, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  []string{"sleep", "3600"},
			LogPath:  "sleeper.log",
			Linux:    &runtimeapi.LinuxContainerConfig{},
		},
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
	slices.Sort(d)
	q := func(p float64) string {
		return fmt.Sprintf("%.2f", float64(d[min(len(d)-1, int(p*float64(len(d))))])/1e6)
	}
	fmt.Printf("execsync_ms median %s p90 %s p99 %s max %s n %d\n", q(0.5), q(0.9), q(0.99), q(1), len(d))
	return nil
}
