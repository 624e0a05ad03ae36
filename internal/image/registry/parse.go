package registry

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Capability names accepted in hosts.toml, as containerd spells them.
const (
	CapPull      = "pull"
	CapResolve   = "resolve"
	CapPush      = "push"
	CapReferrers = "referrers"
)

// defaultCapabilities applies when a host lists none: containerd then trusts
// the host with everything.
var defaultCapabilities = []string{CapPull, CapResolve, CapPush, CapReferrers}

// hostConfig is one parsed entry of a hosts.toml (a mirror or the server),
// before any file is read or transport built.
type hostConfig struct {
	scheme string
	host   string // empty for a server entry still to be defaulted
	path   string

	capabilities []string
	caCerts      []string
	clientPairs  [][2]string // [cert, key]; an empty key means the key is in the cert file
	skipVerify   *bool
	dialTimeout  time.Duration
	header       http.Header
	mirror       bool
}

// hostFields are the keys allowed both at the top level and in a [host."..."]
// table. ca, client and header take several shapes, so they decode to any.
type hostFields struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

type hostsFile struct {
	hostFields
	Server string                `toml:"server"`
	Host   map[string]hostFields `toml:"host"`
}

// parseHostsFile parses a hosts.toml read from file (used for messages, and
// whose directory anchors relative paths). It returns the mirrors in file order
// followed by the server entry, which is always present.
func parseHostsFile(file string, data []byte) ([]hostConfig, error) {
	var f hostsFile
	if err := toml.Unmarshal(data, &f); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, fmt.Errorf("%s:%d:%d: %w", file, line, col, err)
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	// The map above loses the order of [host."..."] tables, which is the order
	// mirrors are tried in; a second pass over the syntax tree recovers it,
	// and the lines of keys for the errors below.
	ix, err := indexKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	order := ix.hosts
	for h := range f.Host {
		if !slices.Contains(order, h) {
			order = append(order, h) // cannot happen if the index is right; stay total anyway
		}
	}
	slices.Sort(order[len(ix.hosts):])

	dir := filepath.Dir(file)
	var out []hostConfig
	for _, h := range order {
		hc, err := parseHostConfig(h, dir, f.Host[h])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: host %q: %w", file, ix.line("host", h), h, err)
		}
		hc.mirror = true
		out = append(out, hc)
	}
	hc, err := parseHostConfig(f.Server, dir, f.hostFields)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", file, ix.line("server"), err)
	}
	return append(out, hc), nil
}

