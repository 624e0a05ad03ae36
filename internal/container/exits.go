package container

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// monitorGone is the message of a container whose monitor died without
// recording its exit: crid killed what was left of it.
const monitorGone = "monitor gone: conmon exited without recording the container's exit"

// WatchExits records exits as the monitors report them, notices monitors
// that die, and rescans every container when the exit watcher may have
// missed some, until ctx ends.
func (m *Manager) WatchExits(ctx context.Context) {
	for {
		// One goroutine per event: recording must not wait behind a slow
		// check of another container.
		select {
		case <-ctx.Done():
			return
		case id := <-m.rt.Exits():
			go m.recordExit(id)
		case id := <-m.rt.MonitorExits():
			go m.checkMonitor(ctx, id)
		case <-m.rt.Rescans():
			m.log.Warn("exit notifications may have been lost: rescanning every container")
			go m.rescan(ctx)
		}
	}
}

// rescan re-checks every live container's exit file and monitor.
func (m *Manager) rescan(ctx context.Context) {
	for _, c := range m.recs.List(live) {
		m.checkMonitor(ctx, c.ID)
	}
}

func live(c *Container) bool { return c.State == StateCreated || c.State == StateRunning }

// recordExit records the exit the monitor wrote for id, if it has, and
// reports whether the container is (now) recorded as exited.
func (m *Manager) recordExit(id string) bool {
	exit, ok := m.rt.ExitStatus(id)
	if !ok {
		c, found := m.recs.Get(id)
		return found && c.State == StateExited
	}
	reason := "Completed"
	switch {
	case exit.OOMKilled:
		reason = "OOMKilled"
	case exit.Code != 0:
		reason = "Error"
	}
	m.markExited(id, exit.Code, reason, "", exit.At)
	return true
}

// checkMonitor repairs a live container whose monitor is gone: if the
// monitor wrote no exit, what is left of the container is killed and it
// is recorded as exited (137), after which it can be stopped and removed.
func (m *Manager) checkMonitor(ctx context.Context, id string) {
	c, ok := m.recs.Get(id)
	if !ok || !live(&c) || !c.Steps.Done(stepRuntime) || m.recordExit(id) {
		return
	}
	if m.rt.MonitorAlive(id) {
		return
	}
	// The monitor may have written the exit file just before it ended.
	if m.recordExit(id) {
		return
	}
	m.log.Warn("container monitor is gone: killing the container and recording it exited", "container", id, "pod", c.SandboxID)
	if h, err := m.handler(c.Handler); err == nil {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := m.rt.Kill(kctx, id, h, syscall.SIGKILL, true); err != nil {
			m.log.Debug("kill container of a dead monitor", "container", id, "error", err)
		}
		cancel()
	}
	m.markExited(id, 137, "Error", monitorGone, time.Now())
}

// errUnchanged ends an Update that has nothing to change.
var errUnchanged = errors.New("unchanged")

// markExited records an exit, once: a live container becomes exited.
func (m *Manager) markExited(id string, code int32, reason, message string, at time.Time) {
	c, err := m.recs.Update(id, func(c *Container) error {
		if !live(c) {
			return errUnchanged
		}
		c.State = StateExited
		// A start confirmed only by recovery, or a container lost with
		// the node, is dated later than it ran: an exit never precedes
		// the start it ends.
		if at.Before(c.StartedAt) {
			at = c.StartedAt
		}
		c.ExitCode, c.Reason, c.Message, c.FinishedAt = code, reason, message, at
		if c.StartedAt.IsZero() {
			c.StartedAt = at
		}
		c.Pid = 0
		return nil
	})
	if errors.Is(err, errUnchanged) || errdefs.IsNotFound(err) {
		return
	}
	if err != nil {
		m.log.Error("record container exit", "container", id, "error", err)
		return
	}
	m.event(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, &c)
	m.tellStopped(context.Background(), &c, false)
	m.log.Info("container exited", "container", id, "pod", c.SandboxID, "code", code, "reason", reason)
	if c.Infra && m.OnInfraExit != nil {
		go m.OnInfraExit(c.SandboxID)
	}
}
