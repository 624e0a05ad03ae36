package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crierrors "k8s.io/cri-api/pkg/errors"

	"github.com/crid-project/crid/internal/image"
)

// addImage gives the fake image store an image named ref whose layers
// (bottom first) hold the given files; a value starting with "->" makes a
// symlink, one ending in "/" a dir.
func (h *harness) addImage(ref string, layers ...map[string]string) image.Image {
	h.t.Helper()
	img := image.Image{ID: digest.FromString("image " + ref)}
	for i, files := range layers {
		d := filepath.Join(h.dir, "vol-layers", ref, fmt.Sprint(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			h.t.Fatal(err)
		}
		for name, data := range files {
			p := filepath.Join(d, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				h.t.Fatal(err)
			}
			var err error
			switch {
			case strings.HasPrefix(data, "->"):
				err = os.Symlink(data[2:], p)
			case strings.HasSuffix(data, "/"):
				err = os.MkdirAll(p, 0o755)
			default:
				err = os.WriteFile(p, []byte(data), 0o644)
			}
			if err != nil {
				h.t.Fatal(err)
			}
		}
		diff := digest.FromString(d)
		img.Layers = append(img.Layers, diff)
		h.images.layers[diff] = d
	}
	if h.images.more == nil {
		h.images.more = map[string]image.Image{}
	}
	h.images.more[ref], h.images.more[img.ID.String()] = img, img
	return img
}

func volMount(dst, ref, sub string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: dst, Readonly: true, Image: &runtimeapi.ImageSpec{Image: ref}, ImageSubPath: sub}
}

