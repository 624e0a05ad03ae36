package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The rig's images used as volumes: a busybox with a marker file on a
// third layer, and pause, of one layer.
const (
	volImage   = "gcr.io/k8s-staging-cri-tools/test-image-1:latest"
	volMarker  = "/test-image-1-latest"
	pauseImage = "registry.k8s.io/pause:3.10.1" // not the sandbox image, which pods use
)

// pullRef pulls ref and returns the image_ref PullImage answers, which the
// kubelet puts in a mount's image.
func (c *crid) pullRef(ref string) string {
	c.t.Helper()
	resp, err := c.images().PullImage(ctx(c.t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.ImageRef
}

func imageVolume(dst, ref, sub string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: dst, Readonly: true, Image: &runtimeapi.ImageSpec{Image: ref}, ImageSubPath: sub}
}

// imageVolumePod runs a pod for containers with image volumes.
func (c *crid) imageVolumePod(rt runtimeapi.RuntimeServiceClient, name string) (string, *runtimeapi.PodSandboxConfig, error) {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(c.dir, "logs", name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: podParent(name)},
	}
	resp, err := rt.RunPodSandbox(ctx(c.t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	return resp.GetPodSandboxId(), cfg, err
}

func volumeContainer(name, script string, mounts ...*runtimeapi.Mount) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sh", "-c", script},
		LogPath:  name + ".log",
		Mounts:   mounts,
	}
}

// Two containers of a pod share an image, mounted read-only, whole or
// at a sub path; a sub path the image lacks and a writable image volume
// are refused; the image cannot be removed while mounted; the status
// reports its ID; nothing is left once the pod is gone.
func TestImageVolume(t *testing.T) {
	c := newCrid(t, rig(t))
	c.mustCrictl("pull", "busybox")
	ref, pause := c.pullRef(volImage), c.pullRef(pauseImage)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	podID, podCfg, err := c.imageVolumePod(rt, "imagevol")
	if err != nil {
		t.Fatal(err)
	}
	create := func(cfg *runtimeapi.ContainerConfig) (string, error) {
		resp, err := rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
		return resp.GetContainerId(), err
	}
	const script = `cat /vol` + volMarker + `; test -f /etc-vol/passwd && echo sub ok; test -x /pause/pause && echo pause ok;
touch /vol/x 2>/dev/null || echo read-only; grep -q ' /vol ' /proc/self/mountinfo && echo mounted; echo done; exec sleep 3600`
	var ids []string
	for _, name := range []string{"first", "second"} {
		id, err := create(volumeContainer(name, script,
			imageVolume("/vol", ref, ""), imageVolume("/etc-vol", ref, "etc"), imageVolume("/pause", pause, "")))
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if _, err := rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		var logs string
		waitUntil(t, "the container's report", func() bool {
			logs, _ = c.crictl("logs", id)
			return strings.Contains(logs, "done")
		})
		for _, want := range []string{"test-image-1:latest", "sub ok", "pause ok", "read-only", "mounted"} {
			if !strings.Contains(logs, want) {
				t.Errorf("container %s: no %q in its report:\n%s", id, want, logs)
			}
		}
		st := c.containerStatus(id)
		if i := slices.IndexFunc(st.Mounts, func(m *runtimeapi.Mount) bool { return m.ContainerPath == "/etc-vol" }); i < 0 ||
			st.Mounts[i].GetImage().GetImageRef() != ref || st.Mounts[i].GetImageSubPath() != "etc" {
			t.Errorf("status mounts %v: no /etc-vol of %s", st.Mounts, ref)
		}
	}

	for name, tc := range map[string]struct {
		mount *runtimeapi.Mount
		code  codes.Code
		msg   string
	}{
		"missing sub path": {imageVolume("/vol", ref, "no/such/dir"), codes.InvalidArgument, `"no/such/dir" does not exist in the image`},
		"writable":         {&runtimeapi.Mount{ContainerPath: "/vol", Image: &runtimeapi.ImageSpec{Image: ref}}, codes.InvalidArgument, "always read-only"},
		"image not pulled": {imageVolume("/vol", "busybox:not-pulled", ""), codes.NotFound, "pull it first"},
	} {
		_, err := create(volumeContainer("bad-"+strings.ReplaceAll(name, " ", "-"), "true", tc.mount))
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %s with %q", name, err, tc.code, tc.msg)
		}
	}

	for _, img := range []string{ref, volImage, pause} {
		_, err := c.images().RemoveImage(ctx(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: img}})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "in use") {
			t.Errorf("RemoveImage %s while mounted: %v, want FailedPrecondition", img, err)
		}
	}
	for _, id := range ids {
		c.mustCrictl("rm", "-f", id)
	}
	for _, img := range []string{ref, pause} {
		if _, err := c.images().RemoveImage(ctx(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: img}}); err != nil {
			t.Errorf("RemoveImage %s once unmounted: %v", img, err)
		}
	}
	c.mustCrictl("rmp", "-fa")
	c.assertNothingLeft()
	if entries, _ := os.ReadDir(filepath.Join(c.root, "containers")); len(entries) != 0 {
		t.Errorf("%d container layer dirs left", len(entries))
	}
}

