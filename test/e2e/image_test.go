package e2e

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCrictlImageCommands(t *testing.T) {
	c := newCrid(t, rig(t))

	if out := c.mustCrictl("version"); !strings.Contains(out, "RuntimeName:  crid") || !strings.Contains(out, "RuntimeApiVersion:  v1") {
		t.Fatalf("crictl version:\n%s", out)
	}
	c.mustCrictl("pull", "busybox")
	out := c.mustCrictl("images")
	if !strings.Contains(out, "docker.io/library/busybox") || !strings.Contains(out, "latest") {
		t.Fatalf("crictl images after pull:\n%s", out)
	}

	var inspect struct {
		Status struct {
			Id          string
			Size        string
			RepoDigests []string
		} `json:"status"`
		Info struct {
			ImageSpec struct {
				Config struct{ Cmd []string }
			} `json:"imageSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(c.mustCrictl("inspecti", "busybox")), &inspect); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(inspect.Status.Id, "sha256:") || inspect.Status.Size == "0" ||
		len(inspect.Status.RepoDigests) != 1 || len(inspect.Info.ImageSpec.Config.Cmd) == 0 {
		t.Fatalf("inspecti: %+v", inspect)
	}

	var fsinfo struct {
		Status struct {
			ImageFilesystems []struct {
				UsedBytes, InodesUsed struct{ Value string }
			}
		}
	}
	if err := json.Unmarshal([]byte(c.mustCrictl("imagefsinfo")), &fsinfo); err != nil {
		t.Fatal(err)
	}
	if fs := fsinfo.Status.ImageFilesystems; len(fs) != 1 || fs[0].UsedBytes.Value == "0" || fs[0].InodesUsed.Value == "0" {
		t.Fatalf("imagefsinfo: %+v", fsinfo)
	}

	// rmi by a truncated ID, as users copy it from `crictl images`.
	c.mustCrictl("rmi", strings.TrimPrefix(inspect.Status.Id, "sha256:")[:13])
	if out := c.mustCrictl("images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("images after rmi: %q", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.root, "image", "layers")); len(entries) != 0 {
		t.Fatalf("layers left after rmi: %d", len(entries))
	}
}

func TestRestartAnswersAsBefore(t *testing.T) {
	c := newCrid(t, rig(t))
	// Docker and OCI manifests and indexes; gzip, zstd and uncompressed layers.
	refs := []string{"busybox:1.36", "registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9",
		"registry.k8s.io/e2e-test-images/httpd:2.4.39-4", "registry.k8s.io/e2e-test-images/nonewprivs:1.3"}
	for _, ref := range refs {
		c.mustCrictl("pull", ref)
	}
	before := c.mustCrictl("images", "-o", "json")

	stream, err := c.images().StreamImages(ctx(t), &runtimeapi.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	streamed := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		streamed += len(resp.Images)
	}
	if streamed != len(refs)-1 { // the two pause:3.9 names are one image
		t.Fatalf("StreamImages sent %d images, want %d", streamed, len(refs)-1)
	}
	filtered, err := c.images().ListImages(ctx(t), &runtimeapi.ListImagesRequest{
		Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "k8s.gcr.io/pause:3.9"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(filtered.Images) != 1 || len(filtered.Images[0].RepoTags) != 2 {
		t.Fatalf("ListImages filtered by k8s.gcr.io/pause:3.9: %v", filtered.Images)
	}

	c.p.signal(syscall.SIGTERM)
	if code := c.p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("crid exited %d on SIGTERM:\n%s", code, c.p.out)
	}
	c.start()
	if after := c.mustCrictl("images", "-o", "json"); after != before {
		t.Fatalf("images changed across restart:\nbefore %s\nafter %s", before, after)
	}
}

// A crid killed in the middle of a pull leaves no partial image, and the
// next pull of the same image succeeds.
func TestKillDuringPull(t *testing.T) {
	hosts := rig(t, "--bench", "--throttle", "8000000")
	c := newCrid(t, hosts)
	const ref = "docker.io/library/crid-bench:5layers"

	ep := "unix://" + c.sock
	pull := exec.Command(bin.crictl, "--image-endpoint", ep, "--runtime-endpoint", ep, "--timeout", "5m", "pull", ref)
	pull.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pull.Process.Kill(); pull.Wait() }()

	// Kill once layers are being written.
	tmp := filepath.Join(c.root, "image", "tmp")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pull never started writing layers")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	c.p.signal(syscall.SIGKILL)
	pull.Process.Kill()
	pull.Wait()

	c.start()
	if out := c.mustCrictl("images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("partial image listed after restart: %q", out)
	}
	for _, d := range []string{"tmp", "layers", "blobs/sha256"} {
		if entries, _ := os.ReadDir(filepath.Join(c.root, "image", d)); len(entries) != 0 {
			t.Errorf("%s not empty after restart: %d entries", d, len(entries))
		}
	}
	c.mustCrictl("pull", ref)
	if out := c.mustCrictl("images"); !strings.Contains(out, "crid-bench") {
		t.Fatalf("images after second pull:\n%s", out)
	}
}

func TestImageOnlySocket(t *testing.T) {
	dir := t.TempDir()
	imgSock := filepath.Join(dir, "image.sock")
	c := newCrid(t, rig(t), "--image-listen", "unix://"+imgSock)
	waitFor(t, imgSock, c.p)
	if info, err := os.Stat(imgSock); err != nil || info.Mode().Perm() != 0o660 {
		t.Fatalf("image socket: %v %v", info.Mode(), err)
	}
	conn := dial(t, imgSock)
	if _, err := runtimeapi.NewImageServiceClient(conn).PullImage(ctx(t), &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/pause:3.9"}}); err != nil {
		t.Fatal(err)
	}
	_, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx(t), &runtimeapi.VersionRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("RuntimeService on the image socket: %v", err)
	}
	// The main socket sees the same store.
	if out := c.mustCrictl("images"); !strings.Contains(out, "registry.k8s.io/pause") {
		t.Fatalf("images on main socket:\n%s", out)
	}
}

func TestBadRequests(t *testing.T) {
	c := newCrid(t, rig(t))
	images := c.images()
	for name, call := range map[string]func() error{
		"pull without image": func() error {
			_, err := images.PullImage(ctx(t), &runtimeapi.PullImageRequest{})
			return err
		},
		"pull bad reference": func() error {
			_, err := images.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "Not A Ref"}})
			return err
		},
		"status without image": func() error {
			_, err := images.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{})
			return err
		},
		"remove without image": func() error {
			_, err := images.RemoveImage(ctx(t), &runtimeapi.RemoveImageRequest{})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := images.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/no-such-image:1"}}); status.Code(err) != codes.NotFound {
		t.Errorf("pull of a missing image: %v, want NotFound", err)
	}
	// An old API version gets a clear answer, not a silent hang.
	err := dial(t, c.sock).Invoke(ctx(t), "/runtime.v1alpha2.RuntimeService/Version", &runtimeapi.VersionRequest{}, &runtimeapi.VersionResponse{})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "CRI v1") {
		t.Errorf("v1alpha2 call: %v", err)
	}
	if out := c.mustCrictl("images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("bad requests changed the store: %q", out)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("root = \"/tmp/x\"\n[image]\nmirrors = []\n"), 0o644)
	out, err := exec.Command(bin.crid, "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `line 3 column 1: unknown key "image.mirrors"`) {
		t.Fatalf("crid with an unknown key: %v\n%s", err, out)
	}
	def, err := exec.Command(bin.crid, "config").Output()
	if err != nil || !strings.Contains(string(def), `listen = "unix:///run/crid/crid.sock"`) {
		t.Fatalf("crid config: %v\n%s", err, def)
	}
	// The printed defaults are a valid config file, and flags override it.
	good := filepath.Join(dir, "crid.toml")
	os.WriteFile(good, def, 0o644)
	c := newCrid(t, rig(t), "--config", good)
	var info struct {
		Config struct{ Root, Listen string } `json:"config"`
	}
	if err := json.Unmarshal([]byte(c.mustCrictl("info")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Config.Root != c.root || info.Config.Listen != "unix://"+c.sock {
		t.Fatalf("flags did not override the file: %+v", info.Config)
	}
}
