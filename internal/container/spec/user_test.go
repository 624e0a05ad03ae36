package spec

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestResolveUser(t *testing.T) {
	i64 := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	strict := runtimeapi.SupplementalGroupsPolicy_Strict
	for _, tc := range []struct {
		name      string
		sc        *runtimeapi.LinuxContainerSecurityContext
		imageUser string
		uid, gid  uint32
		groups    []uint32
		wantErr   string
	}{
		{name: "root by default", uid: 0, gid: 0, groups: []uint32{0}},
		{name: "run_as_user with memberships", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000)},
			uid: 1000, gid: 1000, groups: []uint32{10, 1000, 50000}},
		{name: "merge adds supplemental", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{1234}},
			uid: 1000, gid: 1000, groups: []uint32{10, 1000, 1234, 50000}},
		{name: "strict ignores /etc/group", sc: &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: i64(1000), SupplementalGroups: []int64{1234}, SupplementalGroupsPolicy: strict},
			uid: 1000, gid: 1000, groups: []uint32{1000, 1234}},
		{name: "run_as_username", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "bob"},
			uid: 1001, gid: 1001, groups: []uint32{1001, 50000}},
		{name: "run_as_group overrides", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1001), RunAsGroup: i64(1002)},
			uid: 1001, gid: 1002, groups: []uint32{1002, 50000}},
		{name: "unknown uid gets gid 0", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(4242)},
			uid: 4242, gid: 0, groups: []uint32{0}},
		{name: "cri beats image", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(0)}, imageUser: "alice", uid: 0, gid: 0, groups: []uint32{0}},
		{name: "image name", imageUser: "alice", uid: 1000, gid: 1000, groups: []uint32{10, 1000, 50000}},
		{name: "image uid", imageUser: "1001", uid: 1001, gid: 1001, groups: []uint32{1001, 50000}},
		{name: "image name:group", imageUser: "alice:devs", uid: 1000, gid: 50000, groups: []uint32{10, 50000}},
		{name: "image uid:gid", imageUser: "5:6", uid: 5, gid: 6, groups: []uint32{6}},
		{name: "image name:gid", imageUser: "bob:7", uid: 1001, gid: 7, groups: []uint32{7, 50000}},
		{name: "unknown username", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "mallory"}, wantErr: "run_as_username"},
		{name: "unknown image user", imageUser: "mallory", wantErr: "not found"},
		{name: "unknown image group", imageUser: "alice:nogrp", wantErr: "not found"},
		{name: "group without user", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: i64(5)}, wantErr: "run_as_group"},
		{name: "negative uid", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(-1)}, wantErr: "out of range"},
		{name: "huge uid", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1 << 40)}, wantErr: "out of range"},
		{name: "bad supplemental", sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{-3}}, wantErr: "supplemental_groups"},
		{name: "bad policy", sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroupsPolicy: 7}, wantErr: "supplemental_groups_policy"},
		{name: "malformed image user", imageUser: "a:b:c", wantErr: "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			u, err := resolveUser(in.RootFS, tc.sc, tc.imageUser)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.groups) {
				t.Errorf("got %d:%d %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, tc.uid, tc.gid, tc.groups)
			}
		})
	}
}

func TestResolveUserNoPasswd(t *testing.T) {
	u, err := resolveUser(t.TempDir(), &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 7}}, "")
	if err != nil || u.UID != 7 || u.GID != 0 {
		t.Fatalf("got %+v, %v", u, err)
	}
	_, err = resolveUser(t.TempDir(), nil, "someone")
	checkErr(t, err, "not found")
}

// A symlinked /etc/passwd must not make crid read the host's.
func TestResolveUserSymlinkEscape(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	_, err := resolveUser(root, &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "root"}, "")
	checkErr(t, err, "passwd")
}

func TestBuildContainerUser(t *testing.T) {
	in := testInput(t)
	sc := secCtx(&in)
	sc.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
	sc.SupplementalGroups = []int64{1234}
	s, u, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	l := u.GetLinux()
	if l.GetUid() != 1000 || l.GetGid() != 1000 || !slices.Equal(l.GetSupplementalGroups(), []int64{10, 1000, 1234, 50000}) {
		t.Errorf("user = %v", l)
	}
	if s.Process.User.UID != 1000 {
		t.Errorf("spec user = %+v", s.Process.User)
	}
}

// A FIFO as /etc/passwd must fail, not block.
func TestResolveUserFIFO(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644); err != nil {
		t.Skip(err)
	}
	_, err := resolveUser(root, &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "root"}, "")
	checkErr(t, err, "regular file")
}
