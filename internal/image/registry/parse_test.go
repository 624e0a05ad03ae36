package registry

import (
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseHostsFile(t *testing.T) {
	const dir = "/etc/crid/certs.d/docker.io"
	file := filepath.Join(dir, "hosts.toml")
	yes, no := true, false
	tests := []struct {
		name string
		toml string
		want []hostConfig
	}{{
		name: "empty file means one server entry to default",
		toml: "# nothing\n",
		want: []hostConfig{{capabilities: defaultCapabilities}},
	}, {
		name: "all top-level fields",
		toml: `
server = "https://registry-1.docker.io"
capabilities = ["pull", "Resolve"]
ca = "ca.pem"
client = [["client.cert", "/abs/client.key"], "both.pem"]
skip_verify = false
dial_timeout = "2s"
[header]
  x-one = "1"
  X-Two = ["a", "b"]
`,
		want: []hostConfig{{
			scheme: "https", host: "registry-1.docker.io", path: "/v2",
			capabilities: []string{"pull", "resolve"},
			caCerts:      []string{dir + "/ca.pem"},
			clientPairs:  [][2]string{{dir + "/client.cert", "/abs/client.key"}, {dir + "/both.pem", ""}},
			skipVerify:   &no,
			dialTimeout:  2 * time.Second,
			header:       http.Header{"X-One": {"1"}, "X-Two": {"a", "b"}},
		}},
	}, {
		name: "mirrors in file order, then server",
		toml: `
server = "https://registry-1.docker.io"
[host."https://z.example"]
  capabilities = ["pull"]
[host."http://a.example:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = ["/abs/ca1.pem", "rel/ca2.pem"]
  client = "c.pem"
[host."https://z.example".header]
  x-late = "v"
[host."m.example"]
`,
		want: []hostConfig{
			{scheme: "https", host: "z.example", path: "/v2", capabilities: []string{"pull"}, mirror: true, header: http.Header{"X-Late": {"v"}}},
			{scheme: "http", host: "a.example:5000", path: "/v2", capabilities: []string{"pull", "resolve"}, mirror: true, skipVerify: &yes,
				caCerts: []string{"/abs/ca1.pem", dir + "/rel/ca2.pem"}, clientPairs: [][2]string{{dir + "/c.pem", ""}}},
			{scheme: "https", host: "m.example", path: "/v2", capabilities: defaultCapabilities, mirror: true},
			{scheme: "https", host: "registry-1.docker.io", path: "/v2", capabilities: defaultCapabilities},
		},
	}, {
		name: "dotted and inline mirrors keep order too",
		toml: `
host."https://b.example".capabilities = ["pull"]
host."https://a.example" = { capabilities = ["resolve"] }
`,
		want: []hostConfig{
			{scheme: "https", host: "b.example", path: "/v2", capabilities: []string{"pull"}, mirror: true},
			{scheme: "https", host: "a.example", path: "/v2", capabilities: []string{"resolve"}, mirror: true},
			{capabilities: defaultCapabilities},
		},
	}, {
		name: "paths: /v2 appended, kept, or overridden",
		toml: `
[host."https://m.example/sub"]
[host."https://m.example/already/v2/"]
[host."http://127.0.0.1:5000/v2/registry.k8s.io"]
  override_path = true
[host."https://root.example"]
  override_path = true
`,
		want: []hostConfig{
			{scheme: "https", host: "m.example", path: "/sub/v2", capabilities: defaultCapabilities, mirror: true},
			{scheme: "https", host: "m.example", path: "/already/v2", capabilities: defaultCapabilities, mirror: true},
			{scheme: "http", host: "127.0.0.1:5000", path: "/v2/registry.k8s.io", capabilities: defaultCapabilities, mirror: true},
			{scheme: "https", host: "root.example", path: "", capabilities: defaultCapabilities, mirror: true},
			{capabilities: defaultCapabilities},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHostsFile(file, []byte(tt.toml))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseHostsFileErrors(t *testing.T) {
	tests := []struct {
		name, toml, want string
	}{
		{"syntax", "server = \"https://x\"\n[host.\"https://m\"\ncapabilities = []\n", "hosts.toml:2:"},
		{"unterminated string", "\n\nserver = \"https://x\n", "hosts.toml:3:"},
		{"wrong type", "server = \"https://x\"\nskip_verify = \"yes\"\n", "hosts.toml:2:"},
		{"host not a table", "host = 5\n", "hosts.toml:1:"},
		{"unknown capability", "\n[host.\"https://m\"]\ncapabilities = [\"pull\", \"fly\"]\n", `hosts.toml:2: host "https://m": unknown capability "fly"`},
		{"bad client pair", "[host.\"https://m\"]\nclient = [[\"a\"]]\n", "hosts.toml:1:"},
		{"bad ca type", "ca = 3\n", "ca: want a path"},
		{"bad header", "[header]\nx = 1\n", `header "X"`},
		{"bad dial timeout", "dial_timeout = \"soon\"\n", "dial_timeout"},
		{"bad scheme", "server = \"httpx://m\"\n", "scheme must be http or https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseHostsFile("/d/hosts.toml", []byte(tt.toml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func FuzzParseHostsTOML(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("server = \"https://r\"\n[host.\"http://m/v2/x\"]\noverride_path = true\ncapabilities=[\"pull\"]\nca=[\"a\"]\nclient=[[\"a\",\"b\"],\"c\"]\n[host.\"http://m/v2/x\".header]\na=[\"b\"]\n"))
	f.Add([]byte("host = { \"a\" = { b = 1 } }\nhost.\"c\".d = [1, [2]]\n[[host]]\n"))
	f.Add([]byte("[host.\"\"]\n[host.\"::\"]\nserver = \"\\u0000\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		hosts, err := parseHostsFile("/d/hosts.toml", data)
		if err == nil && len(hosts) == 0 {
			t.Fatal("no error and no server entry")
		}
	})
}
