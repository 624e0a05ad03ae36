package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/crid-project/crid/internal/namespaces"
)

// dialTimeout bounds connecting inside the pod.
const dialTimeout = 5 * time.Second

// PortForward connects stream to port in the pod's network namespace (the
// host's for host-network pods). The library reports a returned error on
// the session's error stream, so a port nobody listens on fails that one
// stream, not the connection.
func (r *sessions) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	sb, err := r.pods.Get(podID)
	if err != nil {
		return err
	}
	var conn net.Conn
	dial := func() error {
		var err error
		conn, err = dialPod(ctx, port, sb.IPs)
		return err
	}
	if netns := sb.Namespaces[namespaces.Net]; netns != "" {
		// The socket stays in the namespace it was made in; only the
		// dial needs the thread there.
		err = namespaces.Do(netns, dial)
	} else {
		err = dial()
	}
	if err != nil {
		return fmt.Errorf("connect to port %d in pod %s: %w", port, sb.ID, err)
	}
	defer conn.Close()
	r.log.Debug("port forward", "pod", sb.ID, "port", port, "to", conn.RemoteAddr().String())

	toPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		// The client finished sending: pass the half-close on, and let
		// the server's reply finish.
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		toPod <- err
	}()
	_, err = io.Copy(stream, conn)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("port %d in pod %s: %w", port, sb.ID, err)
	}
	return nil
}

// dialPod connects to port on the pod's loopback (IPv4, then IPv6), then
// on its addresses, as kubectl port-forward users expect "localhost" in
// the pod, and servers bound to the pod IP only are reached too.
func dialPod(ctx context.Context, port int32, ips []string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	p := strconv.Itoa(int(port))
	var first error
	for _, host := range append([]string{"127.0.0.1", "::1"}, ips...) {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, p))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}
