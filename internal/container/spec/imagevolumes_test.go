package spec

import (
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func imageMount(dst, sub string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: dst, Readonly: true, Image: &runtimeapi.ImageSpec{Image: "sha256:vol"}, ImageSubPath: sub}
}

// ImageMounts picks the image mounts out of the config's and refuses the
// ones no image volume can be.
func TestImageMounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mounts  []*runtimeapi.Mount
		want    []ImageMount
		wantErr string
	}{
		{name: "none", mounts: []*runtimeapi.Mount{{HostPath: "/tmp", ContainerPath: "/t"}}},
		{name: "root and sub paths", mounts: []*runtimeapi.Mount{
			{HostPath: "/tmp", ContainerPath: "/t"},
			imageMount("/a", ""),
			imageMount("/b", "etc/"),
			imageMount("/c", "./usr//share"),
			imageMount("/d", "."),
		}, want: []ImageMount{
			{Index: 1, Image: "sha256:vol"},
			{Index: 2, Image: "sha256:vol", SubPath: "etc"},
			{Index: 3, Image: "sha256:vol", SubPath: "usr/share"},
			{Index: 4, Image: "sha256:vol"},
		}},
		{name: "empty image spec is a host mount", mounts: []*runtimeapi.Mount{{HostPath: "/tmp", ContainerPath: "/t", Image: &runtimeapi.ImageSpec{}}}},
		{name: "writable", mounts: []*runtimeapi.Mount{{ContainerPath: "/a", Image: &runtimeapi.ImageSpec{Image: "x"}}},
			wantErr: "mounts[0].readonly: image volumes are always read-only"},
		{name: "host path too", mounts: []*runtimeapi.Mount{{HostPath: "/tmp", ContainerPath: "/a", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "x"}}},
			wantErr: "mounts[0].host_path: must be empty"},
		{name: "absolute sub path", mounts: []*runtimeapi.Mount{imageMount("/a", "/etc")}, wantErr: "not relative"},
		{name: "dotdot sub path", mounts: []*runtimeapi.Mount{imageMount("/a", "etc/../../x")}, wantErr: `contains ".."`},
		{name: "dotdot alone", mounts: []*runtimeapi.Mount{imageMount("/a", "..")}, wantErr: `contains ".."`},
		{name: "sub path without image", mounts: []*runtimeapi.Mount{{HostPath: "/tmp", ContainerPath: "/t", ImageSubPath: "etc"}},
			wantErr: "image_sub_path: set without an image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ImageMounts(&runtimeapi.ContainerConfig{Mounts: tc.mounts})
			if checkErr(t, err, tc.wantErr) && !slices.Equal(got, tc.want) {
				t.Errorf("image mounts %+v, want %+v", got, tc.want)
			}
			if tc.wantErr != "" && !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %v is no InvalidArgument", err)
			}
		})
	}
}

// Build binds each image mount's dir, as the caller mounted it, read-only
// like any bind mount, with the mount's options.
func TestBuildImageMounts(t *testing.T) {
	vol := t.TempDir()
	for _, tc := range []struct {
		name    string
		mount   *runtimeapi.Mount
		volumes map[int]string
		want    []string // the mount's options
		wantErr string
	}{
		{name: "bound read-only", mount: imageMount("/v", ""), volumes: map[int]string{0: vol}, want: []string{"rbind", "rprivate", "ro"}},
		{name: "with options", mount: &runtimeapi.Mount{ContainerPath: "/v", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "x"}, MountOptions: []string{"nodev"}},
			volumes: map[int]string{0: vol}, want: []string{"rbind", "rprivate", "ro", "nodev"}},
		{name: "not mounted", mount: imageMount("/v", ""), wantErr: `mounts[0].image: the image "sha256:vol" is not mounted`},
		{name: "writable", mount: &runtimeapi.Mount{ContainerPath: "/v", Image: &runtimeapi.ImageSpec{Image: "x"}}, volumes: map[int]string{0: vol},
			wantErr: "always read-only"},
		{name: "idmapped", mount: &runtimeapi.Mount{ContainerPath: "/v", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "x"},
			UidMappings: []*runtimeapi.IDMapping{{Length: 1}}}, volumes: map[int]string{0: vol}, wantErr: "need a pod with a user namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Config.Mounts = []*runtimeapi.Mount{tc.mount}
			in.ImageVolumes = tc.volumes
			s, _, err := Build(in)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			m := findMount(s, "/v")
			if m == nil || m.Type != "bind" || m.Source != vol || !slices.Equal(m.Options, tc.want) {
				t.Errorf("mount %+v, want a bind of %s with %v", m, vol, tc.want)
			}
		})
	}
}

// In a pod with a user namespace an image volume's mappings are checked but
// not handed to the runtime: an overlay cannot be idmapped, so the caller
// idmaps the image's layers under it instead.
func TestImageMountInUserNS(t *testing.T) {
	vol := t.TempDir()
	pod := podUserNS(65536, 65536)
	for _, tc := range []struct {
		name    string
		uids    []*runtimeapi.IDMapping
		wantErr string
	}{
		{name: "pod maps", uids: pod.GetUids()},
		{name: "none"},
		{name: "other maps", uids: []*runtimeapi.IDMapping{{HostId: 1000, Length: 65536}}, wantErr: "differ from the pod's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Namespaces.User = "/run/userns/p"
			in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: pod}}}
			m := imageMount("/v", "")
			m.UidMappings, m.GidMappings = tc.uids, tc.uids
			in.Config.Mounts = []*runtimeapi.Mount{m}
			in.ImageVolumes = map[int]string{0: vol}
			s, _, err := Build(in)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if got := findMount(s, "/v"); got == nil || got.UIDMappings != nil || got.GIDMappings != nil {
				t.Errorf("image volume mount %+v, want one without idmapping", got)
			}
		})
	}
}
