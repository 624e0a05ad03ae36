package container

import (
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer sends the configured stop signal, else the image's, else
// SIGTERM, and ContainerStatus reports the one in use (KEP-4960).
func TestStopSignal(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured runtimeapi.Signal
		image      string // the image's StopSignal; "none" for none
		want       runtimeapi.Signal
		sent       syscall.Signal
	}{
		{"configured", runtimeapi.Signal_SIGNAL_SIGUSR1, "SIGQUIT", runtimeapi.Signal_SIGNAL_SIGUSR1, syscall.SIGUSR1},
		{"configured alias", runtimeapi.Signal_SIGNAL_SIGIOT, "none", runtimeapi.Signal_SIGNAL_SIGIOT, syscall.SIGABRT},
		{"configured real-time", runtimeapi.Signal_SIGNAL_SIGRTMINPLUS2, "SIGQUIT", runtimeapi.Signal_SIGNAL_SIGRTMINPLUS2, syscall.Signal(36)},
		{"image", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "SIGQUIT", runtimeapi.Signal_SIGNAL_SIGQUIT, syscall.SIGQUIT},
		{"image number", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "2", runtimeapi.Signal_SIGNAL_SIGINT, syscall.SIGINT},
		{"default", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "none", runtimeapi.Signal_SIGNAL_SIGTERM, syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.images.stopSignal = tc.image
			cfg := ctrConfig("web")
			cfg.StopSignal = tc.configured
			id, err := h.m.Create(bg, "pod-a", cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.m.Start(bg, id); err != nil {
				t.Fatal(err)
			}
			c, err := h.m.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.CRIStatus().StopSignal; got != tc.want {
				t.Errorf("status stop_signal %v, want %v", got, tc.want)
			}
			// The fake runtime exits with 128 + the first signal it gets.
			if err := h.m.Stop(bg, id, time.Minute); err != nil {
				t.Fatal(err)
			}
			if c := h.record(id); c.State != StateExited || c.ExitCode != 128+int32(tc.sent) {
				t.Errorf("after stop: %s, exit %d; want exited by signal %d", c.State, c.ExitCode, tc.sent)
			}
			c, _ = h.m.Get(id)
			if got := c.CRIStatus().StopSignal; got != tc.want {
				t.Errorf("exited container's stop_signal %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStopSignalInvalid(t *testing.T) {
	h := newHarness(t)
	cfg := ctrConfig("web")
	cfg.StopSignal = runtimeapi.Signal(999)
	_, err := h.m.Create(bg, "pod-a", cfg)
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("create with stop_signal 999: %v, want InvalidArgument", err)
	}
	if n := len(h.m.recs.List(nil)); n != 0 {
		t.Errorf("%d containers recorded", n)
	}
}
