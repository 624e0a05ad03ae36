package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The two containers of the pod checkpoint tests. The writer counts in
// memory with a token drawn at its start and puts "token count" in the
// pod's /dev/shm; it serves the token on localhost:9000. The reader asks
// the writer over localhost (giving up on a connection after 5 s, as a
// client does: one the checkpoint cut is left hanging) and keeps "count answer" of the shared file
// and the answer in /state. Each appends the uptime to its own file in
// /dev/shm at every turn: the gaps show when it did not run.
const (
	podWriter = `tok=$(cat /proc/sys/kernel/random/uuid); nc -ll -p 9000 -e echo "$tok" & i=0; ` +
		`while true; do i=$((i+1)); echo "$tok $i" > /dev/shm/count; read up _ < /proc/uptime; echo $up >> /dev/shm/writer.ts; sleep 0.05; done`
	podReader = `while true; do a=$(timeout 5 nc 127.0.0.1 9000 </dev/null); ` +
		`read tok n < /dev/shm/count; echo "$n $a" > /state; read up _ < /proc/uptime; echo $up >> /dev/shm/reader.ts; sleep 0.05; done`
)

// podCheckpointSetup runs crid and a pod of a writer and a reader over gRPC.
func podCheckpointSetup(t *testing.T, config string) (c *crid, rt runtimeapi.RuntimeServiceClient, pod *runtimeapi.PodSandboxConfig, podID string, cfgs []*runtimeapi.ContainerConfig, ids []string) {
	t.Helper()
	c = newCrid(t, rig(t), "--config", configFile(t, config))
	rt = runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	c.mustCrictl("pull", "busybox")
	podFile, ctrFile := c.podFiles("podckpt", "unused")
	pod = &runtimeapi.PodSandboxConfig{}
	readJSON(t, podFile, pod)
	resp, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatal(err)
	}
	podID = resp.GetPodSandboxId()
	for _, ctr := range []struct{ name, script string }{{"writer", podWriter}, {"reader", podReader}} {
		cfg := &runtimeapi.ContainerConfig{}
		readJSON(t, ctrFile, cfg)
		cfg.Metadata.Name, cfg.Command, cfg.LogPath = ctr.name, []string{"sh", "-c", ctr.script}, ctr.name+".log"
		created, err := rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: created.GetContainerId()}); err != nil {
			t.Fatal(err)
		}
		cfgs, ids = append(cfgs, cfg), append(ids, created.GetContainerId())
	}
	return
}

// podState is the reader's /state: the writer's count it read from
// /dev/shm and the token the writer answered over localhost.
func (c *crid) podState(readerID string) (int, string) {
	out, err := c.crictl("exec", "-s", readerID, "cat", "/state")
	if err != nil {
		return 0, ""
	}
	n, answer, _ := strings.Cut(strings.TrimSpace(out), " ")
	count, _ := strconv.Atoi(n)
	return count, answer
}

// longCtx bounds a call that dumps or restores memory: the guest is
// emulated and slow.
func longCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

