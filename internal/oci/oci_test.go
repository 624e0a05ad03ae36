package oci_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/oci/ocitest"
)

type env struct {
	cfg oci.Config
	rt  *oci.Runtime
	h   oci.Handler
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ocitest.Skip(t)
	runc, _ := exec.LookPath("runc")
	base := t.TempDir()
	cfg := oci.Config{StateDir: filepath.Join(base, "state"), ExitDir: filepath.Join(base, "exits")}
	rt, err := oci.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return &env{cfg: cfg, rt: rt, h: oci.Handler{Name: "runc", Path: runc, Root: filepath.Join(base, "runc")}}
}

// run creates and starts a container and deletes it at cleanup.
func (e *env) run(t testing.TB, id, bundle, logPath string) int {
	t.Helper()
	ctx := context.Background()
	t.Cleanup(func() {
		if err := e.rt.Delete(context.Background(), id, e.h); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	})
	pid, err := e.rt.Create(ctx, oci.CreateOptions{ID: id, Handler: e.h, Bundle: bundle, LogPath: logPath})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := e.rt.Start(ctx, id, e.h); err != nil {
		t.Fatalf("start: %v", err)
	}
	return pid
}

// waitBound bounds every wait for a container to do something: generous,
// because CI machines are loaded; a passing test never waits that long.
const waitBound = 30 * time.Second

func waitExit(t *testing.T, rt *oci.Runtime, id string) {
	t.Helper()
	waitID(t, rt.Exits(), id, "exit")
}

// waitMonitorExit waits until MonitorExits delivers id.
func waitMonitorExit(t *testing.T, rt *oci.Runtime, id string) {
	t.Helper()
	waitID(t, rt.MonitorExits(), id, "monitor exit")
}

func waitID(t *testing.T, ch <-chan string, id, what string) {
	t.Helper()
	timeout := time.After(waitBound)
	for {
		select {
		case got := <-ch:
			if got == id {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event for %s in %v", what, id, waitBound)
		}
	}
}

var criLine = regexp.MustCompile(`^(\S+) (stdout|stderr) (F|P) (.*)$`)

func readLog(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A running container's last line may be half written.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	got := map[string]string{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		m := criLine.FindStringSubmatch(s.Text())
		if m == nil {
			t.Fatalf("not a CRI log line: %q", s.Text())
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Fatalf("bad timestamp in %q: %v", s.Text(), err)
		}
		got[m[4]] = m[2]
	}
	return got
}

func TestEchoExit(t *testing.T) {
	e := newEnv(t)
	bundle := ocitest.Bundle(t, "sh", "-c", "echo out; echo err >&2; exit 3")
	id := ocitest.ID("echo-")
	logPath := filepath.Join(t.TempDir(), "0.log")
	start := time.Now()
	e.run(t, id, bundle, logPath)
	waitExit(t, e.rt, id)
	ex, ok := e.rt.ExitStatus(id)
	if !ok || ex.Code != 3 || ex.OOMKilled {
		t.Fatalf("exit = %+v, %v; want code 3", ex, ok)
	}
	if ex.At.Before(start.Truncate(time.Second)) || ex.At.After(time.Now()) {
		t.Errorf("exit at %v, started %v", ex.At, start)
	}
	logs := readLog(t, logPath)
	if logs["out"] != "stdout" || logs["err"] != "stderr" {
		t.Errorf("log = %v", logs)
	}
	if _, err := e.rt.State(context.Background(), id, e.h); err != nil {
		t.Errorf("state of stopped container: %v", err)
	}
}

func TestKillDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := ocitest.ID("sleep-")
	pid := e.run(t, id, ocitest.Bundle(t, "sleep", "1000"), "")
	st, err := e.rt.State(ctx, id, e.h)
	if err != nil || st.Status != "running" || st.Pid != pid {
		t.Fatalf("state = %+v, %v; want running %d", st, err, pid)
	}
	if _, ok := e.rt.ExitStatus(id); ok {
		t.Fatal("exit status of a running container")
	}
	// The container's init is sleep, pid 1 of its namespace without a
	// handler: SIGTERM would be ignored, so kill it.
	if err := e.rt.Kill(ctx, id, e.h, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	waitExit(t, e.rt, id)
	if ex, _ := e.rt.ExitStatus(id); ex.Code != 128+9 {
		t.Errorf("exit code = %d, want 137", ex.Code)
	}
	for range 2 {
		if err := e.rt.Delete(ctx, id, e.h); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	if _, err := e.rt.State(ctx, id, e.h); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("state after delete: %v, want NotFound", err)
	}
	if _, ok := e.rt.ExitStatus(id); ok {
		t.Error("exit file left after delete")
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "containers", id)); !os.IsNotExist(err) {
		t.Errorf("state dir left: %v", err)
	}
}

func TestSignalExitCode(t *testing.T) {
	e := newEnv(t)
	id := ocitest.ID("sig-")
	// The shell is the pid namespace's init, which ignores SIGTERM unless
	// it has a handler: signal only once the trap is set, as the marker
	// file written after it says.
	bundle := ocitest.Bundle(t, "sh", "-c", "trap 'exit 143' TERM; : >/tmp/trapped; sleep 1000 & wait")
	e.run(t, id, bundle, "")
	waitFor(t, fileExists(filepath.Join(bundle, "rootfs", "tmp", "trapped")))
	if err := e.rt.Kill(context.Background(), id, e.h, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	waitExit(t, e.rt, id)
	if ex, _ := e.rt.ExitStatus(id); ex.Code != 143 {
		t.Errorf("exit code = %d, want 143", ex.Code)
	}
}

func proc(args ...string) *specs.Process {
	return &specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"}
}

func TestExecSync(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := ocitest.ID("exec-")
	bundle := ocitest.Bundle(t, "sleep", "1000")
	initPID := e.run(t, id, bundle, "")

	res, err := e.rt.ExecSync(ctx, id, e.h, proc("echo", "hello"), 0)
	if err != nil || string(res.Stdout) != "hello\n" || res.ExitCode != 0 {
		t.Errorf("echo: %+v %q, %v", res, res.Stdout, err)
	}
	res, err = e.rt.ExecSync(ctx, id, e.h, proc("sh", "-c", "echo oops >&2; exit 7"), 0)
	if err != nil || res.ExitCode != 7 || string(res.Stderr) != "oops\n" {
		t.Errorf("exit 7: %+v, %v", res, err)
	}
	if _, err := e.rt.ExecSync(ctx, id, e.h, proc("/nonexistent"), 0); err == nil {
		t.Error("exec of a missing binary succeeded")
	} else {
		t.Logf("missing binary: %v", err)
	}

	start := time.Now()
	_, err = e.rt.ExecSync(ctx, id, e.h, proc("sleep", "100"), time.Second)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: err = %v", err)
	}
	// Only that the timeout, not the end of sleep 100, stopped it: a
	// loaded machine may take long to kill and reap.
	if took > 20*time.Second {
		t.Errorf("timeout took %v", took)
	}
	t.Logf("exec timeout returned after %v", took)
	// Right away, like critest's `pgrep sleep`: only init may be left.
	procs, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", ocitest.CgroupsPath(t, bundle), "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(procs)); len(got) != 1 || got[0] != strconv.Itoa(initPID) {
		t.Errorf("processes in container after timeout: %v, want only init %d", got, initPID)
	}
	// Nor may it live on outside the container: an orphaned sleep 100
	// would outlast this bound. A killed one may take a moment to go.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, _ := exec.Command("pgrep", "-f", "^sleep 100$").Output()
		if len(out) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep 100 still exists: %s", out)
		}
	}
}

