package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/namespaces"
)

// streamCmd is crictl for streaming calls: the streaming server listens
// on 127.0.0.1 in the tests' network namespace, so crictl runs there too.
func (c *crid) streamCmd(args ...string) *exec.Cmd {
	ep := "unix://" + c.sock
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + netns, bin.crictl,
		"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	return cmd
}

// openPTY opens a pseudo-terminal for a client like a user's shell.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

func setSize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
}

// screen collects what a terminal shows.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		got := s.buf.String()
		s.mu.Unlock()
		if strings.Contains(got, want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Fatalf("terminal never showed %q; it shows:\n%q", want, s.buf.String())
}

// TestExecTTY drives `crictl exec -it` through a pseudo-terminal: prompt,
// command, resize, exit.
func TestExecTTY(t *testing.T) {
	c := newCrid(t, rig(t))
	_, ctrID := c.runPod("tty", "exec sleep 3600")

	master, slave := openPTY(t)
	setSize(t, master, 24, 80)
	cmd := c.streamCmd("exec", "-it", ctrID, "sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A session with the terminal as its controlling tty, as in a real
	// shell: resizing then signals crictl itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	slave.Close()
	var scr screen
	go io.Copy(&scr, master)

	scr.waitFor(t, "# ")
	io.WriteString(master, "stty size; echo done-$((20+1))\r")
	scr.waitFor(t, "24 80")
	scr.waitFor(t, "done-21")
	setSize(t, master, 33, 101)
	// The kernel signals crictl's process group; give it a moment to
	// pass the size on.
	time.Sleep(300 * time.Millisecond)
	io.WriteString(master, "stty size\r")
	scr.waitFor(t, "33 101")
	io.WriteString(master, "exit 3\r")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("crictl exec -it did not end after exit")
	}
	// The shell is gone from the container.
	if out := c.mustCrictl("exec", "-s", ctrID, "ps"); strings.Contains(out, " sh\n") && !strings.Contains(out, "sh -c") {
		t.Fatalf("exec'd shell still runs:\n%s", out)
	}
}

// TestAttach reads a running container's output and detaches, leaving it
// running.
func TestAttach(t *testing.T) {
	c := newCrid(t, rig(t))
	_, ctrID := c.runPod("attach", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done")
	cmd := c.streamCmd("attach", ctrID)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	seen := 0
	timeout := time.After(20 * time.Second)
	for seen < 5 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("attach ended early")
			}
			if strings.HasPrefix(l, "tick ") {
				seen++
			}
		case <-timeout:
			t.Fatalf("attach showed %d ticks in 20 s", seen)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	time.Sleep(200 * time.Millisecond)
	if st := c.containerStatus(ctrID); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after detach: %v", st.State)
	}
}

// TestPortForward carries 10 MB through `crictl port-forward` to an echo
// server in the pod and back.
func TestPortForward(t *testing.T) {
	c := newCrid(t, rig(t))
	podID, _ := c.runPod("pf", "while true; do nc -l -p 7777 -e cat; done")
	const local = "127.0.0.1:17777"
	cmd := c.streamCmd("port-forward", podID, "17777:7777")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	payload := make([]byte, 10<<20)
	rand.Read(payload)
	var got []byte
	var lastErr error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got, lastErr = echoInNetns(payload, local)
		if lastErr == nil && len(got) == len(payload) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatal(lastErr)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("got %d bytes back, not the %d sent", len(got), len(payload))
	}
}

// echoInNetns sends payload to addr in the tests' network namespace and
// returns what comes back until the server closes.
func echoInNetns(payload []byte, addr string) ([]byte, error) {
	var conn net.Conn
	err := namespaces.Do("/run/netns/"+netns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		conn.(*net.TCPConn).CloseWrite()
		werr <- err
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		return got, err
	}
	return got, <-werr
}

// TestExecConcurrencyAndLeaks runs 50 execs at once into one container,
// then 1,000 more, and checks crid's descriptors and threads do not grow.
func TestExecConcurrencyAndLeaks(t *testing.T) {
	c := newCrid(t, rig(t))
	_, ctrID := c.runPod("many", "exec sleep 3600")
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))
	pid := c.p.cmd.Process.Pid

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			cmd := c.streamCmd("exec", ctrID, "sh", "-c", fmt.Sprintf("echo out-%d; echo err-%d >&2; exit %d", i, i, i%4))
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				errs <- err
				return
			}
			// crictl exits 1 for a non-zero exit code of the command.
			if out.String() != fmt.Sprintf("out-%d\n", i) || !strings.Contains(errb.String(), fmt.Sprintf("err-%d", i)) || (code != 0) != (i%4 != 0) {
				errs <- fmt.Errorf("exec %d: code %d, stdout %q, stderr %q", i, code, out.String(), errb.String())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	exec1 := func(i int) {
		resp, err := rt.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"echo", strconv.Itoa(i)}, Timeout: 10})
		if err != nil || string(resp.Stdout) != strconv.Itoa(i)+"\n" {
			t.Errorf("exec %d: %v %q", i, err, resp.GetStdout())
		}
	}
	for i := range 20 { // warm up pools and lazily started goroutines
		exec1(i)
	}
	fds0, threads0 := procCounts(t, pid)
	sem := make(chan struct{}, 4)
	for i := range 1000 {
		sem <- struct{}{}
		wg.Go(func() { defer func() { <-sem }(); exec1(i) })
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	fds1, threads1 := procCounts(t, pid)
	t.Logf("crid after 1,000 execs: fds %d → %d, threads %d → %d", fds0, fds1, threads0, threads1)
	if fds1 > fds0+5 {
		t.Errorf("crid's descriptors grew from %d to %d", fds0, fds1)
	}
	// Go keeps idle threads; a leak grows with the number of execs.
	if threads1 > threads0+20 {
		t.Errorf("crid's threads grew from %d to %d", threads0, threads1)
	}
}

func procCounts(t *testing.T, pid int) (fds, threads int) {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents), len(tasks)
}
