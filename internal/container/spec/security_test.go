package spec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const blockChmod = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmodat"],"action":"SCMP_ACT_ERRNO"}]}`

func TestSeccomp(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "chmod.json"), blockChmod)
	writeFile(t, filepath.Join(dir, "bad.json"), "{")
	abs := filepath.Join(dir, "chmod.json")
	sp := func(typ runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: typ, LocalhostRef: ref}
	}
	for _, tc := range []struct {
		name       string
		sc         *runtimeapi.LinuxContainerSecurityContext
		root       string
		wantAction specs.LinuxSeccompAction // "" means no filter
		wantErr    string
	}{
		{name: "unset is unconfined"},
		{name: "unconfined", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(runtimeapi.SecurityProfile_Unconfined, "")}},
		// critest sends an empty SecurityProfile for "runtime default".
		{name: "runtime default", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}}, wantAction: specs.ActErrno},
		{name: "localhost absolute", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(runtimeapi.SecurityProfile_Localhost, abs)}, wantAction: specs.ActAllow},
		{name: "localhost relative", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(runtimeapi.SecurityProfile_Localhost, "chmod.json")}, root: dir, wantAction: specs.ActAllow},
		{name: "localhost relative without root", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(runtimeapi.SecurityProfile_Localhost, "chmod.json")}, wantErr: "relative"},
		{name: "localhost missing", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(runtimeapi.SecurityProfile_Localhost, "/nonexistent.json")}, wantErr: "read profile"},
		{name: "localhost malformed", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(runtimeapi.SecurityProfile_Localhost, filepath.Join(dir, "bad.json"))}, wantErr: "seccomp"},
		{name: "localhost device", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(runtimeapi.SecurityProfile_Localhost, "/dev/zero")}, wantErr: "regular file"},
		{name: "localhost empty ref", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(runtimeapi.SecurityProfile_Localhost, "")}, wantErr: "empty"},
		{name: "ref with wrong type", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(runtimeapi.SecurityProfile_RuntimeDefault, abs)}, wantErr: "localhost_ref"},
		{name: "unknown type", sc: &runtimeapi.LinuxContainerSecurityContext{Seccomp: sp(9, "")}, wantErr: "unknown profile type"},
		{name: "path runtime/default", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "runtime/default"}, wantAction: specs.ActErrno},
		{name: "path docker/default", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "docker/default"}, wantAction: specs.ActErrno},
		{name: "path unconfined", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "unconfined"}},
		{name: "path localhost", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "localhost/" + abs}, wantAction: specs.ActAllow},
		{name: "path unknown", sc: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "foo"}, wantErr: "seccomp_profile_path"},
		{name: "field beats path", sc: &runtimeapi.LinuxContainerSecurityContext{
			Seccomp: sp(runtimeapi.SecurityProfile_Unconfined, ""), SeccompProfilePath: "runtime/default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: defaultCaps}}}
			got, err := seccompProfile(tc.sc, s, tc.root)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if tc.wantAction == "" {
				if got != nil {
					t.Fatalf("got a filter, want none")
				}
				return
			}
			if got == nil || got.DefaultAction != tc.wantAction || len(got.Syscalls) == 0 {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

// A Localhost profile that is not a regular file of sane size fails at once
// with InvalidArgument: a FIFO used to block the create in open(2) forever.
func TestSeccompLocalhostFileKinds(t *testing.T) {
	dir := t.TempDir()
	valid := filepath.Join(dir, "valid.json")
	writeFile(t, valid, blockChmod)
	fifo := filepath.Join(dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	subdir := filepath.Join(dir, "dir.json")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Valid JSON padded past the bound, so only the size can reject it.
	large := filepath.Join(dir, "large.json")
	writeFile(t, large, blockChmod[:len(blockChmod)-1]+`,"x":"`+strings.Repeat("a", maxProfileSize)+`"}`)
	for _, tc := range []struct {
		name, ref, wantErr string
	}{
		{name: "valid", ref: valid},
		{name: "fifo", ref: fifo, wantErr: "not a regular file"},
		{name: "directory", ref: subdir, wantErr: "not a regular file"},
		{name: "too large", ref: large, wantErr: "larger than"},
		{name: "device", ref: "/dev/zero", wantErr: "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{
				ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: tc.ref}}
			s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: defaultCaps}}}
			type result struct {
				p   *specs.LinuxSeccomp
				err error
			}
			done := make(chan result, 1)
			go func() {
				p, err := seccompProfile(sc, s, "")
				done <- result{p, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Minute): // a hang, not a slow machine
				// Unblock the stuck open so the goroutine can end.
				if w, err := os.OpenFile(tc.ref, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				t.Fatalf("seccompProfile(%s) blocked", tc.ref)
			}
			if tc.wantErr == "" {
				if r.err != nil || r.p == nil || r.p.DefaultAction != specs.ActAllow {
					t.Fatalf("got %+v, %v", r.p, r.err)
				}
				return
			}
			if r.err == nil || !strings.Contains(r.err.Error(), tc.wantErr) || !errdefs.IsInvalidArgument(r.err) {
				t.Fatalf("error %v, want InvalidArgument containing %q", r.err, tc.wantErr)
			}
		})
	}
}

// The default profile allows some syscalls only with the matching capability.
func TestSeccompDefaultFollowsCapabilities(t *testing.T) {
	allowed := func(caps []string) bool {
		s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
		p, err := seccompProfile(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{}}, s, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range p.Syscalls {
			if sc.Action == specs.ActAllow && slices.Contains(sc.Names, "sethostname") {
				return true
			}
		}
		return false
	}
	if allowed(defaultCaps) {
		t.Error("sethostname allowed without CAP_SYS_ADMIN")
	}
	if !allowed(append(slices.Clone(defaultCaps), "CAP_SYS_ADMIN")) {
		t.Error("sethostname denied with CAP_SYS_ADMIN")
	}
}

func TestProcPaths(t *testing.T) {
	for _, tc := range []struct {
		name               string
		masked, readonly   []string
		wantMasked, wantRO []string
	}{
		{name: "unset gets defaults", wantMasked: defaultMaskedPaths, wantRO: defaultReadonlyPaths},
		{name: "replaced", masked: []string{"/bin/ls"}, readonly: []string{"/tmp"}, wantMasked: []string{"/bin/ls"}, wantRO: []string{"/tmp"}},
		{name: "only masked replaced", masked: []string{"/x"}, wantMasked: []string{"/x"}, wantRO: defaultReadonlyPaths},
		{name: "explicit empty", masked: []string{}, readonly: []string{}, wantMasked: []string{}, wantRO: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, r := procPaths(&runtimeapi.LinuxContainerSecurityContext{MaskedPaths: tc.masked, ReadonlyPaths: tc.readonly})
			if !slices.Equal(m, tc.wantMasked) || !slices.Equal(r, tc.wantRO) {
				t.Errorf("got %v %v", m, r)
			}
		})
	}
}

func TestBuildSecurityOptions(t *testing.T) {
	in := testInput(t)
	sc := secCtx(&in)
	sc.ReadonlyRootfs, sc.NoNewPrivs = true, true
	sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	s, _, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Root.Readonly || !s.Process.NoNewPrivileges || s.Linux.Seccomp == nil {
		t.Errorf("root %+v nnp %v seccomp %v", s.Root, s.Process.NoNewPrivileges, s.Linux.Seccomp != nil)
	}
}
