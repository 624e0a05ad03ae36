// Package ocitest builds throw-away OCI bundles for tests that run real
// containers: the rootfs is this host's dynamically linked /bin/busybox with
// the libraries it needs, so no image is required.
package ocitest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Applets are the busybox applets linked into the rootfs.
var Applets = []string{"sh", "echo", "sleep", "cat", "true", "false", "ls", "ps", "pgrep", "head", "yes"}

// Skip skips the test unless it runs as root with runc, conmon and busybox.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, bin := range []string{"runc", "conmon", "/bin/busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
}

// Bundle makes a bundle running args (default: sh) and returns its
// directory. See BundleWith.
func Bundle(t testing.TB, args ...string) string {
	t.Helper()
	return BundleWith(t, nil, args...)
}

// BundleWith makes a bundle whose config.json runs args, after mutate (if
// not nil) changed the spec. The spec's cgroupsPath is a unique
// /crid-oci-test-<rand>; its cgroup directories are removed at cleanup,
// which runs after the test's own cleanups registered later (delete the
// container in those).
func BundleWith(t testing.TB, mutate func(*specs.Spec), args ...string) string {
	t.Helper()
	if len(args) == 0 {
		args = []string{"sh"}
	}
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := buildRootfs(rootfs); err != nil {
		t.Fatalf("build rootfs: %v", err)
	}
	spec := Spec(rootfs, "/crid-oci-test-"+randHex(6), args...)
	if mutate != nil {
		mutate(spec)
	}
	b, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	cg := spec.Linux.CgroupsPath
	t.Cleanup(func() { RemoveCgroup(cg) })
	return dir
}

// Spec is a minimal runtime spec for a busybox rootfs: new pid, mount,
// ipc, uts and network namespaces, the default mounts, no seccomp.
func Spec(rootfs, cgroupsPath string, args ...string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin", "HOME=/"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  []string{"CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"},
				Effective: []string{"CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"},
				Permitted: []string{"CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"},
			},
		},
		Root:     &specs.Root{Path: rootfs},
		Hostname: "ocitest",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// RemoveCgroup removes a cgroupfs path from every hierarchy under
// /sys/fs/cgroup (best effort; runc normally did it already).
func RemoveCgroup(path string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*")
	dirs = append(dirs, "/sys/fs/cgroup")
	for _, d := range dirs {
		_ = os.Remove(filepath.Join(d, path))
	}
}

var lddLine = regexp.MustCompile(`(/\S+)\s+\(0x`)

// buildRootfs copies busybox and what `ldd /bin/busybox` lists.
func buildRootfs(rootfs string) error {
	out, err := exec.Command("ldd", "/bin/busybox").Output()
	if err != nil {
		return err
	}
	files := []string{"/bin/busybox"}
	for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
		files = append(files, m[1])
	}
	for _, f := range files {
		if err := copyFile(f, filepath.Join(rootfs, f)); err != nil {
			return err
		}
	}
	for _, d := range []string{"proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	for _, a := range Applets {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, fi.Mode().Perm())
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ID returns a random container ID with the given prefix.
func ID(prefix string) string { return prefix + randHex(8) }

// CgroupsPath returns the cgroupsPath of the bundle's config.json.
func CgroupsPath(t testing.TB, bundle string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s.Linux.CgroupsPath
}
