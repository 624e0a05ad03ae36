package spec

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/apparmor"
)

// fakeAppArmor is a host with AppArmor and these profiles loaded.
type fakeAppArmor struct {
	loaded []string
	err    error
}

func (f fakeAppArmor) IsLoaded(name string) (bool, error) {
	return slices.Contains(f.loaded, name), f.err
}

func TestAppArmorProfile(t *testing.T) {
	const (
		deny    = "cri-validate-apparmor-test-deny-write" // critest's
		missing = "non-existent-profile"
	)
	def := apparmor.DefaultProfile
	host := fakeAppArmor{loaded: []string{def, deny}}
	sp := func(typ runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: typ, LocalhostRef: ref}
	}
	field := func(p *runtimeapi.SecurityProfile) *runtimeapi.LinuxContainerSecurityContext {
		return &runtimeapi.LinuxContainerSecurityContext{Apparmor: p}
	}
	path := func(s string) *runtimeapi.LinuxContainerSecurityContext {
		return &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: s}
	}
	const (
		runtimeDefault = runtimeapi.SecurityProfile_RuntimeDefault
		unconfined     = runtimeapi.SecurityProfile_Unconfined
		localhost      = runtimeapi.SecurityProfile_Localhost
	)
	for _, tc := range []struct {
		name       string
		sc         *runtimeapi.LinuxContainerSecurityContext
		privileged bool
		host       AppArmorHost // nil: the test's host
		noAppArmor bool
		want       string
		wantErr    string
		// wantPrecondition: FailedPrecondition rather than InvalidArgument.
		wantPrecondition bool
	}{
		// Unset means RuntimeDefault, as in containerd.
		{name: "unset", want: def},
		{name: "unset privileged", privileged: true},
		{name: "unset without apparmor", noAppArmor: true},

		{name: "runtime default", sc: field(sp(runtimeDefault, "")), want: def},
		{name: "runtime default privileged", sc: field(sp(runtimeDefault, "")), privileged: true},
		{name: "runtime default without apparmor", sc: field(sp(runtimeDefault, "")), noAppArmor: true},
		{name: "runtime default not loaded", sc: field(sp(runtimeDefault, "")), host: fakeAppArmor{loaded: []string{deny}},
			wantErr: "crid-default is not loaded", wantPrecondition: true},
		{name: "runtime default with ref", sc: field(sp(runtimeDefault, deny)), wantErr: "localhost_ref set"},

		{name: "unconfined", sc: field(sp(unconfined, ""))},
		{name: "unconfined privileged", sc: field(sp(unconfined, "")), privileged: true},
		{name: "unconfined without apparmor", sc: field(sp(unconfined, "")), noAppArmor: true},
		{name: "unconfined with ref", sc: field(sp(unconfined, deny)), wantErr: "localhost_ref set"},

		{name: "localhost", sc: field(sp(localhost, deny)), want: deny},
		{name: "localhost with prefix", sc: field(sp(localhost, "localhost/"+deny)), want: deny},
		{name: "localhost privileged", sc: field(sp(localhost, deny)), privileged: true, want: deny},
		{name: "localhost default by name", sc: field(sp(localhost, def)), want: def},
		{name: "localhost not loaded", sc: field(sp(localhost, missing)), wantErr: `apparmor: AppArmor profile "non-existent-profile" is not loaded`},
		{name: "localhost not loaded with prefix", sc: field(sp(localhost, "localhost/"+missing)), wantErr: "not loaded"},
		{name: "localhost empty", sc: field(sp(localhost, "")), wantErr: "empty localhost_ref"},
		{name: "localhost prefix only", sc: field(sp(localhost, "localhost/")), wantErr: "empty localhost_ref"},
		{name: "localhost without apparmor", sc: field(sp(localhost, deny)), noAppArmor: true,
			wantErr: "AppArmor is not enabled on this host", wantPrecondition: true},
		{name: "unknown type", sc: field(sp(9, "")), wantErr: "unknown profile type"},

		{name: "deprecated runtime/default", sc: path("runtime/default"), want: def},
		{name: "deprecated runtime/default privileged", sc: path("runtime/default"), privileged: true},
		{name: "deprecated runtime/default without apparmor", sc: path("runtime/default"), noAppArmor: true},
		{name: "deprecated unconfined", sc: path("unconfined")},
		{name: "deprecated localhost", sc: path("localhost/" + deny), want: deny},
		{name: "deprecated localhost privileged", sc: path("localhost/" + deny), privileged: true, want: deny},
		{name: "deprecated localhost not loaded", sc: path("localhost/" + missing), wantErr: "apparmor_profile: AppArmor profile"},
		{name: "deprecated localhost empty", sc: path("localhost/"), wantErr: "apparmor_profile: empty"},
		{name: "deprecated localhost without apparmor", sc: path("localhost/" + deny), noAppArmor: true,
			wantErr: "not enabled", wantPrecondition: true},
		{name: "deprecated unknown", sc: path("docker/default"), wantErr: "apparmor_profile: unknown profile"},
		{name: "deprecated unknown without apparmor", sc: path(deny), noAppArmor: true, wantErr: "unknown profile"},

		// The field wins over the deprecated string, whatever either says
		// (critest's "runtime should prefer new apparmor field").
		{name: "field unconfined beats string", sc: &runtimeapi.LinuxContainerSecurityContext{
			Apparmor: sp(unconfined, ""), ApparmorProfile: "localhost/" + deny}},
		{name: "field localhost beats unloaded string", sc: &runtimeapi.LinuxContainerSecurityContext{
			Apparmor: sp(localhost, "localhost/"+deny), ApparmorProfile: "localhost/" + missing}, want: deny},
		{name: "unloaded field beats string", sc: &runtimeapi.LinuxContainerSecurityContext{
			Apparmor: sp(localhost, "localhost/"+missing), ApparmorProfile: "localhost/" + deny}, wantErr: "apparmor: AppArmor profile"},
		{name: "field beats bad string", sc: &runtimeapi.LinuxContainerSecurityContext{
			Apparmor: sp(runtimeDefault, ""), ApparmorProfile: "bogus"}, want: def},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h AppArmorHost = host
			switch {
			case tc.noAppArmor:
				h = nil
			case tc.host != nil:
				h = tc.host
			}
			got, err := appArmorProfile(tc.sc, tc.privileged, h)
			if !checkErr(t, err, tc.wantErr) {
				if tc.wantPrecondition != errdefs.IsFailedPrecondition(err) {
					t.Fatalf("error %q: FailedPrecondition is %v, want %v", err, errdefs.IsFailedPrecondition(err), tc.wantPrecondition)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("profile %q, want %q", got, tc.want)
			}
		})
	}
}

