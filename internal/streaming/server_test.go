package streaming

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
)

type fakeContainers struct{}

func (fakeContainers) CheckRunning(id string) (container.Container, error) {
	switch id {
	case "running":
		return container.Container{ID: id, State: container.StateRunning}, nil
	case "exited":
		return container.Container{}, errdefs.ErrFailedPrecondition
	}
	return container.Container{}, errdefs.ErrNotFound
}

func (fakeContainers) Exec(context.Context, string, []string, oci.ExecOptions) (int32, error) {
	return 0, nil
}

func (fakeContainers) Attach(context.Context, string, oci.AttachOptions) error { return nil }

type fakePods struct{}

func (fakePods) Get(id string) (sandbox.Sandbox, error) {
	if id == "ready" {
		return sandbox.Sandbox{ID: id, State: sandbox.StateReady}, nil
	}
	return sandbox.Sandbox{}, errdefs.ErrNotFound
}

func newTestServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0"}, fakeContainers{}, fakePods{})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s
}

func TestGetExecValidates(t *testing.T) {
	s := newTestServer(t)
	for _, tc := range []struct {
		name string
		req  *runtimeapi.ExecRequest
		want error
	}{
		{"ok", &runtimeapi.ExecRequest{ContainerId: "running", Cmd: []string{"sh"}, Stdout: true}, nil},
		{"tty and stderr", &runtimeapi.ExecRequest{ContainerId: "running", Cmd: []string{"sh"}, Tty: true, Stderr: true}, errdefs.ErrInvalidArgument},
		{"no streams", &runtimeapi.ExecRequest{ContainerId: "running", Cmd: []string{"sh"}}, errdefs.ErrInvalidArgument},
		{"no cmd", &runtimeapi.ExecRequest{ContainerId: "running", Stdout: true}, errdefs.ErrInvalidArgument},
		{"unknown", &runtimeapi.ExecRequest{ContainerId: "nope", Cmd: []string{"sh"}, Stdout: true}, errdefs.ErrNotFound},
		{"not running", &runtimeapi.ExecRequest{ContainerId: "exited", Cmd: []string{"sh"}, Stdout: true}, errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.GetExec(tc.req)
			if tc.want == nil {
				if err != nil || resp.GetUrl() == "" {
					t.Fatalf("GetExec: %v %v", resp, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("GetExec: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestGetAttachAndPortForwardValidate(t *testing.T) {
	s := newTestServer(t)
	if _, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "running", Tty: true, Stderr: true}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("attach tty+stderr: %v", err)
	}
	if _, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "exited", Stdout: true}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("attach exited: %v", err)
	}
	if _, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "gone"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("port-forward unknown pod: %v", err)
	}
	if _, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "ready", Port: []int32{70000}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("port-forward bad port: %v", err)
	}
	if r, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "ready", Port: []int32{80}}); err != nil || r.GetUrl() == "" {
		t.Errorf("port-forward: %v %v", r, err)
	}
}

// TestResizeRelayNoLeak checks that relaying terminal sizes leaves no
// goroutine behind, however the session ends.
func TestResizeRelayNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 1000 {
		out, stop := convertResize(nil)
		if out != nil {
			t.Fatal("nil in, non-nil out")
		}
		stop()
	}
	for i := range 1000 {
		in := make(chanSize)
		out, stop := convertResize(in)
		if i%2 == 0 {
			go func() { in <- termSize(3, 4) }()
			if s := <-out; s.Width != 3 || s.Height != 4 {
				t.Fatalf("size %+v", s)
			}
		}
		stop()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("goroutines: %d before, %d after", before, n)
	}
}

type chanSize = chan remotecommand.TerminalSize

func termSize(w, h uint16) remotecommand.TerminalSize {
	return remotecommand.TerminalSize{Width: w, Height: h}
}
