package streaming

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/crid-project/crid/internal/oci"
)

// sessions runs the sessions the library accepted (streaming.Runtime).
type sessions struct {
	containers Containers
	pods       Pods
	log        *slog.Logger
}

func (r *sessions) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	sizes, stop := convertResize(resize)
	defer stop()
	code, err := r.containers.Exec(ctx, id, cmd, oci.ExecOptions{
		Stdin: in, Stdout: writer(out), Stderr: writer(errw), Tty: tty, Resize: sizes,
	})
	if err != nil {
		r.log.Debug("exec session failed", "container", id, "err", err)
		return err
	}
	if code != 0 {
		return exitError(code)
	}
	return nil
}

func (r *sessions) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	sizes, stop := convertResize(resize)
	defer stop()
	r.log.Debug("attach", "container", id, "tty", tty)
	return r.containers.Attach(ctx, id, oci.AttachOptions{Stdin: in, Stdout: writer(out), Stderr: writer(errw), Resize: sizes})
}

// writer keeps a nil stream nil (not a typed nil in an interface).
func writer(w io.WriteCloser) io.Writer {
	if w == nil {
		return nil
	}
	return w
}

// convertResize relays the library's sizes as oci's until stop.
func convertResize(in <-chan remotecommand.TerminalSize) (<-chan oci.TerminalSize, func()) {
	if in == nil {
		return nil, func() {}
	}
	out := make(chan oci.TerminalSize)
	done := make(chan struct{})
	go func() {
		defer close(out)
		for {
			select {
			case s, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- oci.TerminalSize{Width: s.Width, Height: s.Height}:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	return out, func() { close(done) }
}

// exitError carries a non-zero exit code to the library, which reports it
// to the client (it looks for k8s.io/utils/exec's ExitError shape).
type exitError int32

func (e exitError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", int32(e))
}
func (e exitError) String() string  { return e.Error() }
func (e exitError) Exited() bool    { return true }
func (e exitError) ExitStatus() int { return int(e) }
