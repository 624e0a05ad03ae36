package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// conmon's attach protocol (verified against conmon 2.1.6, src/conn_sock.c
// and src/ctr_stdio.c; CRI-O's attach client speaks the same):
//   - <bundle>/attach is a SOCK_SEQPACKET unix socket; every client gets
//     all output from the moment it connects (no replay).
//   - Each packet conmon sends is one read of the container's stdio: the
//     first byte names the pipe (2 stdout, 3 stderr; 1 is stdin, never
//     sent), the rest (at most 8192 bytes) is the data. With a terminal
//     everything is stdout.
//   - Whatever the client sends is written, unframed, to the container's
//     stdin; conmon reads at most 32767 bytes per packet, so larger
//     writes would be truncated.
//   - When the client shuts down its write side, conmon closes the
//     container's stdin if it was started with --stdin but without
//     --leave-stdin-open (the CRI's stdin_once).
//   - Resizing: the line "1 <height> <width>\n" on the control FIFO
//     <bundle>/ctl (conmon forwards it to the pty; 2 reopens the log).
const (
	attachPipeStdout = 2
	attachPipeStderr = 3
	// attachReadSize holds conmon's largest packet (8192 + 1).
	attachReadSize = 32 << 10
	// attachWriteSize stays below conmon's 32767-byte stdin reads.
	attachWriteSize = 8 << 10
)

// AttachOptions are the streams of one Attach.
type AttachOptions struct {
	// Stdin, if set, is copied to the container's stdin. Its EOF ends
	// our half; conmon then closes the container's stdin if it was
	// created with StdinOnce.
	Stdin io.Reader
	// Stdout and Stderr receive the container's output from now on; nil
	// discards it.
	Stdout, Stderr io.Writer
	// Tty: the container has a terminal (everything arrives on Stdout).
	Tty bool
	// Resize carries terminal sizes; nil means none.
	Resize <-chan TerminalSize
}

// Attach connects to a running container's stdio through its monitor and
// returns when the container's output ends (it exited), when writing the
// output fails (the client left), when ctx ends, or, without output
// streams or with a terminal, when stdin ends. Returning detaches: the
// container keeps running.
func (r *Runtime) Attach(ctx context.Context, id string, opts AttachOptions) error {
	if err := validID(id); err != nil {
		return err
	}
	conn, err := dialAttach(r.AttachSocket(id))
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	defer conn.Close()

	if opts.Tty && opts.Resize != nil {
		ctl := filepath.Join(r.bundleDir(id), "ctl")
		resizeDone := make(chan struct{})
		defer close(resizeDone)
		go r.forwardResize(id, ctl, opts.Resize, resizeDone)
	}

	outErr := make(chan error, 1)
	go func() { outErr <- copyAttachOutput(conn, opts.Stdout, opts.Stderr) }()
	inDone := make(chan error, 1)
	if opts.Stdin != nil {
		go func() {
			_, err := io.CopyBuffer(packetWriter{conn}, opts.Stdin, make([]byte, attachWriteSize))
			// Tells conmon our stdin ended (it closes the container's
			// stdin when stdin_once).
			_ = conn.CloseWrite()
			inDone <- err
		}()
	}
	wantOut := opts.Stdout != nil || opts.Stderr != nil
	select {
	case err := <-outErr:
		return err
	case err := <-inDone:
		if !wantOut || opts.Tty {
			return ignoreClosed(err)
		}
		select {
		case err := <-outErr:
			return err
		case <-ctx.Done():
			return nil
		}
	case <-ctx.Done():
		return nil
	}
}

// dialAttach connects to conmon's attach socket. Bundle paths easily
// exceed the 108 bytes of a socket address, so it goes through
// /proc/self/fd/<dir fd>, like conmon does when it binds.
func dialAttach(path string) (*net.UnixConn, error) {
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	// Fd is fine here: an O_PATH descriptor is never polled.
	addr := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	return net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: addr, Net: "unixpacket"})
}

// copyAttachOutput demultiplexes conmon's packets until EOF.
func copyAttachOutput(conn *net.UnixConn, stdout, stderr io.Writer) error {
	buf := make([]byte, attachReadSize)
	for {
		n, err := conn.Read(buf)
		if n > 1 {
			var w io.Writer
			switch buf[0] {
			case attachPipeStdout:
				w = stdout
			case attachPipeStderr:
				w = stderr
			}
			if w != nil {
				if _, werr := w.Write(buf[1:n]); werr != nil {
					// The client left; detach.
					return nil
				}
			}
		}
		if err != nil {
			return ignoreClosed(err)
		}
		if n == 0 {
			// A zero-length read on a seqpacket socket is the end.
			return nil
		}
	}
}

// packetWriter writes each chunk as one packet.
type packetWriter struct{ c *net.UnixConn }

func (p packetWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), attachWriteSize)
		m, err := p.c.Write(b[:n])
		written += m
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

// forwardResize writes the sizes from resize into conmon's control FIFO.
func (r *Runtime) forwardResize(id, ctl string, resize <-chan TerminalSize, done <-chan struct{}) {
	// O_NONBLOCK: fails with ENXIO instead of blocking when no conmon
	// holds the FIFO's read side.
	f, err := os.OpenFile(ctl, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		r.log.Warn("attach: cannot resize terminal", "container", id, "err", err)
		return
	}
	defer f.Close()
	for {
		select {
		case size, ok := <-resize:
			if !ok {
				return
			}
			if _, err := fmt.Fprintf(f, "1 %d %d\n", size.Height, size.Width); err != nil {
				r.log.Warn("attach: resize terminal", "container", id, "err", err)
			}
		case <-done:
			return
		}
	}
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) {
		return nil
	}
	return err
}
