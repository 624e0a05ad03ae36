// Package registry reads per-registry host configuration in containerd's
// hosts.toml directory layout (certs.d) and turns it into the endpoints, with
// ready HTTP transports, that an image pull should try for a registry.
//
// Operators can point crid at the directory they already use for containerd:
// one <registry host>/hosts.toml per registry (a port is spelled "host:port"
// or "host_port_"), _default/hosts.toml for every other registry, and, for a
// directory without hosts.toml, Docker's layout of *.crt CA files and
// *.cert/*.key client pairs.
package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultDir is where crid looks for host directories unless told otherwise.
const DefaultDir = "/etc/crid/certs.d"

// Endpoint is one place to fetch a registry's content from.
type Endpoint struct {
	// URL is scheme://host[:port]/api-root, e.g. https://registry-1.docker.io/v2,
	// or http://127.0.0.1:5000/v2/registry.k8s.io for an override_path mirror.
	URL *url.URL
	// Capabilities are what this host is trusted with: "pull", "resolve",
	// "push", "referrers". Resolving a tag must only use "resolve" hosts.
	Capabilities []string
	// Mirror is false for the server (upstream) entry.
	Mirror bool
	// Header holds the configured extra headers; Transport already sends them.
	Header http.Header
	// Transport has the TLS settings of the host and sends requests made for
	// the upstream registry's /v2 API to URL instead (see rewriteTransport).
	// Use it with a reference that names the upstream registry.
	Transport http.RoundTripper
}

// Can reports whether the endpoint has capability c.
func (e Endpoint) Can(c string) bool { return slices.Contains(e.Capabilities, c) }

// Hosts resolves registry hosts to endpoints from a certs.d directory. Parsed
// configuration and the transports built from it are cached per registry and
// reused until one of the files they came from changes, so connections are
// kept across pulls while edits still apply without a restart (as containerd
// documents for its own directory). Safe for concurrent use.
type Hosts struct {
	dir  string
	base *http.Transport

	mu    sync.Mutex
	cache map[string]*cacheEntry
}

type cacheEntry struct {
	stamps    []fileStamp
	endpoints []Endpoint
}

