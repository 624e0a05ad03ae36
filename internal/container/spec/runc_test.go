package spec

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// busyboxRootfs builds a rootfs of this host's dynamic /bin/busybox, its
// libraries and loader.
func busyboxRootfs(t *testing.T, dir string) {
	t.Helper()
	bb, err := filepath.EvalSymlinks("/bin/busybox")
	if err != nil {
		t.Skipf("no /bin/busybox: %v", err)
	}
	files := []string{bb}
	out, err := exec.Command("ldd", bb).Output()
	if err == nil {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
		// "/lib64/ld-linux-x86-64.so.2 (0x...)".
		for _, m := range regexp.MustCompile(`(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
			files = append(files, m[1])
		}
	}
	copyFile := func(src, dst string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(bb, filepath.Join(dir, "bin/busybox"))
	for _, f := range files[1:] {
		// Keep the path the binary asks for (the loader path is baked in).
		copyFile(f, filepath.Join(dir, f))
		if real, err := filepath.EvalSymlinks(f); err == nil && real != f {
			copyFile(real, filepath.Join(dir, real))
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "etc", "tmp", "mnt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
	writeFile(t, filepath.Join(dir, "etc/group"), "root:x:0:\nnobody:x:65534:\n")
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func randID(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestRuncRun checks that runc accepts and runs what Build produces.
func TestRuncRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("no runc")
	}
	hostCaps, err := HostCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	minAdj, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	_, swapErr := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")

	for _, tc := range []struct {
		name    string
		config  func(c *runtimeapi.ContainerConfig, p *runtimeapi.PodSandboxConfig, vol string)
		command []string
	}{
		{name: "default", config: func(*runtimeapi.ContainerConfig, *runtimeapi.PodSandboxConfig, string) {}},
		{
			name: "hardened",
			config: func(c *runtimeapi.ContainerConfig, p *runtimeapi.PodSandboxConfig, vol string) {
				c.Linux = &runtimeapi.LinuxContainerConfig{
					SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
						ReadonlyRootfs: true,
						NoNewPrivs:     true,
						Seccomp:        &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
						Capabilities: &runtimeapi.Capability{
							DropCapabilities: []string{"NET_RAW", "CHOWN", "SETUID"},
							AddCapabilities:  []string{"NET_ADMIN"},
						},
						RunAsUser:          &runtimeapi.Int64Value{Value: 65534},
						SupplementalGroups: []int64{1234},
					},
					Resources: &runtimeapi.LinuxContainerResources{
						CpuShares: 512, CpuPeriod: 100000, CpuQuota: 50000,
						MemoryLimitInBytes: 64 << 20, OomScoreAdj: -999,
					},
				}
				c.Mounts = []*runtimeapi.Mount{
					{HostPath: vol, ContainerPath: "/mnt/vol", Readonly: true},
					{HostPath: vol, ContainerPath: "/mnt/rro", Readonly: true, RecursiveReadOnly: true},
				}
				p.Linux = &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}}
			},
			command: []string{"/bin/busybox", "sh", "-c",
				"test $(/bin/busybox id -u) = 65534 && ! /bin/busybox touch /x 2>/dev/null && " +
					"test -f /mnt/vol/f && ! /bin/busybox touch /mnt/rro/g 2>/dev/null && test $(/bin/busybox cat /proc/sys/kernel/shm_rmid_forced) = 1 && " +
					"/bin/busybox grep -q 'Seccomp:.*2' /proc/self/status"},
		},
		{
			name: "privileged",
			config: func(c *runtimeapi.ContainerConfig, p *runtimeapi.PodSandboxConfig, _ string) {
				c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}}
				p.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}}
			},
			command: []string{"/bin/busybox", "sh", "-c", "test -c /dev/null && /bin/busybox grep -q 'Seccomp:.*0' /proc/self/status"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "crid-spec-test-" + randID(t)
			bundle := t.TempDir()
			rootfs := filepath.Join(bundle, "rootfs")
			busyboxRootfs(t, rootfs)
			vol := t.TempDir()
			writeFile(t, filepath.Join(vol, "f"), "x")
			state := t.TempDir()

			cmd := tc.command
			if cmd == nil {
				cmd = []string{"/bin/busybox", "true"}
			}
			c := &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
				Command:  cmd,
			}
			p := &runtimeapi.PodSandboxConfig{
				Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
				Hostname: "spec-test",
			}
			tc.config(c, p, vol)
			cgroup := "/" + id
			s, _, err := Build(Input{
				ID: id, SandboxID: "sb", Config: c, Sandbox: p, RootFS: rootfs,
				CgroupsPath: cgroup, HostCapabilities: hostCaps, MinOOMScoreAdj: minAdj,
				SwapLimitSupported: swapErr == nil, SupportsRRO: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			data, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = exec.Command(runc, "--root", state, "delete", "-f", id).Run()
				removeCgroup(t, cgroup)
			})
			var out bytes.Buffer
			run := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id)
			run.Stdout, run.Stderr = &out, &out
			if err := run.Run(); err != nil {
				t.Fatalf("runc run: %v\n%s\nconfig.json:\n%s", err, out.String(), data)
			}
		})
	}
}

// removeCgroup removes the container's cgroup in every v1 controller and in
// the v2 hierarchy, whatever runc left behind.
func removeCgroup(t *testing.T, cgroup string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroup)
	if d := "/sys/fs/cgroup" + cgroup; !contains(dirs, d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			t.Logf("remove cgroup %s: %v", d, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
