package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crid-project/crid/internal/config"
)

// fakeNode lays out the /proc and /sys files the facts are read from.
func fakeNode(t *testing.T, files map[string]string) Paths {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Paths{Proc: filepath.Join(dir, "proc"), Sys: filepath.Join(dir, "sys")}
}

func TestFacts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		fact  func(Paths) Fact
		ok    bool
	}{
		{"overlay present", map[string]string{"proc/filesystems": "nodev\tsysfs\n\text4\nnodev\toverlay\n"}, func(p Paths) Fact { return fsFact(p, "overlay", true) }, true},
		{"overlay absent", map[string]string{"proc/filesystems": "nodev\tsysfs\n\text4\n"}, func(p Paths) Fact { return fsFact(p, "overlay", true) }, false},
		{"no /proc/filesystems", nil, func(p Paths) Fact { return fsFact(p, "overlay", true) }, false},
		{"apparmor enabled", map[string]string{"sys/module/apparmor/parameters/enabled": "Y\n"}, apparmorFact, true},
		{"apparmor disabled", map[string]string{"sys/module/apparmor/parameters/enabled": "N\n"}, apparmorFact, false},
		{"apparmor absent", nil, apparmorFact, false},
		{"selinux enforcing", map[string]string{"sys/fs/selinux/enforce": "1\n"}, selinuxFact, true},
		{"selinux absent", nil, selinuxFact, false},
	} {
		if f := tc.fact(fakeNode(t, tc.files)); f.OK != tc.ok || f.Detail == "" {
			t.Errorf("%s: %+v, want ok %v", tc.name, f, tc.ok)
		}
	}
}

// A default runtime or monitor that does not resolve fails the check; a
// missing extra handler does not.
func TestCheckFatal(t *testing.T) {
	cfg := config.Default()
	cfg.Root, cfg.State = t.TempDir(), filepath.Join(t.TempDir(), "state", "not", "yet")
	cfg.Runtimes = map[string]config.Runtime{"runc": {Path: "/bin/true"}, "extra": {Path: "/nonexistent/extra"}}
	cfg.ConmonPath = "/bin/true"
	p := fakeNode(t, map[string]string{"proc/filesystems": "nodev\toverlay\n"})
	p.Sys = "/sys" // cgroups are read from the real node
	facts := Check(context.Background(), cfg, func() (bool, string, string) { return false, "NetworkPluginNotReady", "no config" }, p)
	if Failed(facts) {
		var b bytes.Buffer
		Print(&b, facts)
		t.Fatalf("a usable node failed:\n%s", &b)
	}
	cfg.ConmonPath = "/nonexistent/conmon"
	facts = Check(context.Background(), cfg, nil, p)
	if !Failed(facts) {
		t.Fatal("a node without conmon passed")
	}
	var b bytes.Buffer
	Print(&b, facts)
	for _, want := range []string{"MISSING  conmon", "no       runtime handler extra", "ok       runtime handler runc"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, &b)
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"6.1.0-50-amd64", true}, {"5.19.0", true}, {"5.15.0-91-generic", false}, {"4.19.0", false}, {"junk", false}, {"10.0", true},
	} {
		if got := kernelAtLeast(tc.release, 5, 19); got != tc.want {
			t.Errorf("%s: %v", tc.release, got)
		}
	}
}
