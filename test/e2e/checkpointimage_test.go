package e2e

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pushCheckpointImage builds a checkpoint image from archive and pushes
// it to a registry (go-containerregistry's, in memory) the test serves on
// loopback, and returns the image's reference for crid. The registry
// listens twice: here, for the push, and in the tests' network namespace,
// where crid pulls.
func pushCheckpointImage(t *testing.T, archive, container string) string {
	t.Helper()
	handler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	here := httptest.NewServer(handler)
	t.Cleanup(here.Close)
	there := httptest.NewUnstartedServer(handler)
	there.Listener.Close()
	there.Listener = listenInNetns(t)
	there.Start()
	t.Cleanup(there.Close)

	layer, err := tarball.LayerFromFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		t.Fatal(err)
	}
	img = mutate.Annotations(img, map[string]string{"io.kubernetes.cri-o.annotations.checkpoint.name": container}).(v1.Image)
	repo := "/checkpoints/" + container + ":latest"
	tag, err := name.NewTag(strings.TrimPrefix(here.URL, "http://")+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	return strings.TrimPrefix(there.URL, "http://") + repo
}

// listenInNetns listens on a loopback port of the tests' network
// namespace: the socket is made on a thread switched into it.
func listenInNetns(t *testing.T) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + netns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	l, lerr := net.Listen("tcp", "127.0.0.1:0")
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so it ends with this goroutine.
		t.Fatalf("back to the test's network namespace: %v", err)
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		t.Fatal(lerr)
	}
	return l
}

// TestCheckpointImageRefused: a checkpoint image is pulled and recognised
// here too, where CRIU cannot restore; what cannot be restored is refused
// at CreateContainer and a restore that fails leaves the container
// CREATED, with nothing leaked. The archives are made by hand: config.dump
// names the pulled busybox and a handler; the criu named only answers the
// start-up check, so the restore itself fails.
func TestCheckpointImageRefused(t *testing.T) {
	dir := t.TempDir()
	criu := filepath.Join(dir, "criu")
	cfgFile := filepath.Join(dir, "crid.toml")
	for path, data := range map[string]string{
		criu: "#!/bin/sh\n[ \"$1\" = check ] && echo 'Looks good.'\n",
		// runc: runc 1.5 (it can restore); old: Debian's runc 1.1 (cannot).
		cfgFile: fmt.Sprintf("[runtimes.runc]\npath = \"/usr/local/libexec/crid/runc\"\n[runtimes.old]\npath = \"/usr/sbin/runc\"\n[checkpoint]\nenable = \"on\"\ncriu = %q\n", criu),
	} {
		if err := os.WriteFile(path, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := newCrid(t, rig(t), "--config", cfgFile)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	c.mustCrictl("pull", "busybox")
	imageID := strings.TrimSpace(c.mustCrictl("inspecti", "-o", "go-template", "--template", "{{.status.id}}", "busybox"))
	archive := func(name, handler string, inventory bool) string {
		files := map[string][]byte{}
		files[metadata.ConfigDumpFile], _ = json.Marshal(metadata.ContainerConfig{
			ID: "0123456789abcdef", Name: name, RootfsImageRef: imageID, RootfsImageName: "busybox", OCIRuntime: handler,
		})
		files[metadata.SpecDumpFile], _ = json.Marshal(specs.Spec{Process: &specs.Process{Args: []string{"sh"}}, Root: &specs.Root{Path: "rootfs"}})
		if inventory {
			files["checkpoint/inventory.img"] = []byte("not CRIU's")
		}
		path := filepath.Join(t.TempDir(), name+".tar")
		writeTar(t, path, files)
		return path
	}
	podCfg, ctrCfg := c.podFiles("refused", "unused")
	var pod runtimeapi.PodSandboxConfig
	var cfg runtimeapi.ContainerConfig
	readJSON(t, podCfg, &pod)
	readJSON(t, ctrCfg, &cfg)
	create := func(handler, ref string) (string, string, error) {
		c.mustCrictl("pull", ref)
		p, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: &pod, RuntimeHandler: handler})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Image = &runtimeapi.ImageSpec{Image: ref}
		resp, err := rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.GetPodSandboxId(), Config: &cfg, SandboxConfig: &pod})
		return p.GetPodSandboxId(), resp.GetContainerId(), err
	}
	for _, tc := range []struct {
		name, handler, image string
		want                 codes.Code
	}{
		{"a handler whose runc cannot restore", "old", pushCheckpointImage(t, archive("old", "old", true), "old"), codes.FailedPrecondition},
		{"another handler than the checkpoint's", "runc", pushCheckpointImage(t, archive("other", "old", true), "other"), codes.FailedPrecondition},
		{"no CRIU images", "runc", pushCheckpointImage(t, archive("noimages", "runc", false), "noimages"), codes.InvalidArgument},
	} {
		podID, _, err := create(tc.handler, tc.image)
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		c.mustCrictl("rmp", "-f", podID)
	}

	// Recognised and created; its restore (CRIU's) fails, and it stays
	// CREATED for a retry; its pod then goes with nothing left.
	podID, ctrID, err := create("runc", pushCheckpointImage(t, archive("valid", "runc", true), "valid"))
	if err != nil {
		t.Fatalf("CreateContainer from a checkpoint image: %v", err)
	}
	if st := c.containerStatus(ctrID); st.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED || !strings.Contains(st.GetImage().GetImage(), "busybox") {
		t.Fatalf("the container made from the checkpoint image: %v, image %q", st.GetState(), st.GetImage().GetImage())
	}
	if _, err := rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err == nil {
		t.Fatal("a restore with a criu that cannot restore started")
	}
	if s := c.containerStatus(ctrID).GetState(); s != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("after the failed restore: %v", s)
	}
	c.mustCrictl("rmp", "-f", podID)
}

// writeTar writes files (name → content) as a tar at path.
func writeTar(t *testing.T, path string, files map[string][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}
