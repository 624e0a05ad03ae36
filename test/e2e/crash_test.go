package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// podKinds are the pods whose every step the crash test walks: each makes
// a different set of side effects.
var podKinds = []struct {
	name    string
	nsOpts  map[string]any
	handler string
}{
	{"normal", map[string]any{"pid": 1}, ""},
	{"hostnet", map[string]any{"pid": 1, "network": 2, "ipc": 2}, ""},
	{"sharedpid", map[string]any{"pid": 0}, ""}, // a pause container holds the PID namespace
	// A user namespace of its own: idmapped layers, a pinned user namespace.
	{"userns", map[string]any{"pid": 1, "userns_options": map[string]any{"mode": 0,
		"uids": []any{map[string]any{"container_id": 0, "host_id": 200000, "length": 65536}},
		"gids": []any{map[string]any{"container_id": 0, "host_id": 200000, "length": 65536}}}}, usernsHandler},
}

// lifecycle runs a pod of kind through create, start, stop and remove,
// with one container, as the kubelet does. It stops at the first failure.
func (c *crid) lifecycle(kind int, name string) error {
	pod, ctr := c.podFilesNS(name, "exec sleep 3600", podKinds[kind].nsOpts)
	runp := []string{"runp", pod}
	if h := podKinds[kind].handler; h != "" {
		runp = []string{"runp", "--runtime", h, pod}
	}
	podID, err := c.crictl(runp...)
	if err != nil {
		return err
	}
	podID = strings.TrimSpace(podID)
	ctrID, err := c.crictl("create", podID, ctr, pod)
	if err != nil {
		return err
	}
	ctrID = strings.TrimSpace(ctrID)
	for _, args := range [][]string{{"start", ctrID}, {"stop", "-t", "0", ctrID}, {"rm", ctrID}, {"stopp", podID}, {"rmp", podID}} {
		if _, err := c.crictl(args...); err != nil {
			return err
		}
	}
	return nil
}

// crashPoints runs a pod of kind through its lifecycle on a crid that
// lists the crash points it passes, and returns them.
func crashPoints(t *testing.T, hosts string, kind int) []string {
	c := newCrid(t, hosts)
	c.mustCrictl("pull", "busybox")
	c.p.signal(syscall.SIGTERM)
	list := filepath.Join(c.dir, "crash-points")
	c.startWith(bin.cridCrash, "CRID_CRASH_LIST="+list)
	c.waitRecovered()
	if err := c.lifecycle(kind, podKinds[kind].name); err != nil {
		t.Fatalf("%s pod: %v", podKinds[kind].name, err)
	}
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	points := strings.Fields(string(b))
	// The list must hold the steps that matter, or the test below would
	// pass by walking nothing.
	want := []string{"pod/dir", "pod/dir/undone", "container/rootfs", "container/runtime/made", "container/start", "container/runtime/undone"}
	switch podKinds[kind].name {
	case "normal":
		want = append(want, "pod/namespaces", "pod/network/made", "pod/shm/undone")
	case "sharedpid":
		want = append(want, "pod/infra", "pod/infra/made", "pod/infra/undone")
	case "userns":
		want = append(want, "pod/namespaces", "pod/namespaces/undone", "container/rootfs/made")
	}
	for _, w := range want {
		if !slices.Contains(points, w) {
			t.Fatalf("crash point %s was not passed; passed: %v", w, points)
		}
	}
	c.crictl("rmp", "-fa")
	return points
}

// A crash at every step of creating, starting, stopping and removing pods
// and containers, and again at the same step while crid recovers from it,
// leaves every object whole or absent and nothing leaked. The steps are
// the ones crid itself reports passing (internal/steps defines them), for
// each kind of pod.
func TestCrashAtEveryStep(t *testing.T) {
	hosts := rig(t)
	for kind, k := range podKinds {
		t.Run(k.name, func(t *testing.T) {
			if k.handler == usernsHandler {
				requireUserNS(t)
			}
			points := crashPoints(t, hosts, kind)
			t.Logf("%d crash points: %v", len(points), points)
			for _, point := range points {
				t.Run(strings.ReplaceAll(point, "/", "-"), func(t *testing.T) {
					c := newCrid(t, hosts)
					c.mustCrictl("pull", "busybox")
					c.crashAt(point, func() error { return c.lifecycle(kind, k.name) })
					c.assertWholeThenRemove()
				})
			}
		})
	}
}

// crashAt restarts crid built with crash points to crash at point, runs
// calls (one of which must fail there), restarts it to crash again if its
// recovery passes the same point (it may do so before it even serves), and
// then starts the normal crid and waits for its recovery.
func (c *crid) crashAt(point string, calls func() error) {
	c.t.Helper()
	c.p.signal(syscall.SIGTERM)
	c.startWith(bin.cridCrash, "CRID_CRASH_AT="+point)
	c.waitRecovered()
	if err := calls(); err == nil {
		c.t.Fatalf("no call failed at crash point %s", point)
	}
	c.p.cmd.Wait()
	os.Remove(c.sock)
	c.p = startEnv(c.t, []string{"CRID_CRASH_AT=" + point}, bin.cridCrash, c.args()...)
	c.waitRecoveredOrExit()
	c.start()
}

// waitRecoveredOrExit waits for recovery or for crid to exit.
func (c *crid) waitRecoveredOrExit() {
	c.t.Helper()
	done := make(chan struct{})
	go func() {
		c.p.cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return
		default:
		}
		if c.recovered() {
			c.p.cmd.Process.Signal(syscall.SIGKILL)
			<-done
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("crid neither recovered nor exited in 3 minutes")
}

// assertWholeThenRemove checks that every pod and container crid lists is
// whole (its status answers, a ready pod's containers run) and that all
// of them, and the images, can be removed without leaving anything.
func (c *crid) assertWholeThenRemove() {
	c.t.Helper()
	for _, id := range strings.Fields(c.mustCrictl("pods", "-q")) {
		c.mustCrictl("inspectp", id)
	}
	for _, id := range strings.Fields(c.mustCrictl("ps", "-aq")) {
		c.mustCrictl("inspect", id)
	}
	c.mustCrictl("rmp", "-fa")
	if out := c.mustCrictl("ps", "-aq"); strings.TrimSpace(out) != "" {
		c.t.Fatalf("containers after rmp: %q", out)
	}
	c.mustCrictl("rmi", "-a")
	c.assertNothingLeft()
}

// Several clients create and remove pods, retrying as the kubelet does,
// while crid is killed with SIGKILL and restarted again and again;
// afterwards everything removes cleanly and nothing is leaked.
func TestKill9Storm(t *testing.T) {
	c := newCrid(t, rig(t))
	c.mustCrictl("pull", "busybox")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for client := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Errors are expected while crid is down: the next
				// round (the kubelet's retry) goes on.
				_ = c.lifecycle(client%len(podKinds), fmt.Sprintf("storm%d-%d", client, i%3))
			}
		}()
	}
	for range 5 {
		// Let the clients get into their calls, then kill crid.
		waitUntil(t, "a pod or container to exist", func() bool {
			out, err := c.crictl("ps", "-aq")
			return err == nil && strings.TrimSpace(out) != ""
		})
		c.p.signal(syscall.SIGKILL)
		c.startWith(bin.crid)
	}
	close(stop)
	wg.Wait()
	c.waitRecovered()
	c.assertWholeThenRemove()
}