// A failure to read the loaded profiles is crid's, not the request's.
func TestAppArmorProfileReadError(t *testing.T) {
	readErr := errors.New("permission denied")
	for _, sc := range []*runtimeapi.LinuxContainerSecurityContext{
		nil,
		{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p"}},
	} {
		_, err := appArmorProfile(sc, false, fakeAppArmor{err: readErr})
		if !errors.Is(err, readErr) || errdefs.IsInvalidArgument(err) || errdefs.IsFailedPrecondition(err) {
			t.Errorf("err = %v", err)
		}
	}
}

func TestBuildAppArmor(t *testing.T) {
	in := testInput(t)
	if s, _, err := Build(in); err != nil || s.Process.ApparmorProfile != "" {
		t.Fatalf("without AppArmor: profile %q, err %v", s.Process.ApparmorProfile, err)
	}
	in.AppArmor = fakeAppArmor{loaded: []string{apparmor.DefaultProfile, "mine"}}
	if s, _, err := Build(in); err != nil || s.Process.ApparmorProfile != apparmor.DefaultProfile {
		t.Fatalf("default: profile %q, err %v", s.Process.ApparmorProfile, err)
	}
	secCtx(&in).ApparmorProfile = "localhost/mine"
	if s, _, err := Build(in); err != nil || s.Process.ApparmorProfile != "mine" {
		t.Fatalf("localhost: profile %q, err %v", s.Process.ApparmorProfile, err)
	}
	secCtx(&in).ApparmorProfile = "localhost/other"
	if _, _, err := Build(in); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("not loaded: err %v", err)
	}
}
