package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criuCheck is why CRIU cannot dump on this host ("": it can). Debian 12's
// CRIU 3.17 fails `criu check` on newer kernels (6.18 here); on Debian's
// own kernel, in the guest VM, it works.
func criuCheck() string {
	out, err := exec.Command("criu", "check").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%v: %s", err, bytes.TrimSpace(out))
	}
	return ""
}

// restoringRunc configures runc 1.5 (hack/install-deps.sh) as the runc
// handler's runtime: Debian's runc 1.1 cannot restore.
const restoringRunc = "[runtimes.runc]\npath = \"/usr/local/libexec/crid/runc\"\n"

// configFile writes a crid configuration file and returns its path.
func configFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crid.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// untar unpacks the regular files of a tar at path into dir and returns
// their names.
func untar(t *testing.T, path, dir string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		names = append(names, hdr.Name)
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(dst, dir+string(filepath.Separator)) {
			t.Fatalf("%s: entry %q leaves the archive", path, hdr.Name)
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckpointUnavailable: where CRIU cannot dump, crid says so in
// Status, and a checkpoint fails with that reason, changing nothing.
func TestCheckpointUnavailable(t *testing.T) {
	why := criuCheck()
	extra := []string{}
	if why == "" {
		// CRIU works here: turn checkpointing off to see the same refusal.
		extra = append(extra, "--config", configFile(t, "[checkpoint]\nenable = \"off\"\n"))
	}
	c := newCrid(t, rig(t), extra...)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	_, ctrID := c.runPod("nockpt", "exec sleep 3600")
	resp, err := rt.Status(ctx(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	reason := resp.GetInfo()["checkpoint"]
	if reason == "enabled" || reason == "" {
		t.Fatalf("Status info checkpoint: %q", reason)
	}
	location := filepath.Join(t.TempDir(), "nockpt.tar")
	_, err = rt.CheckpointContainer(ctx(t), &runtimeapi.CheckpointContainerRequest{ContainerId: ctrID, Location: location})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), reason) {
		t.Errorf("checkpoint: %v, want FailedPrecondition saying %q", err, reason)
	}
	if _, err := os.Stat(location); !os.IsNotExist(err) {
		t.Errorf("an archive was written: %v", err)
	}
	if s := c.containerStatus(ctrID).GetState(); s != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after the refused checkpoint the container is %v", s)
	}
	// A restore (an archive in place of the image) is refused alike.
	pods, err := rt.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.GetItems()) != 1 {
		t.Fatalf("pods: %v, %v", pods, err)
	}
	_, err = rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{
		PodSandboxId: pods.GetItems()[0].GetId(),
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "restored"},
			Image:    &runtimeapi.ImageSpec{Image: location},
		},
	})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("restore where checkpoints are off: %v, want FailedPrecondition", err)
	}
}

