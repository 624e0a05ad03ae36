package namespaces

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root")
	}
}

// mountsUnder lists mount points in our mount namespace at or below dir.
func mountsUnder(tb testing.TB, dir string) []string {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// hostnameIn reads the hostname of the UTS namespace pinned at path. The
// thread that enters it is never unlocked, so Go discards it.
func hostnameIn(t *testing.T, path string) string {
	t.Helper()
	type res struct {
		name string
		err  error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(path)
		if err != nil {
			c <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWUTS); err != nil {
			c <- res{err: err}
			return
		}
		var u unix.Utsname
		err = unix.Uname(&u)
		c <- res{name: string(bytes.TrimRight(u.Nodename[:], "\x00")), err: err}
	}()
	r := <-c
	if r.err != nil {
		t.Fatalf("read hostname in %s: %v", path, r.err)
	}
	return r.name
}

func nsIno(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestCreateRemove(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name     string
		kinds    []Kind
		hostname string
		wantErr  bool
	}{
		{name: "all", kinds: []Kind{Net, IPC, UTS}, hostname: "pod-a"},
		{name: "net only", kinds: []Kind{Net}},
		{name: "uts and ipc", kinds: []Kind{IPC, UTS}, hostname: "pod-b"},
		{name: "unknown kind", kinds: []Kind{Net, "pid"}, wantErr: true},
		{name: "no kinds", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ns")
			t.Cleanup(func() { _ = Remove(dir) })

			pinned, err := Create(dir, tt.kinds, tt.hostname)
			if tt.wantErr {
				if err == nil {
					t.Fatal("Create succeeded, want error")
				}
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Errorf("dir left behind after failed Create: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if len(pinned) != len(tt.kinds) {
				t.Fatalf("pinned %v, want %d kinds", pinned, len(tt.kinds))
			}
			for _, k := range tt.kinds {
				if nsIno(t, pinned[k]) == nsIno(t, "/proc/self/ns/"+string(k)) {
					t.Errorf("%s pin is the host's namespace", k)
				}
			}
			if p, ok := pinned[Net]; ok {
				err := Do(p, func() error {
					lo, err := net.InterfaceByName("lo")
					if err != nil {
						return err
					}
					if lo.Flags&net.FlagUp == 0 {
						t.Errorf("lo is down in the new netns")
					}
					return nil
				})
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
			}
			if p, ok := pinned[UTS]; ok {
				if got := hostnameIn(t, p); got != tt.hostname {
					t.Errorf("hostname %q, want %q", got, tt.hostname)
				}
			}

			if err := Remove(dir); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if m := mountsUnder(t, dir); len(m) > 0 {
				t.Errorf("mounts left: %v", m)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("dir not removed: %v", err)
			}
			if err := Remove(dir); err != nil {
				t.Errorf("second Remove: %v", err)
			}
		})
	}
}

func TestCreateExistingPinFails(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	t.Cleanup(func() { _ = Remove(dir) })
	if err := os.WriteFile(filepath.Join(dir, "uts"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir, []Kind{Net, UTS}, "x"); err == nil {
		t.Fatal("Create over an existing pin file succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "net")); !os.IsNotExist(err) {
		t.Errorf("net pin left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "uts")); err != nil {
		t.Errorf("pre-existing file was removed: %v", err)
	}
	if m := mountsUnder(t, dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}

func BenchmarkCreateRemove(b *testing.B) {
	requireRoot(b)
	dir := filepath.Join(b.TempDir(), "ns")
	kinds := []Kind{Net, IPC, UTS}
	for b.Loop() {
		if _, err := Create(dir, kinds, "bench"); err != nil {
			b.Fatal(err)
		}
		if err := Remove(dir); err != nil {
			b.Fatal(err)
		}
	}
}
