package oci_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/oci/ocitest"
)

// killMonitor SIGKILLs the container's conmon, as the OOM killer or an
// operator would, and waits until it is gone.
func killMonitor(t *testing.T, rt *oci.Runtime, id string) {
	t.Helper()
	pid, ok := rt.MonitorPID(id)
	if !ok {
		t.Fatalf("no monitor for %s", id)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill monitor %d: %v", pid, err)
	}
	waitFor(t, func() bool { return !rt.MonitorAlive(id) })
}

// TestMonitorKilled: Create watches the monitor, so a conmon killed behind
// crid's back is reported although it never writes an exit file.
func TestMonitorKilled(t *testing.T) {
	e := newEnv(t)
	id := ocitest.ID("monkill-")
	e.run(t, id, ocitest.Bundle(t, "sleep", "1000"), "")
	if !e.rt.MonitorAlive(id) {
		t.Fatal("MonitorAlive = false for a running container")
	}
	killMonitor(t, e.rt, id)
	waitMonitorExit(t, e.rt, id)
	if _, ok := e.rt.ExitStatus(id); ok {
		t.Error("exit status recorded by a killed monitor")
	}
	// The container runs on without its monitor; the cleanup's Delete
	// removes it.
	if st, err := e.rt.State(context.Background(), id, e.h); err != nil || st.Status != "running" {
		t.Errorf("state without monitor = %+v, %v; want running", st, err)
	}
}

// TestWatchMonitorAfterDeath: a watch of a monitor that is already gone
// delivers at once.
func TestWatchMonitorAfterDeath(t *testing.T) {
	e := newEnv(t)
	id := ocitest.ID("monlate-")
	e.run(t, id, ocitest.Bundle(t, "sleep", "1000"), "")
	e.rt.Forget(id) // drop Create's watch: this test watches late
	killMonitor(t, e.rt, id)
	if err := e.rt.WatchMonitor(id); err != nil {
		t.Fatal(err)
	}
	waitMonitorExit(t, e.rt, id)
}

// TestForgetStopsDelivery: neither a Forget nor a Delete delivers the
// monitor's end. A third container whose monitor dies last is the
// barrier: the ends of the others, had they been watched, would have
// been delivered before its own.
func TestForgetStopsDelivery(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	deleted, forgotten, barrier := ocitest.ID("mondel-"), ocitest.ID("monforget-"), ocitest.ID("monbarrier-")
	for _, id := range []string{deleted, forgotten, barrier} {
		e.run(t, id, ocitest.Bundle(t, "sleep", "1000"), "")
	}
	if err := e.rt.Delete(ctx, deleted, e.h); err != nil {
		t.Fatal(err)
	}
	e.rt.Forget(forgotten)
	killMonitor(t, e.rt, forgotten)
	killMonitor(t, e.rt, barrier)
	select {
	case got := <-e.rt.MonitorExits():
		if got != barrier {
			t.Errorf("monitor exit of %s delivered, want only %s", got, barrier)
		}
	case <-time.After(waitBound):
		t.Fatalf("no monitor exit for %s", barrier)
	}
}