func TestCheckpointContainer(t *testing.T) {
	if why := criuCheck(); why != "" {
		// The guest VM runs this test with CRID_E2E_CRIU=required.
		if os.Getenv("CRID_E2E_CRIU") == "required" {
			t.Fatalf("criu check: %s", why)
		}
		t.Skipf("CRIU cannot dump here (criu check: %s); the guest VM runs this test", why)
	}
	// The runtime is runc 1.5 (hack/install-deps.sh): Debian's runc 1.1
	// has no `restore --manage-cgroups-mode ignore`, and crid refuses to
	// restore with it (internal/container's TestRestore).
	c := newCrid(t, rig(t), "--config", configFile(t, restoringRunc))
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	// A counter that keeps its count and a token drawn at its start in
	// memory and writes both to a file of its root, which has lost one of
	// the image's files; a TCP server answers with the token.
	podID, ctrID := c.runPod("ckpt", counterScript("rm /etc/nsswitch.conf; "))
	count := func() (string, int) { return c.readCounter(ctrID) }
	waitUntil(t, "the counter counts", func() bool { _, n := count(); return n > 0 })
	token, _ := count()
	if got := c.askServer(ctrID); got != token {
		t.Fatalf("the server answers %q, want the token %q", got, token)
	}

	out := t.TempDir()
	location := filepath.Join(out, "ckpt.tar")
	if _, err := rt.CheckpointContainer(ctx(t), &runtimeapi.CheckpointContainerRequest{
		ContainerId: ctrID, Location: location, Timeout: 120,
	}); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	// The container runs on, still counting.
	if s := c.containerStatus(ctrID).GetState(); s != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after the checkpoint the container is %v", s)
	}
	_, after := count()
	waitUntil(t, "the counter counts on after the checkpoint", func() bool { _, n := count(); return n > after })

	// The archive has the layout checkpointctl reads.
	dir := t.TempDir()
	names := untar(t, location, dir)
	for _, want := range []string{metadata.ConfigDumpFile, metadata.SpecDumpFile, metadata.RootFsDiffTar,
		metadata.DeletedFilesFile, "stats-dump", "checkpoint/inventory.img", "checkpoint/pstree.img"} {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s: %v", want, names)
		}
	}
	config, _, err := metadata.ReadContainerCheckpointConfigDump(dir)
	if err != nil {
		t.Fatal(err)
	}
	if config.ID != ctrID || config.Name != "ckpt" || config.RootfsImageName == "" || config.OCIRuntime == "" {
		t.Errorf("config.dump: %+v", config)
	}
	spec, _, err := metadata.ReadContainerCheckpointSpecDump(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.Annotations["io.kubernetes.cri.container-name"]; got != "ckpt" {
		t.Errorf("spec.dump names the container %q", got)
	}
	deleted, _, err := metadata.ReadContainerCheckpointDeletedFiles(dir)
	if err != nil || !slices.Contains(deleted, "etc/nsswitch.conf") {
		t.Errorf("deleted.files: %v, %v", deleted, err)
	}
	diffDir := t.TempDir()
	if diff := untar(t, filepath.Join(dir, metadata.RootFsDiffTar), diffDir); !slices.Contains(diff, "count") {
		t.Errorf("rootfs-diff.tar lacks the counter's file: %v", diff)
	}
	dumped, _ := os.ReadFile(filepath.Join(diffDir, "count"))
	_, atDump, _ := strings.Cut(strings.TrimSpace(string(dumped)), " ")
	n, _ := strconv.Atoi(atDump)

	// Bad requests: a clear error, and nothing written.
	code := func(err error) codes.Code { return status.Code(err) }
	for _, tc := range []struct {
		name string
		req  *runtimeapi.CheckpointContainerRequest
		want codes.Code
	}{
		{"no location", &runtimeapi.CheckpointContainerRequest{ContainerId: ctrID}, codes.InvalidArgument},
		{"relative location", &runtimeapi.CheckpointContainerRequest{ContainerId: ctrID, Location: "x.tar"}, codes.InvalidArgument},
		{"missing dir", &runtimeapi.CheckpointContainerRequest{ContainerId: ctrID, Location: filepath.Join(out, "no", "x.tar")}, codes.InvalidArgument},
		{"unknown container", &runtimeapi.CheckpointContainerRequest{ContainerId: "nope", Location: filepath.Join(out, "x.tar")}, codes.NotFound},
	} {
		if _, err := rt.CheckpointContainer(ctx(t), tc.req); code(err) != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	c.mustCrictl("stop", ctrID)
	if _, err := rt.CheckpointContainer(ctx(t), &runtimeapi.CheckpointContainerRequest{
		ContainerId: ctrID, Location: filepath.Join(out, "stopped.tar"),
	}); code(err) != codes.FailedPrecondition {
		t.Errorf("checkpoint of a stopped container: %v", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Errorf("the output dir holds %v, want only ckpt.tar", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.state, "checkpoints")); len(entries) != 0 {
		t.Errorf("work dirs left behind: %v", entries)
	}
	resp, err := rt.Status(ctx(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetInfo()["checkpoint"]; got != "enabled" {
		t.Errorf("Status info checkpoint: %q", got)
	}

	// Restore into a fresh pod, the original gone: the counter goes on
	// from where the dump caught it, with the token it drew at its start.
	c.mustCrictl("rmp", "-fa")
	podCfg, ctrCfg := c.podFiles("ckpt", "unused")
	podID = strings.TrimSpace(c.mustCrictl("runp", podCfg))
	var cfg runtimeapi.ContainerConfig
	b, _ := os.ReadFile(ctrCfg)
	if err := protojson.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var pod runtimeapi.PodSandboxConfig
	b, _ = os.ReadFile(podCfg)
	if err := protojson.Unmarshal(b, &pod); err != nil {
		t.Fatal(err)
	}
	cfg.Image = &runtimeapi.ImageSpec{Image: location}
	created, err := rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: &cfg, SandboxConfig: &pod})
	if err != nil {
		t.Fatalf("CreateContainer from the checkpoint: %v", err)
	}
	restored := created.GetContainerId()
	if s := c.containerStatus(restored).GetState(); s != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("the restored container before its start: %v", s)
	}
	if _, err := rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: restored}); err != nil {
		t.Fatalf("StartContainer (restore): %v", err)
	}
	// The token is taken from the read that saw the count go on: a read
	// may meet /count just truncated by the counter's next write.
	var tok string
	var m int
	waitUntil(t, "the restored counter to count on", func() bool { tok, m = c.readCounter(restored); return m > n })
	if tok != token || m <= n {
		t.Errorf("restored counter: token %q count %d; before: token %q count %d", tok, m, token, n)
	}
	// The listener came back in the new pod's network namespace, with
	// the process's memory.
	if got := c.askServer(restored); got != token {
		t.Errorf("the restored server answers %q, want the token %q", got, token)
	}
	if _, err := os.Stat(location); err != nil {
		t.Errorf("the restore changed the archive: %v", err)
	}
	// The restored container is the new container's: it stops, and its
	// pod goes, with nothing left (the harness checks cgroups and mounts).
	c.mustCrictl("stop", restored)
	c.mustCrictl("rmp", "-f", podID)

	// The kubelet's way: a checkpoint image (the archive as its one layer,
	// marked by CRI-O's annotation, as the Kubernetes documentation builds
	// it with buildah), pushed to a registry and named in CreateContainer.
	ref := pushCheckpointImage(t, location, "ckpt")
	c.mustCrictl("pull", ref)
	podID = strings.TrimSpace(c.mustCrictl("runp", podCfg))
	cfg.Image = &runtimeapi.ImageSpec{Image: ref}
	created, err = rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: &cfg, SandboxConfig: &pod})
	if err != nil {
		t.Fatalf("CreateContainer from the checkpoint image: %v", err)
	}
	fromImage := created.GetContainerId()
	if _, err := rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: fromImage}); err != nil {
		t.Fatalf("StartContainer (restore from the image): %v", err)
	}
	waitUntil(t, "the counter restored from the image to count on", func() bool { tok, m = c.readCounter(fromImage); return m > n })
	if tok != token {
		t.Errorf("restored from the image: token %q, want %q", tok, token)
	}
	if st := c.containerStatus(fromImage); !strings.Contains(st.GetImage().GetImage(), "busybox") {
		t.Errorf("the container restored from the image runs image %q, want the checkpointed busybox", st.GetImage().GetImage())
	}
	c.mustCrictl("rmp", "-f", podID)
}