// volumeLifecycle is lifecycle for a container with an image volume, over
// gRPC; it stops at the first failure.
func (c *crid) volumeLifecycle(ref string) error {
	conn := dial(c.t, c.sock)
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	podID, podCfg, err := c.imageVolumePod(rt, "crashvol")
	if err != nil {
		return err
	}
	resp, err := rt.CreateContainer(ctx(c.t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg,
		Config: volumeContainer("crashvol", "exec sleep 3600", imageVolume("/vol", ref, "etc"))})
	if err != nil {
		return err
	}
	id := resp.ContainerId
	for _, call := range []func() error{
		func() error {
			_, err := rt.StartContainer(ctx(c.t), &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		},
		func() error {
			_, err := rt.StopContainer(ctx(c.t), &runtimeapi.StopContainerRequest{ContainerId: id})
			return err
		},
		func() error {
			_, err := rt.RemoveContainer(ctx(c.t), &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		},
		func() error {
			_, err := rt.StopPodSandbox(ctx(c.t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
			return err
		},
		func() error {
			_, err := rt.RemovePodSandbox(ctx(c.t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
			return err
		},
	} {
		if err := call(); err != nil {
			return err
		}
	}
	return nil
}

// A crash at each step of an image volume's mount and unmount, and again
// at the same step while crid recovers, leaves nothing mounted once the
// pods are removed, and the image removable.
func TestImageVolumeCrash(t *testing.T) {
	hosts := rig(t)
	c := newCrid(t, hosts)
	c.mustCrictl("pull", "busybox")
	ref := c.pullRef(volImage)
	c.p.signal(syscall.SIGTERM)
	list := filepath.Join(c.dir, "crash-points")
	c.startWith(bin.cridCrash, "CRID_CRASH_LIST="+list)
	c.waitRecovered()
	if err := c.volumeLifecycle(ref); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	var points []string
	for _, p := range strings.Fields(string(b)) {
		if strings.HasPrefix(p, "container/imagevolumes") {
			points = append(points, p)
		}
	}
	if want := []string{"container/imagevolumes", "container/imagevolumes/made", "container/imagevolumes/undone"}; !slices.Equal(points, want) {
		t.Fatalf("image volume crash points %v, want %v", points, want)
	}
	c.p.signal(syscall.SIGTERM)
	for _, point := range points {
		t.Run(strings.ReplaceAll(point, "/", "-"), func(t *testing.T) {
			c := newCrid(t, hosts)
			c.mustCrictl("pull", "busybox")
			ref := c.pullRef(volImage)
			c.crashAt(point, func() error { return c.volumeLifecycle(ref) })
			c.assertWholeThenRemove()
			if entries, _ := os.ReadDir(filepath.Join(c.root, "containers")); len(entries) != 0 {
				t.Errorf("%d container layer dirs left", len(entries))
			}
		})
	}
}