// NewHosts returns a Hosts reading dir ("" means DefaultDir). Nothing is read
// until Endpoints is called.
func NewHosts(dir string) *Hosts {
	if dir == "" {
		dir = DefaultDir
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	return &Hosts{dir: dir, base: base, cache: map[string]*cacheEntry{}}
}

// Endpoints returns the endpoints to try for registry host (as written in an
// image reference: "docker.io", "registry.k8s.io", "localhost:5000"): the
// mirrors in file order, then the server. Only endpoints that can "pull" or
// "resolve" are returned; check Capabilities before resolving a tag on one.
// A missing directory or file means just the default upstream; a malformed
// hosts.toml is an error naming the file and line. "index.docker.io", as
// go-containerregistry spells Docker Hub, is taken as "docker.io".
func (h *Hosts) Endpoints(host string) ([]Endpoint, error) {
	if host == "index.docker.io" {
		host = "docker.io" // the name operators give the directory, as in containerd
	}
	if err := checkHost(host); err != nil {
		return nil, err
	}
	h.mu.Lock()
	e := h.cache[host]
	h.mu.Unlock()
	if e != nil && stampsCurrent(e.stamps) {
		return cloneEndpoints(e.endpoints), nil
	}

	eps, stamps, err := h.load(host)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.cache[host] = &cacheEntry{stamps: stamps, endpoints: eps}
	h.mu.Unlock()
	return cloneEndpoints(eps), nil
}

// checkHost refuses names that would leave the config directory when joined
// to it; references are validated elsewhere, but this is a file lookup.
func checkHost(host string) error {
	if host == "" || host == "." || host == ".." || strings.ContainsAny(host, `/\`) || strings.ContainsRune(host, 0) {
		return fmt.Errorf("registry host %q: invalid name", host)
	}
	return nil
}

func (h *Hosts) load(host string) ([]Endpoint, []fileStamp, error) {
	var watched []string
	candidates := hostDirs(h.dir, host)
	watched = append(watched, candidates...)

	var cfgs []hostConfig
	for _, dir := range candidates {
		fi, err := os.Stat(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("registry host %s: %w", host, err)
		}
		if !fi.IsDir() {
			continue
		}
		file := filepath.Join(dir, "hosts.toml")
		watched = append(watched, file)
		data, err := os.ReadFile(file)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("registry host %s: %w", host, err)
		}
		if len(data) == 0 {
			// containerd treats an empty or missing hosts.toml alike: use the
			// Docker certs.d layout of the directory.
			cfgs, err = loadCertFiles(dir)
			if err != nil {
				return nil, nil, fmt.Errorf("registry host %s: %w", host, err)
			}
		} else {
			cfgs, err = parseHostsFile(file, data)
			if err != nil {
				return nil, nil, err
			}
		}
		break
	}
	if cfgs == nil {
		cfgs = []hostConfig{{capabilities: defaultCapabilities}}
	}
	defaultServer(&cfgs[len(cfgs)-1], host)

	var eps []Endpoint
	for _, c := range cfgs {
		watched = append(watched, c.caCerts...)
		for _, p := range c.clientPairs {
			watched = append(watched, p[0])
			if p[1] != "" {
				watched = append(watched, p[1])
			}
		}
		if !slices.Contains(c.capabilities, CapPull) && !slices.Contains(c.capabilities, CapResolve) {
			continue
		}
		ep, err := h.endpoint(host, c)
		if err != nil {
			return nil, nil, fmt.Errorf("registry host %s: %w", host, err)
		}
		eps = append(eps, ep)
	}
	return eps, stampFiles(watched), nil
}

// hostDirs lists the directories containerd (on Unix) looks in, best first:
// "host_port_" for a host with a port, the host as written, then _default.
func hostDirs(root, host string) []string {
	var dirs []string
	if i := strings.LastIndex(host, ":"); i > 0 {
		dirs = append(dirs, filepath.Join(root, host[:i]+"_"+host[i+1:]+"_"))
	}
	return append(dirs, filepath.Join(root, host), filepath.Join(root, "_default"))
}

// defaultServer fills in a server entry that has no URL the way containerd
// does: docker.io is served by registry-1.docker.io; a localhost registry on
// a port other than 80 or 443 is tried with https (unverified) and then plain
// http; port 80 is plain http; anything else is https.
func defaultServer(c *hostConfig, host string) {
	if c.host != "" {
		return
	}
	c.path = "/v2"
	c.host = host
	c.scheme = "https"
	switch {
	case host == "docker.io":
		c.host = "registry-1.docker.io"
	case isLocalhost(host):
		_, port, _ := net.SplitHostPort(host)
		if port == "80" {
			c.scheme = "http"
			break
		}
		if c.skipVerify == nil {
			t := true
			c.skipVerify = &t
		}
		if port != "" && port != "443" {
			c.scheme = "http" // made https-with-fallback by endpoint, as any http host with TLS settings
		}
	}
}

func isLocalhost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// endpoint builds the Endpoint, reading the TLS files, for one entry.
func (h *Hosts) endpoint(upstream string, c hostConfig) (Endpoint, error) {
	u := &url.URL{Scheme: c.scheme, Host: c.host, Path: c.path}
	tr := h.base
	explicitTLS := c.caCerts != nil || c.clientPairs != nil || c.skipVerify != nil
	if explicitTLS || c.dialTimeout > 0 {
		tr = h.base.Clone()
		if explicitTLS {
			if err := configureTLS(tr, c); err != nil {
				return Endpoint{}, fmt.Errorf("host %s: %w", u, err)
			}
		}
		if c.dialTimeout > 0 {
			tr.DialContext = (&net.Dialer{Timeout: c.dialTimeout, KeepAlive: 30 * time.Second}).DialContext
		}
	}
	// containerd: an http host that also has TLS settings is tried with https
	// first, falling back to http on a TLS-level failure, unless on port 80.
	fallback := false
	if u.Scheme == "http" && explicitTLS {
		if _, port, _ := net.SplitHostPort(u.Host); port != "80" {
			u.Scheme = "https"
			fallback = true
		}
	}
	return Endpoint{
		URL:          u,
		Capabilities: slices.Clone(c.capabilities),
		Mirror:       c.mirror,
		Header:       c.header.Clone(),
		Transport:    newRewriteTransport(tr, upstream, u, c.header, fallback),
	}, nil
}

func cloneEndpoints(in []Endpoint) []Endpoint {
	out := make([]Endpoint, len(in))
	for i, e := range in {
		u := *e.URL
		e.URL = &u
		e.Capabilities = slices.Clone(e.Capabilities)
		e.Header = e.Header.Clone()
		out[i] = e
	}
	return out
}

// fileStamp is what is compared to notice that a config file changed.
type fileStamp struct {
	path    string
	exists  bool
	modTime int64 // UnixNano
	size    int64
}

func stampFiles(paths []string) []fileStamp {
	out := make([]fileStamp, 0, len(paths))
	for _, p := range paths {
		out = append(out, stamp(p))
	}
	return out
}

func stamp(p string) fileStamp {
	fi, err := os.Stat(p)
	if err != nil {
		return fileStamp{path: p}
	}
	// A directory's mtime moves when entries are added or removed, which
	// covers a new hosts.toml or *.crt file.
	return fileStamp{path: p, exists: true, modTime: fi.ModTime().UnixNano(), size: fi.Size()}
}

func stampsCurrent(s []fileStamp) bool {
	for _, st := range s {
		if stamp(st.path) != st {
			return false
		}
	}
	return true
}
