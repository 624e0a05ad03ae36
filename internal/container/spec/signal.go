package spec

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Real-time signals as user space numbers them (glibc keeps 32 and 33 for
// itself, so SIGRTMIN is 34, as kill -l and Docker have it).
const (
	sigRTMin = 34
	sigRTMax = 64
)

// criSignals maps each CRI Signal but RUNTIME_DEFAULT to its number;
// signalsCRI maps numbers back, to one canonical name each (SIGCHLD, not
// SIGCLD; SIGABRT, not SIGIOT; SIGIO, not SIGPOLL).
var criSignals, signalsCRI = func() (map[runtimeapi.Signal]syscall.Signal, map[syscall.Signal]runtimeapi.Signal) {
	aliases := map[string]syscall.Signal{"SIGCLD": syscall.SIGCHLD, "SIGIOT": syscall.SIGABRT, "SIGPOLL": syscall.SIGIO}
	to := map[runtimeapi.Signal]syscall.Signal{}
	from := map[syscall.Signal]runtimeapi.Signal{}
	for v, enumName := range runtimeapi.Signal_name {
		name := strings.TrimPrefix(enumName, "SIGNAL_")
		var n syscall.Signal
		switch {
		case v == int32(runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT):
			continue
		case name == "SIGRTMIN":
			n = sigRTMin
		case name == "SIGRTMAX":
			n = sigRTMax
		case strings.HasPrefix(name, "SIGRTMINPLUS"):
			k, _ := strconv.Atoi(strings.TrimPrefix(name, "SIGRTMINPLUS"))
			n = syscall.Signal(sigRTMin + k)
		case strings.HasPrefix(name, "SIGRTMAXMINUS"):
			k, _ := strconv.Atoi(strings.TrimPrefix(name, "SIGRTMAXMINUS"))
			n = syscall.Signal(sigRTMax - k)
		case aliases[name] != 0:
			n = aliases[name]
		default:
			n = unix.SignalNum(name)
		}
		to[runtimeapi.Signal(v)] = n
		if _, alias := aliases[name]; !alias {
			from[n] = runtimeapi.Signal(v)
		}
	}
	return to, from
}()

// SignalNumber is the signal a CRI Signal names (ContainerConfig.stop_signal);
// ok is false for RUNTIME_DEFAULT and for values the enum does not have.
func SignalNumber(s runtimeapi.Signal) (sig syscall.Signal, ok bool) {
	sig, ok = criSignals[s]
	return sig, ok
}

// CRISignal is the CRI Signal for a signal number (ContainerStatus.stop_signal);
// RUNTIME_DEFAULT for the two the enum has no name for (32 and 33, which
// glibc reserves) and for numbers that are no signal.
func CRISignal(sig syscall.Signal) runtimeapi.Signal {
	return signalsCRI[sig]
}
