// Package e2e drives a real crid, started as its own process, over its CRI
// socket with crictl and a gRPC client, against the offline test rig's
// registry. The tests need root; test/run.sh runs them with
// CRID_E2E_REQUIRED=1 so that a missing tool fails instead of skipping.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var bin struct{ crid, cridCrash, rig, crictl, cniDir, nriPlugin string }

// netns is the network namespace every daemon of the tests runs in, entered
// with nsenter (which, unlike `ip netns exec`, keeps the host mount
// namespace: runc needs its cgroup mounts). Bridges, veths and iptables
// rules the CNI plugins make go away with it.
var netns string

// cgroupParent is the cgroup the tests' pods live under (cgroupfs driver);
// removed at the end. With the systemd driver it is the slice
// crid_e2e_<pid>.slice (podParent), stopped at the end.
var cgroupParent = fmt.Sprintf("/crid-e2e-%d", os.Getpid())

// driver is the cgroup driver every crid of the tests runs with:
// CRID_E2E_CGROUP_DRIVER, else the one crid picks for this host (systemd
// when systemd booted it).
var driver = os.Getenv("CRID_E2E_CGROUP_DRIVER")

// topSlice is the tests' slice with the systemd driver.
var topSlice = fmt.Sprintf("crid_e2e_%d", os.Getpid())

// podParent is the cgroup parent the kubelet would give pod name, for the
// driver in use: a cgroupfs path, or a slice name.
func podParent(name string) string {
	if driver == "systemd" {
		return topSlice + "-" + strings.ReplaceAll(name, "-", "_") + ".slice"
	}
	return cgroupParent + "/" + name
}

// podCgroupDir is pod name's cgroup as a path below a hierarchy's root.
func podCgroupDir(name string) string {
	if driver == "systemd" {
		return "/" + topSlice + ".slice/" + podParent(name)
	}
	return podParent(name)
}

// cgroupName is the cgroup dir name of a container (prefix "crid") or of
// its monitor ("crid-conmon") for the driver in use.
func cgroupName(prefix, id string) string {
	if driver == "systemd" {
		return prefix + "-" + id + ".scope"
	}
	return prefix + "-" + id
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	required := os.Getenv("CRID_E2E_REQUIRED") == "1"
	skip := func(why string) int {
		if required {
			fmt.Fprintln(os.Stderr, "e2e:", why)
			return 1
		}
		fmt.Fprintln(os.Stderr, "e2e: skipped:", why)
		return 0
	}
	if os.Getuid() != 0 {
		return skip("needs root")
	}
	top, err := filepath.Abs("../..")
	if err != nil {
		return skip(err.Error())
	}
	if driver == "" {
		driver = "cgroupfs"
		if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
			driver = "systemd"
		}
	}
	bin.crictl = filepath.Join(top, "_output/bin/crictl")
	if _, err := os.Stat(bin.crictl); err != nil {
		if bin.crictl, err = exec.LookPath("crictl"); err != nil {
			return skip("crictl not found: run hack/install-deps.sh")
		}
	}
	// CRID_E2E_BIN: binaries built beforehand (the guest VM has no Go
	// toolchain), under the names below.
	dir := os.Getenv("CRID_E2E_BIN")
	prebuilt := dir != ""
	if !prebuilt {
		if dir, err = os.MkdirTemp("", "crid-e2e-bin-"); err != nil {
			return skip(err.Error())
		}
		defer os.RemoveAll(dir)
	}
	bin.crid = filepath.Join(dir, "crid")
	bin.cridCrash = filepath.Join(dir, "crid-crashpoints")
	bin.rig = filepath.Join(dir, "rig")
	bin.cniDir = filepath.Join(dir, "cni")
	bin.nriPlugin = filepath.Join(dir, "nriplugin")
	// crid runs under the race detector here: the e2e tests are where its
	// managers meet real concurrency.
	for _, b := range []struct {
		out, pkg, tags string
		race           bool
	}{
		{bin.crid, "./cmd/crid", "", true},
		{bin.cridCrash, "./cmd/crid", "crashpoints", true},
		{bin.rig, "./test/rig/cmd/rig", "", false},
		{filepath.Join(bin.cniDir, "cnihang"), "./test/e2e/cnihang", "", false},
		{bin.nriPlugin, "./test/e2e/nriplugin", "", false},
	} {
		if prebuilt {
			if _, err := os.Stat(b.out); err != nil {
				return skip(fmt.Sprintf("CRID_E2E_BIN: %v", err))
			}
			continue
		}
		args := []string{"build", "-tags", b.tags, "-o", b.out}
		if b.race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Dir = top
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	netns = fmt.Sprintf("crid-e2e-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", netns).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v: %s", err, out)
		return 1
	}
	defer exec.Command("ip", "netns", "delete", netns).Run()
	exec.Command("ip", "-n", netns, "link", "set", "lo", "up").Run()
	defer removeCgroups(cgroupParent)
	if driver == "systemd" {
		defer exec.Command("systemctl", "stop", topSlice+".slice").Run()
	}
	return m.Run()
}