// askServer asks counterScript's server in container id, over the pod's
// loopback, and returns its answer, "" if there is none.
func (c *crid) askServer(id string) string {
	c.t.Helper()
	out, err := c.crictl("exec", "-s", id, "nc", "127.0.0.1", "8080")
	if err != nil {
		c.t.Logf("ask the server: %v: %s", err, out)
		return ""
	}
	return strings.TrimSpace(out)
}

// counterScript is a shell loop that counts, in memory, with a token drawn
// once at its start, and writes "token count" to /count; prefix runs first.
// A TCP server on port 8080 answers each connection with the token.
func counterScript(prefix string) string {
	return prefix + "tok=$(cat /proc/sys/kernel/random/uuid); nc -ll -p 8080 -e echo \"$tok\" & " +
		"i=0; while true; do i=$((i+1)); echo \"$tok $i\" > /count; sleep 0.05; done"
}

// readCounter reads a counterScript's file: its token and count.
func (c *crid) readCounter(id string) (string, int) {
	out, err := c.crictl("exec", "-s", id, "cat", "/count")
	if err != nil {
		c.t.Logf("read the count: %v: %s", err, out)
		return "", 0
	}
	tok, count, _ := strings.Cut(strings.TrimSpace(out), " ")
	n, _ := strconv.Atoi(count)
	return tok, n
}

