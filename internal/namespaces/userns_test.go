package namespaces

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCreateWithUser(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "ns")
	t.Cleanup(func() { _ = Remove(dir) })
	maps := UserNS{
		UIDs: []IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDs: []IDMap{{ContainerID: 0, HostID: 200000, Size: 65536}},
	}
	pinned, err := CreateWithUser(dir, []Kind{Net, IPC, UTS}, "pod-u", maps)
	if err != nil {
		t.Fatalf("CreateWithUser: %v", err)
	}
	for _, k := range []Kind{User, Net, IPC, UTS} {
		if !Alive(pinned[k]) {
			t.Fatalf("%s not pinned: %v", k, pinned)
		}
	}
	// Each namespace is owned by the new user namespace.
	user := nsIno(t, pinned[User])
	for _, k := range []Kind{Net, IPC, UTS} {
		f, err := os.Open(pinned[k])
		if err != nil {
			t.Fatal(err)
		}
		owner, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_USERNS)
		f.Close()
		if err != nil {
			t.Fatalf("NS_GET_USERNS of %s: %v", k, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(owner, &st)
		unix.Close(owner)
		if err != nil || st.Ino != user {
			t.Errorf("%s namespace owned by user namespace %d, want %d (%v)", k, st.Ino, user, err)
		}
	}
	if got := hostnameIn(t, pinned[UTS]); got != "pod-u" {
		t.Errorf("hostname %q, want pod-u", got)
	}
	// A process that joins sees the maps.
	for file, want := range map[string]string{"uid_map": "0 100000 65536", "gid_map": "0 200000 65536"} {
		out, err := exec.Command("nsenter", "--user="+pinned[User], "--net="+pinned[Net], "cat", "/proc/self/"+file).CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter: %v: %s", err, out)
		}
		if got := strings.Join(strings.Fields(string(out)), " "); got != want {
			t.Errorf("%s %q, want %q", file, got, want)
		}
	}
	if err := Remove(dir); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if m := mountsUnder(t, dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}

func TestCreateWithUserBadMapFails(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "ns")
	// Two overlapping uid ranges: the kernel refuses the map.
	bad := UserNS{
		UIDs: []IDMap{{0, 100000, 65536}, {0, 300000, 65536}},
		GIDs: []IDMap{{0, 100000, 65536}},
	}
	if _, err := CreateWithUser(dir, []Kind{Net}, "", bad); err == nil {
		_ = Remove(dir)
		t.Fatal("CreateWithUser with overlapping maps succeeded")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dir left behind: %v", err)
	}
	if m := mountsUnder(t, dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}

func TestIDMapSupported(t *testing.T) {
	requireRoot(t)
	if err := IDMapSupported(t.TempDir()); err != nil {
		t.Skipf("idmapped mounts not supported here: %v", err)
	}
	if err := IDMapSupported("/nonexistent"); err == nil {
		t.Error("IDMapSupported of a missing path succeeded")
	}
}
