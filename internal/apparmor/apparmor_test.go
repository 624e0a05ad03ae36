package apparmor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// An excerpt of /sys/kernel/security/apparmor/profiles on Ubuntu with
// critest's profiles loaded.
const loadedProfiles = `cri-validate-apparmor-test-audit-write (enforce)
cri-validate-apparmor-test-deny-write (enforce)
/usr/lib/snapd/snap-confine//mount-namespace-capture-helper (enforce)
transmission-qt (complain)
`

// fakeHost is a host whose files are under a temp dir; a nil content
// leaves the file out.
func fakeHost(t *testing.T, enabled, profiles *string, parserFound bool) host {
	t.Helper()
	dir := t.TempDir()
	h := host{
		enabledFile:  filepath.Join(dir, "enabled"),
		profilesFile: filepath.Join(dir, "profiles"),
		lookPath: func(file string) (string, error) {
			if !parserFound || file != parser {
				return "", exec.ErrNotFound
			}
			return "/sbin/" + file, nil
		},
		install: func(string) error { return errors.New("unexpected install") },
	}
	for path, content := range map[string]*string{h.enabledFile: enabled, h.profilesFile: profiles} {
		if content != nil {
			if err := os.WriteFile(path, []byte(*content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return h
}

func ptr(s string) *string { return &s }

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name              string
		enabled, profiles *string
		parser            bool
		want              bool
	}{
		{name: "enabled", enabled: ptr("Y\n"), profiles: ptr(""), parser: true, want: true},
		{name: "disabled in kernel", enabled: ptr("N\n"), profiles: ptr(""), parser: true},
		{name: "no module", profiles: ptr(""), parser: true},
		{name: "no securityfs", enabled: ptr("Y\n"), parser: true},
		{name: "no apparmor_parser", enabled: ptr("Y\n"), profiles: ptr("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fakeHost(t, tc.enabled, tc.profiles, tc.parser).enabled(); got != tc.want {
				t.Fatalf("enabled() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIsLoaded(t *testing.T) {
	h := fakeHost(t, ptr("Y"), ptr(loadedProfiles), true)
	for name, want := range map[string]bool{
		"cri-validate-apparmor-test-deny-write":                       true,
		"/usr/lib/snapd/snap-confine//mount-namespace-capture-helper": true,
		"transmission-qt":            true,
		"cri-validate-apparmor-test": false,
		"(enforce)":                  false,
		"transmission-qt (complain)": false,
		"":                           false,
	} {
		got, err := h.isLoaded(name)
		if err != nil || got != want {
			t.Errorf("isLoaded(%q) = %v, %v; want %v", name, got, err, want)
		}
	}

	h = fakeHost(t, ptr("Y"), nil, true)
	if _, err := h.isLoaded("x"); err == nil {
		t.Fatal("no error without a profiles file")
	}
}

func TestEnsureDefault(t *testing.T) {
	t.Run("already loaded", func(t *testing.T) {
		h := fakeHost(t, ptr("Y"), ptr(loadedProfiles+DefaultProfile+" (enforce)\n"), true)
		if err := h.ensureDefault(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("loads it", func(t *testing.T) {
		h := fakeHost(t, ptr("Y"), ptr(loadedProfiles), true)
		var installed []string
		h.install = func(name string) error {
			installed = append(installed, name)
			return os.WriteFile(h.profilesFile, []byte(loadedProfiles+name+" (enforce)\n"), 0o644)
		}
		if err := h.ensureDefault(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(installed) != 1 || installed[0] != DefaultProfile {
			t.Fatalf("installed %q", installed)
		}
	})
	t.Run("parser fails", func(t *testing.T) {
		h := fakeHost(t, ptr("Y"), ptr(loadedProfiles), true)
		h.install = func(string) error { return errors.New("apparmor_parser: syntax error") }
		if err := h.ensureDefault(context.Background()); err == nil || !strings.Contains(err.Error(), "syntax error") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("parser loads nothing", func(t *testing.T) {
		h := fakeHost(t, ptr("Y"), ptr(loadedProfiles), true)
		h.install = func(string) error { return nil }
		if err := h.ensureDefault(context.Background()); err == nil || !strings.Contains(err.Error(), "not loaded") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no securityfs", func(t *testing.T) {
		h := fakeHost(t, ptr("Y"), nil, true)
		if err := h.ensureDefault(context.Background()); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		h := fakeHost(t, ptr("Y"), ptr(loadedProfiles), true)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := h.ensureDefault(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
}

// The real loader, with a fake apparmor_parser in PATH that keeps the
// generated profile: it is the library's template under crid's name.
func TestInstallDefaultProfile(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "profile")
	script := "#!/bin/sh\n[ \"$1\" = -Kr ] || exit 1\ncp \"$2\" " + out + "\n"
	if err := os.WriteFile(filepath.Join(dir, parser), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	if err := system.install(DefaultProfile); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"profile " + DefaultProfile + " flags=(attach_disconnected,mediate_deleted) {",
		"signal (send,receive) peer=" + DefaultProfile + ",",
		"ptrace (trace,read,tracedby,readby) peer=" + DefaultProfile + ",",
		"deny mount,",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("profile lacks %q:\n%s", want, b)
		}
	}
}