func readSpec(t *testing.T, m *Manager, id string) specs.Spec {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(m.bundleDir(id), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// An image volume is the image's layers mounted read-only at a dir of the
// container's own, bound read-only into it, whole or at a sub path; the
// image is in use until the container is removed, and the status reports
// its ID.
func TestImageVolume(t *testing.T) {
	h := newHarness(t)
	vol := h.addImage("vol",
		map[string]string{"data/base": "bottom", "data/top": "old", "file": "f", "host": "->" + h.dir},
		map[string]string{"data/top": "new"})
	cfg := ctrConfig("reader")
	cfg.Mounts = []*runtimeapi.Mount{
		{HostPath: h.dir, ContainerPath: "/host"},
		volMount("/vol", "vol", ""),
		volMount("/data", vol.ID.String(), "data/"),
	}
	id, err := h.m.Create(bg, "pod-a", cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := h.record(id)
	if want := []ImageVolume{{1, vol.ID}, {2, vol.ID}}; !slices.Equal(rec.ImageVolumes, want) {
		t.Errorf("recorded image volumes %+v, want %+v", rec.ImageVolumes, want)
	}
	if !rec.Steps.Done(stepImageVolumes) {
		t.Errorf("steps %+v", rec.Steps)
	}
	root := h.m.volumeDir(id, 1)
	for _, f := range []struct{ path, want string }{{"data/base", "bottom"}, {"data/top", "new"}, {"file", "f"}} {
		if b, err := os.ReadFile(filepath.Join(root, f.path)); err != nil || string(b) != f.want {
			t.Errorf("%s in the volume: %q, %v; want %q", f.path, b, err, f.want)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into the volume: %v, want EROFS", err)
	}
	s := readSpec(t, h.m, id)
	for dst, src := range map[string]string{"/vol": root, "/data": filepath.Join(h.m.volumeDir(id, 2), "data")} {
		i := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == dst })
		if i < 0 || s.Mounts[i].Source != src || s.Mounts[i].Type != "bind" || !slices.Contains(s.Mounts[i].Options, "ro") {
			t.Errorf("mount of %s: %+v, want a read-only bind of %s", dst, s.Mounts, src)
		}
	}
	if cid, ok := h.m.InUse(vol.ID); !ok || cid != id {
		t.Errorf("InUse(volume image) = %q, %v", cid, ok)
	}
	c, err := h.m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	st := c.CRIStatus().Mounts
	if len(st) != 3 || st[0].GetImage() != nil || st[1].GetImage().GetImageRef() != vol.ID.String() ||
		st[2].GetImage().GetImageRef() != vol.ID.String() || st[2].GetImageSubPath() != "data/" {
		t.Errorf("status mounts %v", st)
	}
	if cfg := c.ContainerConfig(); cfg.Mounts[1].Image.ImageRef != "" {
		t.Error("the status changed the recorded config")
	}

	if err := h.m.Remove(bg, id); err != nil {
		t.Fatal(err)
	}
	h.assertGone(id)
	if _, ok := h.m.InUse(vol.ID); ok {
		t.Error("the volume's image is still in use")
	}
}

// Images of one layer, and of none, mount too (an overlay wants two lower
// dirs on older kernels: empty ones fill in).
func TestImageVolumeFewLayers(t *testing.T) {
	h := newHarness(t)
	h.addImage("one", map[string]string{"only": "1"})
	h.addImage("none")
	cfg := ctrConfig("few")
	cfg.Mounts = []*runtimeapi.Mount{volMount("/one", "one", ""), volMount("/none", "none", "")}
	id, err := h.m.Create(bg, "pod-a", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(h.m.volumeDir(id, 0), "only")); err != nil || string(b) != "1" {
		t.Errorf("one-layer volume: %q, %v", b, err)
	}
	if entries, err := os.ReadDir(h.m.volumeDir(id, 1)); err != nil || len(entries) != 0 {
		t.Errorf("empty image's volume: %v, %v", entries, err)
	}
	if err := h.m.Remove(bg, id); err != nil {
		t.Fatal(err)
	}
	h.assertGone(id)
}

// A mount no image volume can be is refused with the field named, and
// leaves nothing: no record, no mount, no dir.
func TestImageVolumeRefused(t *testing.T) {
	h := newHarness(t)
	h.addImage("vol", map[string]string{"etc/passwd": "root", "file": "f", "out": "->/", "host": "->" + h.dir})
	for _, tc := range []struct {
		name  string
		mount *runtimeapi.Mount
		is    func(error) bool
		want  string
	}{
		{"image not pulled", volMount("/v", "nope", ""), errdefs.IsNotFound, `mounts[0].image: image "nope" is not present: pull it first`},
		{"writable", &runtimeapi.Mount{ContainerPath: "/v", Image: &runtimeapi.ImageSpec{Image: "vol"}}, errdefs.IsInvalidArgument, "always read-only"},
		{"host path too", &runtimeapi.Mount{HostPath: h.dir, ContainerPath: "/v", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "vol"}},
			errdefs.IsInvalidArgument, "host_path: must be empty"},
		{"missing sub path", volMount("/v", "vol", "nope"), errdefs.IsInvalidArgument, `"nope" does not exist in the image`},
		{"sub path a file", volMount("/v", "vol", "file"), errdefs.IsInvalidArgument, "not a directory"},
		{"dotdot", volMount("/v", "vol", "etc/../.."), errdefs.IsInvalidArgument, `".."`},
		// The link to a host dir resolves inside the image, where it is not.
		{"symlink out of the image", volMount("/v", "vol", "host"), errdefs.IsInvalidArgument, "does not exist in the image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ctrConfig("refused")
			cfg.Mounts = []*runtimeapi.Mount{tc.mount}
			_, err := h.m.Create(bg, "pod-a", cfg)
			if err == nil || !tc.is(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: %v, want %q", err, tc.want)
			}
			if strings.Contains(tc.name, "sub path") && !errors.Is(err, crierrors.ErrImageVolumeMountFailed) {
				t.Errorf("%v is no ErrImageVolumeMountFailed", err)
			}
			if n := len(h.m.recs.List(nil)); n != 0 {
				t.Errorf("%d containers recorded", n)
			}
			if m := mountsUnder(t, h.dir); len(m) != 0 {
				t.Errorf("mounts left: %v", m)
			}
			if entries, _ := os.ReadDir(h.m.LayersDir()); len(entries) != 0 {
				t.Errorf("container dirs left: %v", entries)
			}
		})
	}
	// A symlink that points up resolves to the image's root.
	cfg := ctrConfig("linked")
	cfg.Mounts = []*runtimeapi.Mount{volMount("/v", "vol", "out/etc")}
	id, err := h.m.Create(bg, "pod-a", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if src := readSpec(t, h.m, id).Mounts; !slices.ContainsFunc(src, func(m specs.Mount) bool {
		return m.Destination == "/v" && m.Source == filepath.Join(h.m.volumeDir(id, 0), "etc")
	}) {
		t.Errorf("mounts %+v: /v not bound to the image's etc", src)
	}
}

// A create cut after the volumes were mounted is undone by the next
// start, and a volume no record owns is unmounted by the sweep.
func TestImageVolumeRecovery(t *testing.T) {
	h := newHarness(t)
	vol := h.addImage("vol", map[string]string{"file": "f"}, map[string]string{"other": "o"})
	g := h.rt.hold(&h.rt.createG)
	done := make(chan error, 1)
	cfg := ctrConfig("cut")
	cfg.Mounts = []*runtimeapi.Mount{volMount("/v", "vol", "")}
	go func() {
		_, err := h.m.Create(bg, "pod-a", cfg)
		done <- err
	}()
	id := recv(t, g.entered, "runtime create")
	mid := h.record(id)
	if !mid.Steps.Done(stepImageVolumes) || !mounted(t, h.m.volumeDir(id, 0)) {
		t.Fatalf("mid-create: steps %+v, volume mounted %v", mid.Steps, mounted(t, h.m.volumeDir(id, 0)))
	}
	h.rt.unhold()
	g.open()
	if err := recv(t, done, "end of the create"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.recs.Update(id, func(v *Container) error { *v = mid; return nil }); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if _, ok := h.m.InUse(vol.ID); !ok {
		t.Error("the volume's image is not in use while the cut create is recovered")
	}
	h.m.Recover(bg)
	h.assertGone(id)
	if _, ok := h.m.InUse(vol.ID); ok {
		t.Error("the volume's image is still in use")
	}

	// A crash between the removal of a record and of its dirs.
	orphan := filepath.Join(h.m.LayersDir(), "orphan")
	if err := h.m.mountImage("orphan", filepath.Join(orphan, "volumes", "0"), vol.Layers, nil, ""); err != nil {
		t.Fatal(err)
	}
	h.m.Reconcile(bg)
	if m := mountsUnder(t, h.dir); len(m) != 0 {
		t.Errorf("mounts left after the sweep: %v", m)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan dir: %v", err)
	}
}
