// Package streaming serves the CRI's streaming calls (Exec, Attach,
// PortForward): it validates a request, hands out a single-use URL from
// k8s.io/cri-streaming's request cache, and, when the client comes back
// to that URL over SPDY or WebSocket, runs the session against crid's
// containers and pods.
//
// The HTTP(S) server binds to loopback by default: the kubelet (or the
// API server it proxies for) and crictl reach it on the node itself.
package streaming
