package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usernsHandler is the runtime handler that runs pods in a user namespace
// here: runc 1.5, which hack/install-deps.sh builds (Debian's runc, the
// default handler, cannot idmap mounts).
const usernsHandler = "runc-userns"

// usernsRuntime is runc-userns's binary (the built-in configuration's).
const usernsRuntime = "/usr/local/libexec/crid/runc"

// requireUserNS skips a test of pods in a user namespace where the
// runc-userns handler is not installed (the guest node has Debian's
// runtimes only), and fails it where the tests must all run.
func requireUserNS(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(usernsRuntime); err != nil {
		msg := usernsRuntime + " (handler " + usernsHandler + ") is missing: run hack/install-deps.sh"
		if os.Getenv("CRID_E2E_REQUIRED") == "1" && os.Getenv("CRID_E2E_GUEST") == "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// A pod with hostUsers: false runs as host IDs of its own: its root is
// root inside (the image's files are root's), an idmapped volume shows the
// host's files as they are stored and stores the container's as they are,
// a volume without maps stores the container's files as the pod's host
// uid, an image volume is root's as its image says. It survives a kill -9
// of crid, and removal leaves no mount behind.
func TestUserNamespacePod(t *testing.T) {
	requireUserNS(t)
	c := newCrid(t, rig(t))
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	st, err := rt.Status(ctx(t), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	supported := false
	for _, h := range st.GetRuntimeHandlers() {
		if h.GetName() == usernsHandler && h.GetFeatures().GetUserNamespaces() {
			supported = true
		}
		if h.GetName() == "" && h.GetFeatures().GetUserNamespaces() {
			t.Errorf("the default handler (Debian's runc 1.1) reports user namespaces")
		}
	}
	if !supported {
		t.Fatalf("handler %s does not report user namespaces", usernsHandler)
	}
	const hostID = 200000
	mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: hostID, Length: 65536}}
	userns := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping}
	idmapped, plain := filepath.Join(c.dir, "idmapped"), filepath.Join(c.dir, "plain")
	os.MkdirAll(idmapped, 0o755)
	os.MkdirAll(plain, 0o777)
	os.Chmod(plain, 0o777)
	os.WriteFile(filepath.Join(idmapped, "host-file"), []byte("x"), 0o644)

	c.mustCrictl("pull", "busybox")
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "userns", Namespace: "e2e", Uid: "userns-uid"},
		Hostname:     "userns",
		LogDirectory: filepath.Join(c.dir, "logs", "userns"),
		Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: podParent("userns"), SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: userns}}},
	}
	// Debian's runc cannot run it: refused up front, nothing made.
	if _, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RunPodSandbox with the default handler: %v, want FailedPrecondition", err)
	}
	pod, err := rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: usernsHandler})
	if err != nil {
		t.Fatal(err)
	}
	runCtr := func(name, script string) string {
		t.Helper()
		cfg := &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Command:  []string{"sh", "-c", script},
			LogPath:  name + ".log",
			Mounts: []*runtimeapi.Mount{
				{HostPath: idmapped, ContainerPath: "/idmapped", UidMappings: mapping, GidMappings: mapping},
				{HostPath: plain, ContainerPath: "/plain"},
				// An image volume: its layers are idmapped as the rootfs's are.
				{ContainerPath: "/iv", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "busybox"}, UidMappings: mapping, GidMappings: mapping},
			},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: userns}}},
		}
		ctr, err := rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
			t.Fatal(err)
		}
		var logs string
		waitUntil(t, name+"'s report", func() bool {
			logs, _ = c.crictl("logs", ctr.ContainerId)
			return strings.Contains(logs, "done")
		})
		if !strings.Contains(strings.Join(strings.Fields(logs), " "), "0 200000 65536") {
			t.Errorf("%s: uid_map is not the pod's:\n%s", name, logs)
		}
		return logs
	}
	logs := runCtr("first", `cat /proc/self/uid_map; echo "id $(id -u)"; echo "etc $(stat -c %u /etc)"; echo "host-file $(stat -c %u /idmapped/host-file)"; echo "image-volume $(stat -c %u:%g /iv/bin)"
touch /etc/written && echo rootfs-writable; touch /idmapped/by-ctr /plain/by-ctr; hostname; echo done; exec sleep 3600`)
	for _, want := range []string{"id 0", "etc 0", "host-file 0", "image-volume 0:0", "rootfs-writable", "userns"} {
		if !strings.Contains(logs, want) {
			t.Errorf("container output lacks %q:\n%s", want, logs)
		}
	}
	owner := func(p string) uint32 {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Uid
	}
	if u := owner(filepath.Join(idmapped, "by-ctr")); u != 0 {
		t.Errorf("a file the pod's root wrote on an idmapped volume is stored as uid %d, want 0", u)
	}
	if u := owner(filepath.Join(plain, "by-ctr")); u != hostID {
		t.Errorf("a file the pod's root wrote on a plain volume is stored as uid %d, want %d", u, hostID)
	}

	// crid is killed and comes back: the pod and its user namespace stay,
	// and a new container joins the same one.
	c.p.signal(syscall.SIGKILL)
	c.start()
	if out := c.mustCrictl("ps", "-q", "--state", "running", "--pod", pod.PodSandboxId); strings.TrimSpace(out) == "" {
		t.Errorf("no running container in the pod after crid's restart")
	}
	runCtr("second", `cat /proc/self/uid_map; echo done; exec sleep 3600`)

	c.mustCrictl("rmp", "-f", pod.PodSandboxId)
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, c.dir) {
			t.Errorf("mount left after the pod's removal: %s", l)
		}
	}
}
