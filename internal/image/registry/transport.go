package registry

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
)

// rewriteTransport makes a client that talks to the upstream registry (as
// go-containerregistry does, with a reference naming the upstream so that
// auth scopes and repository names stay right) reach one endpoint instead:
//
//   - a request to the upstream host whose path is /v2 or under it goes to
//     endpoint URL + the rest of the path; for a mirror that is not the
//     upstream, repository requests get containerd's ?ns=<upstream> query;
//   - any other request (token realm, blob storage redirect) is sent as is;
//   - every request gets the configured headers and the endpoint's TLS.
//
// A Location header pointing back into the endpoint is mapped to the upstream
// spelling, so redirects and upload URLs go through the same rewrite instead
// of having the API root prefixed twice.
type rewriteTransport struct {
	inner    http.RoundTripper
	names    []string // how clients may spell the upstream host, normalized
	ep       *url.URL
	header   http.Header
	ns       string // ns query value, "" when the endpoint is the upstream itself
	fallback bool   // try https, then http on a TLS-level failure
	plain    atomic.Bool
}

func newRewriteTransport(inner http.RoundTripper, upstream string, ep *url.URL, header http.Header, fallback bool) *rewriteTransport {
	names := []string{upstream}
	if upstream == "docker.io" {
		// go-containerregistry rewrites docker.io to index.docker.io;
		// registry-1.docker.io is where containerd sends it.
		names = append(names, "index.docker.io", "registry-1.docker.io")
	}
	for i, n := range names {
		names[i] = normalizeHost(n, "")
	}
	t := &rewriteTransport{inner: inner, names: names, ep: ep, header: header, fallback: fallback}
	// containerd's RegistryHost.isProxy: any host but the reference's own is
	// told which namespace is meant, except docker.io's real API host.
	if ep.Host != upstream && (upstream != "docker.io" || ep.Host != "registry-1.docker.io") {
		t.ns = upstream
	}
	return t
}

// normalizeHost lower-cases a host and drops the port implied by scheme, so
// "Registry.example:443" and "registry.example" compare equal.
func normalizeHost(host, scheme string) string {
	host = strings.ToLower(host)
	if h, port, err := net.SplitHostPort(host); err == nil {
		if (port == "443" && scheme != "http") || (port == "80" && scheme == "http") {
			return h
		}
	}
	return host
}

func (t *rewriteTransport) isUpstream(u *url.URL) bool {
	return slices.Contains(t.names, normalizeHost(u.Host, u.Scheme))
}

func (t *rewriteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := req.URL.Path
	if !t.isUpstream(req.URL) || (p != "/v2" && !strings.HasPrefix(p, "/v2/")) {
		out := req
		if len(t.header) > 0 {
			out = req.Clone(req.Context())
			t.addHeaders(out)
		}
		return t.send(out)
	}

	rest := p[len("/v2"):]
	out := req.Clone(req.Context())
	out.Host = "" // send the endpoint's Host header, not the upstream's
	out.URL.Scheme = t.ep.Scheme
	out.URL.Host = t.ep.Host
	root := strings.TrimSuffix(t.ep.Path, "/")
	out.URL.Path = root + rest
	out.URL.RawPath = ""
	if req.URL.RawPath != "" {
		if esc := req.URL.EscapedPath(); strings.HasPrefix(esc, "/v2") {
			out.URL.RawPath = strings.TrimSuffix(t.ep.EscapedPath(), "/") + esc[len("/v2"):]
		}
	}
	ping := rest == "" || rest == "/"
	if !ping && t.ns != "" {
		q := out.URL.Query()
		if !q.Has("ns") {
			q.Set("ns", t.ns)
			out.URL.RawQuery = q.Encode()
		}
	}
	t.addHeaders(out)

	resp, err := t.send(out)
	if err != nil {
		return nil, err
	}
	if ping && resp.StatusCode == http.StatusNotFound && !strings.HasSuffix(root, "/v2") {
		return t.pingFallback(out, resp)
	}
	t.fixLocation(resp, out.URL, req.URL)
	return resp, nil
}

// pingFallback handles the version check (GET /v2/) against an override_path
// endpoint whose API root does not answer it: go-containerregistry pings
// before anything else, containerd never does, so containerd-compatible
// mirrors need not implement it there. Ask the host's own /v2/ (which may
// carry the auth challenge), and failing that answer "no auth needed" so the
// real requests decide.
func (t *rewriteTransport) pingFallback(sent *http.Request, notFound *http.Response) (*http.Response, error) {
	drain(notFound)
	alt := sent.Clone(sent.Context())
	alt.URL.Path, alt.URL.RawPath = "/v2/", ""
	resp, err := t.send(alt)
	if err == nil && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized) {
		return resp, nil
	}
	if err == nil {
		drain(resp)
	}
	return &http.Response{
		Status:     "200 OK",
		StatusCode: http.StatusOK,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"Docker-Distribution-Api-Version": {"registry/2.0"}},
		Body:       http.NoBody,
		Request:    sent,
	}, nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// fixLocation makes a Location header absolute, and maps one inside the
// endpoint's API root back to the upstream /v2 form the client started from.
func (t *rewriteTransport) fixLocation(resp *http.Response, sent, orig *url.URL) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return
	}
	u, err := sent.Parse(loc)
	if err != nil {
		return
	}
	root := strings.TrimSuffix(t.ep.Path, "/")
	if strings.EqualFold(u.Host, t.ep.Host) && (u.Path == root || strings.HasPrefix(u.Path, root+"/")) {
		u.Scheme, u.Host = orig.Scheme, orig.Host
		u.Path, u.RawPath = "/v2"+u.Path[len(root):], ""
		if t.ns != "" {
			if q := u.Query(); q.Get("ns") == t.ns {
				q.Del("ns") // added again on the way out
				u.RawQuery = q.Encode()
			}
		}
	}
	resp.Header.Set("Location", u.String())
}

func (t *rewriteTransport) addHeaders(r *http.Request) {
	for k, vs := range t.header {
		have := r.Header.Values(k)
		for _, v := range vs {
			if !slices.Contains(have, v) {
				r.Header.Add(k, v)
			}
		}
	}
}

// send applies the https-then-http fallback for the endpoint's own host,
// remembering once http worked (containerd's HTTPFallback).
func (t *rewriteTransport) send(r *http.Request) (*http.Response, error) {
	if !t.fallback || r.URL.Scheme != "https" || !strings.EqualFold(r.URL.Host, t.ep.Host) {
		return t.inner.RoundTrip(r)
	}
	if !t.plain.Load() {
		resp, err := t.inner.RoundTrip(r)
		if !isTLSError(err) {
			return resp, err
		}
		plain := r.Clone(r.Context())
		if r.Body != nil && r.Body != http.NoBody {
			if r.GetBody == nil {
				return nil, err // the body is gone; cannot resend
			}
			b, gerr := r.GetBody()
			if gerr != nil {
				return nil, errors.Join(err, gerr)
			}
			plain.Body = b
		}
		t.plain.Store(true)
		r = plain
	} else {
		r = r.Clone(r.Context())
	}
	r.URL.Scheme = "http"
	r.Host = ""
	return t.inner.RoundTrip(r)
}

// isTLSError reports a failure that means the server does not speak TLS.
func isTLSError(err error) bool {
	if err == nil {
		return false
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" {
		return true
	}
	return strings.Contains(err.Error(), "TLS handshake timeout")
}