// TestCheckpointPodRestorePod: a pod whose two containers share /dev/shm
// and talk over localhost is checkpointed in one cut, removed, and
// restored into a new pod, where both go on from where they were.
func TestCheckpointPodRestorePod(t *testing.T) {
	if why := criuCheck(); why != "" {
		if os.Getenv("CRID_E2E_CRIU") == "required" {
			t.Fatalf("criu check: %s", why)
		}
		t.Skipf("CRIU cannot dump here (criu check: %s); the guest VM runs this test", why)
	}
	c, rt, pod, podID, cfgs, ids := podCheckpointSetup(t, restoringRunc)
	reader := ids[1]
	waitUntil(t, "the reader to hear the writer", func() bool { n, a := c.podState(reader); return n > 0 && a != "" })
	_, token := c.podState(reader)

	// Bad requests: a clear error, nothing written, nothing frozen.
	out := t.TempDir()
	for _, tc := range []struct {
		name string
		req  *runtimeapi.CheckpointPodRequest
		want codes.Code
	}{
		{"repeated id", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: out, ContainerIds: []string{ids[0], ids[0]}}, codes.InvalidArgument},
		{"unknown option", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: out, ContainerIds: ids, Options: map[string]string{"x": "y"}}, codes.InvalidArgument},
		{"no containers", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: out}, codes.InvalidArgument},
		{"unknown pod", &runtimeapi.CheckpointPodRequest{PodSandboxId: "nope", OutputPath: out, ContainerIds: ids}, codes.NotFound},
		{"relative output", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: "out", ContainerIds: ids}, codes.InvalidArgument},
	} {
		if _, err := rt.CheckpointPod(ctx(t), tc.req); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("bad requests wrote %v", entries)
	}

	if _, err := rt.CheckpointPod(longCtx(t), &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: out, ContainerIds: ids}); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	for _, id := range ids {
		if s := c.containerStatus(id).GetState(); s != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("after the checkpoint %s is %v", id, s)
		}
	}
	n0, _ := c.podState(reader)
	waitUntil(t, "the pod to run on after the checkpoint", func() bool { n, _ := c.podState(reader); return n > n0 })
	// One cut: while the checkpoint ran, each container's longest pause
	// (the gap in its timestamps) spans the other's: neither ran while
	// the other was dumped.
	w, r := c.longestGap(reader, "writer.ts"), c.longestGap(reader, "reader.ts")
	overlap := min(w[1], r[1]) - max(w[0], r[0])
	t.Logf("frozen: writer %.2f..%.2f, reader %.2f..%.2f", w[0], w[1], r[0], r[1])
	if overlap < 0.5*(w[1]-w[0]) || overlap < 0.5*(r[1]-r[0]) {
		t.Errorf("the containers were not frozen together: writer %v, reader %v", w, r)
	}

	// The original pod goes; the checkpoint makes a new one.
	if _, err := rt.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	pod.Metadata.Uid = "restored-uid"
	restoreReq := func(edit func(*runtimeapi.RestorePodRequest)) *runtimeapi.RestorePodRequest {
		req := &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: pod}
		for _, cfg := range cfgs {
			req.ContainerConfigs = append(req.ContainerConfigs, proto.Clone(cfg).(*runtimeapi.ContainerConfig))
		}
		if edit != nil {
			edit(req)
		}
		return req
	}
	// A tampered and a truncated copy, another handler, a wrong config:
	// refused, and no pod is left.
	tampered, truncated := copyDir(t, out), copyDir(t, out)
	flipByte(t, filepath.Join(tampered, "containers", "writer.tar"))
	if err := os.Truncate(filepath.Join(truncated, "containers", "reader.tar"), 1024); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*runtimeapi.RestorePodRequest)
		want codes.Code
	}{
		{"tampered", func(r *runtimeapi.RestorePodRequest) { r.CheckpointPath = tampered }, codes.InvalidArgument},
		{"truncated", func(r *runtimeapi.RestorePodRequest) { r.CheckpointPath = truncated }, codes.InvalidArgument},
		{"another handler", func(r *runtimeapi.RestorePodRequest) { r.RuntimeHandler = "runc-userns" }, codes.FailedPrecondition},
		{"unknown handler", func(r *runtimeapi.RestorePodRequest) { r.RuntimeHandler = "nope" }, codes.InvalidArgument},
		{"a container missing", func(r *runtimeapi.RestorePodRequest) { r.ContainerConfigs = r.ContainerConfigs[:1] }, codes.InvalidArgument},
		{"another command", func(r *runtimeapi.RestorePodRequest) { r.ContainerConfigs[1].Command = []string{"sleep", "1"} }, codes.InvalidArgument},
		{"an option", func(r *runtimeapi.RestorePodRequest) { r.Options = map[string]string{"x": "y"} }, codes.InvalidArgument},
	} {
		if _, err := rt.RestorePod(longCtx(t), restoreReq(tc.edit)); status.Code(err) != tc.want {
			t.Errorf("restore, %s: %v, want %v", tc.name, err, tc.want)
		}
	}
	pods, err := rt.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.GetItems()) != 0 {
		t.Fatalf("refused restores left pods: %v, %v", pods.GetItems(), err)
	}

	resp, err := rt.RestorePod(longCtx(t), restoreReq(nil))
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	byName := map[string]string{}
	for _, rc := range resp.GetRestoredContainers() {
		byName[rc.GetName()] = rc.GetContainerId()
		if s := c.containerStatus(rc.GetContainerId()).GetState(); s != runtimeapi.ContainerState_CONTAINER_CREATED {
			t.Fatalf("restored %s before its start: %v", rc.GetName(), s)
		}
	}
	if len(byName) != 2 || byName["writer"] == "" || byName["reader"] == "" {
		t.Fatalf("restored containers: %v", resp.GetRestoredContainers())
	}
	for _, name := range []string{"writer", "reader"} {
		if _, err := rt.StartContainer(longCtx(t), &runtimeapi.StartContainerRequest{ContainerId: byName[name]}); err != nil {
			t.Fatalf("StartContainer (restore) %s: %v", name, err)
		}
	}
	// Both go on: the reader reads the writer's count on from /dev/shm,
	// and the writer answers over the new pod's localhost with its token.
	nDumped := c.dumpedCount(out)
	waitUntil(t, "the restored pod to go on", func() bool {
		n, a := c.podState(byName["reader"])
		return n > nDumped && a == token
	})
	c.mustCrictl("rmp", "-f", resp.GetPodSandboxId())
}

