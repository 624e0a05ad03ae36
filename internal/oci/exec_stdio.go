package oci

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// execStdio connects one `runc exec` to the caller's streams.
type execStdio struct {
	// gone is closed when writing output failed: nobody reads any more.
	gone     chan struct{}
	goneOnce sync.Once

	// closeAfterStart are the child's ends, ours to close once it runs.
	closeAfterStart []*os.File
	// stdinW is the write end of the process's stdin pipe (no TTY).
	stdinW   *os.File
	stdinSrc io.Reader
	// master is the terminal crid gives runc (TTY).
	master *os.File
	out    io.Writer
	// outDone is closed once the terminal's output is drained.
	outDone chan struct{}
}

func newExecStdio(cmd *exec.Cmd, opts ExecOptions, runcErr *limitedBuffer) (*execStdio, error) {
	s := &execStdio{gone: make(chan struct{}), stdinSrc: opts.Stdin, out: opts.Stdout}
	if opts.Tty {
		master, slave, err := openPTY()
		if err != nil {
			return nil, err
		}
		s.master = master
		s.closeAfterStart = append(s.closeAfterStart, slave)
		// runc looks for its "host console" on stderr, stdout, then
		// stdin; stderr stays a pipe so runc's own errors are kept apart.
		cmd.Stdin, cmd.Stdout = slave, slave
		cmd.Stderr = runcErr
		s.outDone = make(chan struct{})
		return s, nil
	}
	if opts.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		cmd.Stdin = r
		s.closeAfterStart = append(s.closeAfterStart, r)
		s.stdinW = w
	}
	cmd.Stdout = s.watch(opts.Stdout)
	// runc reports its own failures (container not running) on the
	// stderr it shares with the process: keep a copy to explain them.
	cmd.Stderr = teeWriter{runcErr, s.watch(opts.Stderr)}
	// A background child of the command may hold the pipes open after
	// the command exited; don't wait for it forever.
	cmd.WaitDelay = time.Second
	return s, nil
}

// started closes the child's ends and starts copying.
func (s *execStdio) started() {
	for _, f := range s.closeAfterStart {
		f.Close()
	}
	s.closeAfterStart = nil
	if s.stdinW != nil {
		// Ends when the client's stdin ends (closing the process's stdin)
		// or, after the process exited, when the session's streams close.
		go func() {
			_, _ = io.Copy(s.stdinW, s.stdinSrc)
			s.stdinW.Close()
		}()
	}
	if s.master != nil {
		if s.stdinSrc != nil {
			go func() { _, _ = io.Copy(s.master, s.stdinSrc) }()
		}
		go func() {
			defer close(s.outDone)
			// Reading the master fails with EIO once runc, the last
			// holder of the terminal, exited.
			_, _ = io.Copy(s.watch(s.out), s.master)
		}()
	}
}

// abort releases everything when the command never started.
func (s *execStdio) abort() {
	for _, f := range s.closeAfterStart {
		f.Close()
	}
	if s.stdinW != nil {
		s.stdinW.Close()
	}
	if s.master != nil {
		s.master.Close()
	}
}

// finish runs after runc exited: it drains the terminal and closes our
// ends, so no copying goroutine outlives the session's streams.
func (s *execStdio) finish() {
	if s.master != nil {
		<-s.outDone
		s.master.Close()
	}
	if s.stdinW != nil {
		// Unblocks nothing that reads the client, but makes the copier's
		// next write fail so it ends as soon as the client's read does.
		s.stdinW.Close()
	}
}

// resizeLoop applies terminal sizes until runc exits. runc copies the
// size of its terminal to the container's on SIGWINCH.
func (s *execStdio) resizeLoop(p *os.Process, resize <-chan TerminalSize, done <-chan error) {
	for {
		select {
		case size, ok := <-resize:
			if !ok {
				return
			}
			ws := &unix.Winsize{Row: size.Height, Col: size.Width}
			err := control(s.master, func(fd int) error { return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws) })
			if err != nil {
				continue
			}
			_ = p.Signal(syscall.SIGWINCH)
		case <-s.outDone:
			return
		}
	}
}

// watch wraps w so that a failed write marks the client gone.
func (s *execStdio) watch(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	if _, ok := w.(*limitedBuffer); ok {
		return w
	}
	return watchedWriter{w: w, fail: func() { s.goneOnce.Do(func() { close(s.gone) }) }}
}

type watchedWriter struct {
	w    io.Writer
	fail func()
}

func (w watchedWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		w.fail()
	}
	return n, err
}

// teeWriter writes to a buffer and then, if set, to w.
type teeWriter struct {
	buf *limitedBuffer
	w   io.Writer
}

func (t teeWriter) Write(p []byte) (int, error) {
	_, _ = t.buf.Write(p)
	if t.w == nil {
		return len(p), nil
	}
	return t.w.Write(p)
}

// openPTY opens a new pseudo-terminal pair.
func openPTY() (master, slave *os.File, retErr error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	defer func() {
		if retErr != nil {
			m.Close()
		}
	}()
	// Not m.Fd(): that would take the master out of the poller.
	var sfd int
	err = control(m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlock pty: %w", err)
		}
		// TIOCGPTPEER opens the peer without a path lookup in /dev/pts.
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
		if errno != 0 {
			return fmt.Errorf("open pty peer: %w", errno)
		}
		sfd = int(r)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return m, os.NewFile(uintptr(sfd), "pty-slave"), nil
}

// control runs fn on f's descriptor.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