// parseHostConfig turns one table into a hostConfig. server is the table's URL
// ("" for a top level without server, to be defaulted by the caller).
func parseHostConfig(server, dir string, c hostFields) (hostConfig, error) {
	var r hostConfig
	if server != "" {
		// containerd treats anything not starting with "http" as a bare host.
		if !strings.HasPrefix(server, "http") {
			server = "https://" + server
		}
		u, err := url.Parse(server)
		if err != nil {
			return r, fmt.Errorf("parse server URL %q: %w", server, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return r, fmt.Errorf("server URL %q: scheme must be http or https", server)
		}
		if u.Host == "" {
			return r, fmt.Errorf("server URL %q has no host", server)
		}
		r.scheme, r.host = u.Scheme, u.Host
		r.path = apiRoot(u.Path, c.OverridePath)
	}

	r.capabilities = defaultCapabilities
	if len(c.Capabilities) > 0 {
		r.capabilities = nil
		for _, cp := range c.Capabilities {
			cp = strings.ToLower(cp)
			switch cp {
			case CapPull, CapResolve, CapPush, CapReferrers:
			default:
				return r, fmt.Errorf("unknown capability %q", cp)
			}
			if !slices.Contains(r.capabilities, cp) {
				r.capabilities = append(r.capabilities, cp)
			}
		}
	}

	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	switch ca := c.CA.(type) {
	case nil:
	case string:
		r.caCerts = []string{abs(ca)}
	case []any:
		s, err := stringSlice(ca)
		if err != nil {
			return r, fmt.Errorf("ca: %w", err)
		}
		for _, p := range s {
			r.caCerts = append(r.caCerts, abs(p))
		}
	default:
		return r, fmt.Errorf("ca: want a path or an array of paths, got %T", ca)
	}

	switch cl := c.Client.(type) {
	case nil:
	case string:
		r.clientPairs = [][2]string{{abs(cl), ""}}
	case []any:
		for _, e := range cl {
			switch p := e.(type) {
			case string:
				r.clientPairs = append(r.clientPairs, [2]string{abs(p), ""})
			case []any:
				s, err := stringSlice(p)
				if err != nil {
					return r, fmt.Errorf("client: %w", err)
				}
				if len(s) != 2 {
					return r, fmt.Errorf("client: pair %q must have two elements [cert, key]", s)
				}
				r.clientPairs = append(r.clientPairs, [2]string{abs(s[0]), abs(s[1])})
			default:
				return r, fmt.Errorf("client: want a path or [cert, key], got %T", e)
			}
		}
	default:
		return r, fmt.Errorf("client: want a path or an array, got %T", cl)
	}

	r.skipVerify = c.SkipVerify

	if c.Header != nil {
		r.header = http.Header{}
		for k, v := range c.Header {
			k = http.CanonicalHeaderKey(k)
			switch v := v.(type) {
			case string:
				r.header[k] = []string{v}
			case []any:
				s, err := stringSlice(v)
				if err != nil {
					return r, fmt.Errorf("header %q: %w", k, err)
				}
				r.header[k] = s
			default:
				return r, fmt.Errorf("header %q: want a string or an array of strings, got %T", k, v)
			}
		}
	}

	if c.DialTimeout != "" {
		d, err := time.ParseDuration(c.DialTimeout)
		if err != nil {
			return r, fmt.Errorf("dial_timeout: %w", err)
		}
		r.dialTimeout = d
	}
	return r, nil
}

// apiRoot is containerd's rule: the path of a host URL is cleaned and gets
// "/v2" appended unless it already ends so, or override_path says the path is
// the API root as is.
func apiRoot(p string, override bool) string {
	if p == "" {
		if override {
			return ""
		}
		return "/v2"
	}
	p = path.Clean(p)
	if !override && !strings.HasSuffix(p, "/v2") {
		p = strings.TrimSuffix(p, "/") + "/v2"
	}
	return p
}

func stringSlice(in []any) ([]string, error) {
	out := make([]string, len(in))
	for i, v := range in {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("element %d: want a string, got %T", i, v)
		}
		out[i] = s
	}
	return out, nil
}

// keyIndex records, from the syntax tree, the order in which mirrors first
// appear and the line each key is set on.
type keyIndex struct {
	hosts []string
	lines map[string]int
}

const keySep = "\x00"

// line returns the line of the longest recorded prefix of key, or 0.
func (ix keyIndex) line(key ...string) int {
	for n := len(key); n > 0; n-- {
		if l, ok := ix.lines[strings.Join(key[:n], keySep)]; ok {
			return l
		}
	}
	return 0
}

func indexKeys(data []byte) (keyIndex, error) {
	ix := keyIndex{lines: map[string]int{}}
	var p unstable.Parser
	p.Reset(data)
	record := func(key []string, line int) {
		if len(key) >= 2 && key[0] == "host" && !slices.Contains(ix.hosts, key[1]) {
			ix.hosts = append(ix.hosts, key[1])
		}
		k := strings.Join(key, keySep)
		if _, ok := ix.lines[k]; !ok {
			ix.lines[k] = line
		}
	}
	// Mirrors can be written as [host."u"] tables, as dotted keys
	// (host."u".capabilities = ...) or as inline tables (host = {"u" = {...}});
	// containerd only orders the first form, so order all three.
	var walk func(prefix []string, kv *unstable.Node)
	walk = func(prefix []string, kv *unstable.Node) {
		key, line := keyOf(&p, kv)
		full := append(slices.Clone(prefix), key...)
		record(full, line)
		if v := kv.Value(); v != nil && v.Kind == unstable.InlineTable {
			for it := v.Children(); it.Next(); {
				if n := it.Node(); n.Kind == unstable.KeyValue {
					walk(full, n)
				}
			}
		}
	}
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			key, line := keyOf(&p, e)
			table = key
			record(key, line)
		case unstable.KeyValue:
			walk(table, e)
		}
	}
	return ix, p.Error()
}

func keyOf(p *unstable.Parser, n *unstable.Node) ([]string, int) {
	var key []string
	line := 0
	for it := n.Key(); it.Next(); {
		k := it.Node()
		if line == 0 && k.Raw.Length > 0 {
			line = p.Shape(k.Raw).Start.Line
		}
		key = append(key, string(k.Data))
	}
	return key, line
}