// TestCheckpointDeadline: a dump that outlives the request's timeout is
// ended whole (the runtime and what it started) and the container is
// thawed and runs on; nothing is written. The fault is injected by a
// runtime wrapper whose checkpoint freezes the container and hangs, as a
// stuck CRIU does; the criu it names only answers the start-up check, as
// nothing else runs it.
func TestCheckpointDeadline(t *testing.T) {
	dir := t.TempDir()
	hung := filepath.Join(dir, "hung.pid")
	wrapper := filepath.Join(dir, "runc-hang")
	script := fmt.Sprintf(`#!/bin/sh
case " $* " in *" --help "*) exec runc "$@" ;; esac
pre=""
for a in "$@"; do
  if [ "$a" = checkpoint ]; then
    for id in "$@"; do :; done
    runc $pre pause "$id" || exit 1
    sleep 3600 &
    echo $! > %q
    wait
    exit 1
  fi
  pre="$pre $a"
done
exec runc "$@"
`, hung)
	criu := filepath.Join(dir, "criu")
	cfg := filepath.Join(dir, "crid.toml")
	for path, data := range map[string]string{
		wrapper: script,
		criu:    "#!/bin/sh\n[ \"$1\" = check ] && echo 'Looks good.'\n",
		cfg:     fmt.Sprintf("[runtimes.runc]\npath = %q\n[checkpoint]\nenable = \"on\"\ncriu = %q\n", wrapper, criu),
	} {
		if err := os.WriteFile(path, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := newCrid(t, rig(t), "--config", cfg)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	_, ctrID := c.runPod("deadline", counterScript(""))
	count := func() int { _, n := c.readCounter(ctrID); return n }
	waitUntil(t, "the counter counts", func() bool { return count() > 0 })

	location := filepath.Join(t.TempDir(), "deadline.tar")
	_, err := rt.CheckpointContainer(ctx(t), &runtimeapi.CheckpointContainerRequest{ContainerId: ctrID, Location: location, Timeout: 3})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("checkpoint past its timeout: %v, want DeadlineExceeded", err)
	}
	b, err := os.ReadFile(hung)
	if err != nil {
		t.Fatalf("the wrapper's hang did not start: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitUntil(t, "the hung dump's process to be gone", func() bool { return syscall.Kill(pid, 0) != nil })
	if s := c.containerStatus(ctrID).GetState(); s != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after the cut checkpoint the container is %v", s)
	}
	after := count()
	waitUntil(t, "the counter counts on (the container was thawed)", func() bool { return count() > after })
	if _, err := os.Stat(location); !os.IsNotExist(err) {
		t.Errorf("an archive was written: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.state, "checkpoints")); len(entries) != 0 {
		t.Errorf("work dirs left behind: %v", entries)
	}
}