// longestGap is the longest gap between consecutive uptimes in file, a
// writer.ts or reader.ts in the pod's /dev/shm (read through container
// id): from the last before it to the first after it, in seconds.
func (c *crid) longestGap(id, file string) [2]float64 {
	out, err := c.crictl("exec", "-s", id, "cat", "/dev/shm/"+file)
	if err != nil {
		c.t.Fatalf("read %s: %v: %s", file, err, out)
	}
	var best [2]float64
	prev := -1.0
	for _, line := range strings.Fields(out) {
		v, err := strconv.ParseFloat(line, 64)
		if err != nil {
			continue
		}
		if prev >= 0 && v-prev > best[1]-best[0] {
			best = [2]float64{prev, v}
		}
		prev = v
	}
	return best
}

// dumpedCount is the writer's count in the checkpoint's /dev/shm.
func (c *crid) dumpedCount(checkpointDir string) int {
	dir := c.t.TempDir()
	untar(c.t, filepath.Join(checkpointDir, "shm.tar"), dir)
	b, err := os.ReadFile(filepath.Join(dir, "count"))
	if err != nil {
		c.t.Fatal(err)
	}
	_, n, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	count, _ := strconv.Atoi(n)
	return count
}

// copyDir copies the regular files of a pod checkpoint to a new dir.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// flipByte changes one byte in the middle of a file, keeping its size.
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		t.Fatalf("%s: %v", path, err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointPodDeadline: a pod checkpoint that outlives its deadline
// returns DeadlineExceeded with every container running again and the
// output dir empty. The fault: a runtime wrapper whose checkpoint hangs
// (the containers were paused by crid before), as a stuck CRIU does; the
// criu it names only answers the start-up check.
func TestCheckpointPodDeadline(t *testing.T) {
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "runc-hang")
	script := "#!/bin/sh\ncase \" $* \" in *\" --help \"*) exec runc \"$@\" ;; esac\nfor a in \"$@\"; do [ \"$a\" = checkpoint ] && exec sleep 3600; done\nexec runc \"$@\"\n"
	criu := filepath.Join(dir, "criu")
	for path, data := range map[string]string{wrapper: script, criu: "#!/bin/sh\n[ \"$1\" = check ] && echo 'Looks good.'\n"} {
		if err := os.WriteFile(path, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c, rt, _, podID, _, ids := podCheckpointSetup(t, fmt.Sprintf("[runtimes.runc]\npath = %q\n[checkpoint]\nenable = \"on\"\ncriu = %q\n", wrapper, criu))
	reader := ids[1]
	waitUntil(t, "the reader to hear the writer", func() bool { n, a := c.podState(reader); return n > 0 && a != "" })

	out := t.TempDir()
	cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := rt.CheckpointPod(cctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: out, ContainerIds: ids})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("checkpoint past its deadline: %v", err)
	}
	// crid resumes both as the call ends, past its deadline: the reader
	// reads the writer's count on (both run again).
	n0, _ := c.podState(reader)
	waitUntil(t, "the pod to run on", func() bool { n, _ := c.podState(reader); return n > n0 })
	for _, id := range ids {
		if s := c.containerStatus(id).GetState(); s != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("after the cut checkpoint %s is %v", id, s)
		}
	}
	waitUntil(t, "the output dir to be emptied", func() bool {
		entries, _ := os.ReadDir(out)
		return len(entries) == 0
	})
	if entries, _ := os.ReadDir(filepath.Join(c.state, "checkpoints")); len(entries) != 0 {
		t.Errorf("work dirs left behind: %v", entries)
	}
}
