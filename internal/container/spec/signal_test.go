package spec

import (
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSignalNumber(t *testing.T) {
	for _, tc := range []struct {
		in   runtimeapi.Signal
		want syscall.Signal
		ok   bool
	}{
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, 0, false},
		{runtimeapi.Signal(999), 0, false},
		{runtimeapi.Signal_SIGNAL_SIGTERM, syscall.SIGTERM, true},
		{runtimeapi.Signal_SIGNAL_SIGKILL, syscall.SIGKILL, true},
		{runtimeapi.Signal_SIGNAL_SIGQUIT, syscall.SIGQUIT, true},
		{runtimeapi.Signal_SIGNAL_SIGUSR1, syscall.SIGUSR1, true},
		{runtimeapi.Signal_SIGNAL_SIGWINCH, syscall.SIGWINCH, true},
		{runtimeapi.Signal_SIGNAL_SIGSTKFLT, syscall.SIGSTKFLT, true},
		{runtimeapi.Signal_SIGNAL_SIGPWR, syscall.SIGPWR, true},
		{runtimeapi.Signal_SIGNAL_SIGCLD, syscall.SIGCHLD, true},
		{runtimeapi.Signal_SIGNAL_SIGIOT, syscall.SIGABRT, true},
		{runtimeapi.Signal_SIGNAL_SIGPOLL, syscall.SIGIO, true},
		{runtimeapi.Signal_SIGNAL_SIGRTMIN, 34, true},
		{runtimeapi.Signal_SIGNAL_SIGRTMINPLUS1, 35, true},
		{runtimeapi.Signal_SIGNAL_SIGRTMINPLUS15, 49, true},
		{runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS14, 50, true},
		{runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS1, 63, true},
		{runtimeapi.Signal_SIGNAL_SIGRTMAX, 64, true},
	} {
		got, ok := SignalNumber(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("SignalNumber(%v) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// Every named signal but RUNTIME_DEFAULT has a number, and every number
// from 1 to 64 but glibc's two maps back to a name for it.
func TestSignalsRoundTrip(t *testing.T) {
	for v := range runtimeapi.Signal_name {
		s := runtimeapi.Signal(v)
		if s == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
			continue
		}
		n, ok := SignalNumber(s)
		if !ok || n < 1 || n > 64 {
			t.Errorf("%v: number %d, %v", s, n, ok)
			continue
		}
		if back, _ := SignalNumber(CRISignal(n)); back != n {
			t.Errorf("%v = %d maps back to %v", s, n, CRISignal(n))
		}
	}
	for n := syscall.Signal(1); n <= 64; n++ {
		got := CRISignal(n)
		if (got == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT) != (n == 32 || n == 33) {
			t.Errorf("CRISignal(%d) = %v", n, got)
		}
	}
	if got := CRISignal(syscall.SIGCHLD); got != runtimeapi.Signal_SIGNAL_SIGCHLD {
		t.Errorf("CRISignal(SIGCHLD) = %v, want the canonical name", got)
	}
	if got := CRISignal(0); got != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		t.Errorf("CRISignal(0) = %v", got)
	}
}