func TestReopenLog(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := ocitest.ID("log-")
	logPath := filepath.Join(t.TempDir(), "0.log")
	e.run(t, id, ocitest.Bundle(t, "sh", "-c", "while true; do echo tick; sleep 0.05; done"), logPath)
	waitFor(t, func() bool { fi, err := os.Stat(logPath); return err == nil && fi.Size() > 0 })
	if err := os.Rename(logPath, logPath+".old"); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.ReopenLog(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(logPath); err != nil {
		t.Fatalf("new log not there when ReopenLog returned: %v", err)
	}
	waitFor(t, func() bool { fi, err := os.Stat(logPath); return err == nil && fi.Size() > 0 })
	old, _ := os.Stat(logPath + ".old")
	// A few more ticks in the new log: time enough for a stray write to
	// the old one to show.
	lines0 := logLines(logPath)
	waitFor(t, func() bool { return logLines(logPath) >= lines0+3 })
	if now, _ := os.Stat(logPath + ".old"); now.Size() != old.Size() {
		t.Error("old log still written")
	}
	if logs := readLog(t, logPath); logs["tick"] != "stdout" {
		t.Errorf("new log = %v", logs)
	}
	if err := e.rt.Kill(ctx, id, e.h, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	// conmon writes the exit file, then exits: wait for the exit itself.
	waitMonitorExit(t, e.rt, id)
	if err := e.rt.ReopenLog(ctx, id); err == nil {
		t.Error("ReopenLog succeeded without conmon")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitBound); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v", waitBound)
		}
	}
}

func fileExists(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return err == nil }
}

// logLines counts the complete lines of a log file.
func logLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// TestMonitorOutlivesRuntime checks that conmon is not our child, survives
// the Runtime and that a fresh Runtime can manage the container.
func TestMonitorOutlivesRuntime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := ocitest.ID("adopt-")
	logPath := filepath.Join(t.TempDir(), "0.log")
	e.run(t, id, ocitest.Bundle(t, "sh", "-c", "echo hi; sleep 1000"), logPath)
	mpid, ok := e.rt.MonitorPID(id)
	if !ok {
		t.Fatal("no monitor pid")
	}
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(mpid) + "/stat")
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	if ppid, _ := strconv.Atoi(fields[1]); ppid == os.Getpid() {
		t.Errorf("conmon %d is a child of the test process", mpid)
	}
	if sid, _ := strconv.Atoi(fields[3]); sid != mpid {
		t.Errorf("conmon session = %d, want its own (%d)", sid, mpid)
	}
	if rollup, err := os.ReadFile("/proc/" + strconv.Itoa(mpid) + "/smaps_rollup"); err == nil {
		for _, l := range strings.Split(string(rollup), "\n") {
			if strings.HasPrefix(l, "Rss:") || strings.HasPrefix(l, "Pss:") {
				t.Logf("conmon %s", strings.Join(strings.Fields(l), " "))
			}
		}
	}
	e.rt.Close()

	rt2, err := oci.New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	e.rt = rt2 // for the cleanup's Delete
	if st, err := rt2.State(ctx, id, e.h); err != nil || st.Status != "running" {
		t.Fatalf("state from new runtime: %+v, %v", st, err)
	}
	if got, ok := rt2.MonitorPID(id); !ok || got != mpid {
		t.Errorf("monitor pid from new runtime = %d, %v", got, ok)
	}
	if err := rt2.ReopenLog(ctx, id); err != nil {
		t.Errorf("reopen from new runtime: %v", err)
	}
	// What crid does for adopted containers at start-up.
	if err := rt2.WatchMonitor(id); err != nil {
		t.Fatal(err)
	}
	if err := rt2.Kill(ctx, id, e.h, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	waitExit(t, rt2, id)
	waitMonitorExit(t, rt2, id)
	if ex, ok := rt2.ExitStatus(id); !ok || ex.Code != 137 {
		t.Errorf("exit = %+v, %v", ex, ok)
	}
}