// proc is a process a test started; Stop ends it by PID.
type proc struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

// start runs a program inside the tests' network namespace.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, name, args...)
}

func startEnv(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command("nsenter", append([]string{"--net=/run/netns/" + netns, name}, args...)...), out: &bytes.Buffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), p.out)
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(sig)
		p.cmd.Wait()
	}
}

// rig starts the test registry on a free loopback port and returns the
// hosts.toml directory that points the upstream registries at it.
func rig(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	hosts, ready := filepath.Join(dir, "hosts"), filepath.Join(dir, "ready")
	p := start(t, bin.rig, append([]string{"serve", "--addr", "127.0.0.1:0", "--hosts-dir", hosts, "--ready-file", ready}, args...)...)
	waitFor(t, ready, p)
	return hosts
}

// crid is one crid daemon's directories and process.
type crid struct {
	t                             *testing.T
	dir, root, state, sock, hosts string
	netConf, ipam                 string
	extra                         []string
	p                             *proc
}

func newCrid(t *testing.T, hosts string, extra ...string) *crid {
	dir := t.TempDir()
	// The root of a pod in a user namespace is nobody on the host: the
	// runtime, as that root, reaches the rootfs through these dirs (as
	// through /run/crid, 0711).
	os.Chmod(filepath.Dir(dir), 0o711)
	os.Chmod(dir, 0o711)
	c := &crid{t: t, dir: dir, root: filepath.Join(dir, "root"), state: filepath.Join(dir, "state"),
		sock: filepath.Join(dir, "crid.sock"), hosts: hosts, extra: extra,
		netConf: filepath.Join(dir, "net.d"), ipam: filepath.Join(dir, "ipam")}
	os.MkdirAll(c.netConf, 0o755)
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "e2e", "plugins": [
  {"type": "bridge", "bridge": "e2e0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.77.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}]}`, c.ipam)
	os.WriteFile(filepath.Join(c.netConf, "10-e2e.conflist"), []byte(conf), 0o644)
	c.start()
	t.Cleanup(func() {
		// Containers outlive crid: remove the pods while it runs.
		if c.p.cmd.ProcessState == nil {
			c.crictl("rmp", "-fa")
		}
	})
	return c
}

// start starts crid and waits until it has reconciled what it found.
func (c *crid) start() {
	c.startWith(bin.crid)
	c.waitRecovered()
}

// recovered reports whether crid answers that it has nothing left to
// recover.
func (c *crid) recovered() bool {
	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := runtimeapi.NewRuntimeServiceClient(conn).Status(cctx, &runtimeapi.StatusRequest{Verbose: true})
	return err == nil && resp.Info["recovering"] == `{"containers":0,"pods":0}`
}

// waitRecovered waits until crid's start-up reconciler has seen every
// object (Status verbose info "recovering").
func (c *crid) waitRecovered() {
	c.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if c.recovered() {
			return
		}
		if c.p.cmd.ProcessState != nil || c.p.cmd.Process.Signal(syscall.Signal(0)) != nil {
			c.t.Fatalf("crid exited while recovering:\n%s", c.p.out)
		}
		if time.Now().After(deadline) {
			c.t.Fatal("crid still recovering after 3 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startWith starts crid from binary, with env, on the test's directories.
func (c *crid) startWith(binary string, env ...string) {
	c.t.Helper()
	os.Remove(c.sock)
	c.p = startEnv(c.t, env, binary, c.args()...)
	waitFor(c.t, c.sock, c.p)
}

// args are crid's arguments for the test's directories.
func (c *crid) args() []string {
	return append([]string{"--root", c.root, "--state", c.state, "--listen", "unix://" + c.sock,
		"--registry-config-dir", c.hosts, "--cni-conf-dir", c.netConf, "--log-level", "debug",
		"--cgroup-driver", driver, "--nri-socket", filepath.Join(c.dir, "nri.sock")}, c.extra...)
}

func (c *crid) crictl(args ...string) (string, error) {
	ep := "unix://" + c.sock
	cmd := exec.Command(bin.crictl, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("crictl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (c *crid) mustCrictl(args ...string) string {
	c.t.Helper()
	out, err := c.crictl(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func dial(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (c *crid) images() runtimeapi.ImageServiceClient {
	return runtimeapi.NewImageServiceClient(dial(c.t, c.sock))
}

func waitFor(t *testing.T, path string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if p.cmd.ProcessState != nil || p.cmd.Process.Signal(syscall.Signal(0)) != nil {
			t.Fatalf("%s exited:\n%s", p.cmd.Path, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not ready: %s missing", p.cmd.Path, path)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// removeCgroups removes the (empty) cgroup dirs under parent in every
// hierarchy, children first.
func removeCgroups(parent string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		dir := filepath.Join(root, parent)
		var dirs []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i])
		}
	}
}
