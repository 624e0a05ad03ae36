package spec

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testInput is a minimal valid Input with a rootfs holding passwd/group.
func testInput(t *testing.T) Input {
	t.Helper()
	root := t.TempDir()
	writeFile(t, root+"/etc/passwd", strings.Join([]string{
		"root:x:0:0:root:/root:/bin/sh",
		"alice:x:1000:1000::/home/alice:/bin/sh",
		"bob:x:1001:1001::/home/bob:/bin/sh",
		"nobody:x:65534:65534:nobody:/:/bin/false",
	}, "\n")+"\n")
	writeFile(t, root+"/etc/group", strings.Join([]string{
		"root:x:0:",
		"wheel:x:10:alice",
		"alice:x:1000:",
		"bob:x:1001:",
		"devs:x:50000:alice,bob",
		"nogroup:x:65534:",
	}, "\n")+"\n")
	return Input{
		ID:        "ctr",
		SandboxID: "sb",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image:    &runtimeapi.ImageSpec{Image: "sha256:abc", UserSpecifiedImage: "busybox:latest"},
			Command:  []string{"/bin/true"},
		},
		Sandbox: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "uid"},
			Hostname: "pod-host",
		},
		RootFS:         root,
		CgroupsPath:    "/kubepods/ctr",
		MinOOMScoreAdj: -1000,
	}
}

// secCtx returns in's container security context, creating it.
func secCtx(in *Input) *runtimeapi.LinuxContainerSecurityContext {
	if in.Config.Linux == nil {
		in.Config.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if in.Config.Linux.SecurityContext == nil {
		in.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
	}
	return in.Config.Linux.SecurityContext
}

// checkErr fails unless err matches want: "" for success, else a substring
// of the message; every failure must be classified by an errdefs kind.
func checkErr(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return true
	}
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if !errdefs.IsInvalidArgument(err) && !errdefs.IsFailedPrecondition(err) && !errdefs.IsNotImplemented(err) {
		t.Fatalf("error %q has no errdefs kind", err)
	}
	return false
}

func TestBuildDefaults(t *testing.T) {
	in := testInput(t)
	s, u, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != in.RootFS || s.Root.Readonly {
		t.Errorf("root = %+v", s.Root)
	}
	if s.Process.NoNewPrivileges || s.Process.Terminal {
		t.Errorf("process = %+v", s.Process)
	}
	if s.Linux.Seccomp != nil {
		t.Error("seccomp set without a profile")
	}
	if !slices.Equal(s.Linux.MaskedPaths, defaultMaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, defaultReadonlyPaths) {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if s.Linux.CgroupsPath != "/kubepods/ctr" {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	if got := u.GetLinux(); got.GetUid() != 0 || got.GetGid() != 0 || !slices.Equal(got.GetSupplementalGroups(), []int64{0}) {
		t.Errorf("user = %v", got)
	}
	if *s.Process.OOMScoreAdj != 0 {
		t.Errorf("oom_score_adj = %d", *s.Process.OOMScoreAdj)
	}
	want := map[string]string{
		AnnotationContainerType: "container", AnnotationSandboxID: "sb", AnnotationSandboxName: "p",
		AnnotationSandboxNamespace: "ns", AnnotationSandboxUID: "uid", AnnotationContainerName: "c",
		AnnotationImageName: "busybox:latest",
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
}

func TestBuildAnnotationsCannotSpoof(t *testing.T) {
	in := testInput(t)
	in.Config.Annotations = map[string]string{AnnotationSandboxID: "evil", "user": "kept"}
	s, _, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Annotations[AnnotationSandboxID] != "sb" || s.Annotations["user"] != "kept" {
		t.Errorf("annotations = %v", s.Annotations)
	}
}

func TestBuildPrivileged(t *testing.T) {
	for _, tc := range []struct {
		name         string
		podPrivilege bool
		wantErr      string
	}{
		{"privileged pod", true, ""},
		{"unprivileged pod", false, "non-privileged pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			sc := secCtx(&in)
			sc.Privileged = true
			sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			sc.MaskedPaths = []string{"/proc/kcore"}
			in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: tc.podPrivilege},
			}
			in.HostCapabilities = []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}
			s, _, err := Build(in)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if s.Linux.Seccomp != nil || s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil {
				t.Error("privileged container is confined")
			}
			if !slices.Equal(s.Process.Capabilities.Bounding, in.HostCapabilities) {
				t.Errorf("caps = %v", s.Process.Capabilities.Bounding)
			}
			if len(s.Linux.Devices) == 0 || !slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" }) {
				t.Errorf("host devices missing: %d", len(s.Linux.Devices))
			}
			if slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool {
				return strings.HasPrefix(d.Path, "/dev/pts/") || d.Path == "/dev/console"
			}) {
				t.Error("pts or console copied")
			}
			if r := s.Linux.Resources.Devices; len(r) != 1 || !r[0].Allow || r[0].Access != "rwm" {
				t.Errorf("device rules = %+v", r)
			}
			for _, m := range s.Mounts {
				if (m.Type == "sysfs" || m.Type == "cgroup") && !slices.Contains(m.Options, "rw") {
					t.Errorf("%s not rw: %v", m.Destination, m.Options)
				}
			}
		})
	}
}

func TestBuildNilInput(t *testing.T) {
	_, _, err := Build(Input{})
	checkErr(t, err, "config")
	_, _, err = Build(Input{Config: &runtimeapi.ContainerConfig{}})
	checkErr(t, err, "sandbox_config")
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Error("not invalid argument")
	}
}