func TestCreateFailure(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := ocitest.ID("fail-")
	_, err := e.rt.Create(ctx, oci.CreateOptions{ID: id, Handler: e.h, Bundle: ocitest.Bundle(t, "/no/such/binary")})
	if err == nil {
		e.rt.Delete(ctx, id, e.h)
		t.Fatal("create succeeded")
	}
	t.Logf("create error: %v", err)
	if !strings.Contains(err.Error(), "/no/such/binary") {
		t.Errorf("error lacks runc's message: %v", err)
	}
	if _, err := e.rt.State(ctx, id, e.h); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("runc still knows the container: %v", err)
	}
	if pids := conmonsFor(id); len(pids) > 0 {
		t.Errorf("conmon left: %v", pids)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "containers", id)); !os.IsNotExist(err) {
		t.Errorf("state dir left: %v", err)
	}
}

func TestCreateCancelled(t *testing.T) {
	e := newEnv(t)
	id := ocitest.ID("cancel-")
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := e.rt.Create(ctx, oci.CreateOptions{ID: id, Handler: e.h, Bundle: ocitest.Bundle(t, "sleep", "1000")})
	if err == nil {
		e.rt.Delete(context.Background(), id, e.h)
		t.Skip("create was faster than the deadline")
	}
	if _, err := e.rt.State(context.Background(), id, e.h); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("runc still knows the container: %v", err)
	}
	if pids := conmonsFor(id); len(pids) > 0 {
		t.Errorf("conmon left: %v", pids)
	}
}

func TestUpdateResources(t *testing.T) {
	e := newEnv(t)
	id := ocitest.ID("update-")
	bundle := ocitest.Bundle(t, "sleep", "1000")
	e.run(t, id, bundle, "")
	limit := int64(64 << 20)
	if err := e.rt.UpdateResources(context.Background(), id, e.h, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", ocitest.CgroupsPath(t, bundle), "memory.limit_in_bytes"))
	if err != nil || strings.TrimSpace(string(b)) != strconv.FormatInt(limit, 10) {
		t.Errorf("memory limit = %q, %v", b, err)
	}
}

func TestCgroupParent(t *testing.T) {
	e := newEnv(t)
	id := ocitest.ID("cgparent-")
	parent := "/" + ocitest.ID("crid-oci-test-conmon-")
	defer ocitest.RemoveCgroup(parent)
	t.Cleanup(func() { e.rt.Delete(context.Background(), id, e.h) })
	_, err := e.rt.Create(context.Background(), oci.CreateOptions{ID: id, Handler: e.h, Bundle: ocitest.Bundle(t, "sleep", "1000"), CgroupParent: parent})
	if err != nil {
		t.Fatal(err)
	}
	mpid, _ := e.rt.MonitorPID(id)
	cg, _ := os.ReadFile("/proc/" + strconv.Itoa(mpid) + "/cgroup")
	if !strings.Contains(string(cg), ":memory:"+parent+"\n") {
		t.Errorf("conmon cgroups:\n%s", cg)
	}
	if err := e.rt.Delete(context.Background(), id, e.h); err != nil {
		t.Fatal(err)
	}
}

// conmonsFor lists conmon processes for the container id.
func conmonsFor(id string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + ent.Name() + "/cmdline")
		if bytes.Contains(cmdline, []byte("\x00--cid\x00"+id+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestOOMKilled(t *testing.T) {
	e := newEnv(t)
	id := ocitest.ID("oom-")
	limit := int64(16 << 20)
	bundle := ocitest.BundleWith(t, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	}, "sh", "-c", `x=$(yes | head -c 200000000); echo survived`)
	e.run(t, id, bundle, "")
	waitExit(t, e.rt, id)
	ex, _ := e.rt.ExitStatus(id)
	// Whichever process the kernel picked, the cgroup had an OOM kill.
	if !ex.OOMKilled {
		t.Errorf("exit = %+v, want OOMKilled", ex)
	}
	t.Logf("exit: %+v", ex)
}
