package sandbox

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestWritePodFiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dns     *runtimeapi.DNSConfig
		hostNet bool
		want    []string
	}{
		{"dns config", &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"ns.svc", "svc"}, Options: []string{"ndots:5"}}, false,
			[]string{"search ns.svc svc\n", "nameserver 10.0.0.10\n", "options ndots:5\n"}},
		{"no dns config uses the host's", nil, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := &Sandbox{Dir: t.TempDir()}
			cfg := &runtimeapi.PodSandboxConfig{DnsConfig: tc.dns}
			if err := writePodFiles(sb, cfg, tc.hostNet, "podhost"); err != nil {
				t.Fatal(err)
			}
			resolv, _ := os.ReadFile(sb.ResolvConf())
			for _, w := range tc.want {
				if !strings.Contains(string(resolv), w) {
					t.Errorf("resolv.conf %q lacks %q", resolv, w)
				}
			}
			if tc.want == nil {
				host, _ := os.ReadFile("/etc/resolv.conf")
				if string(resolv) != string(host) {
					t.Errorf("resolv.conf %q, want the host's", resolv)
				}
			}
			if h, _ := os.ReadFile(sb.Hostname()); string(h) != "podhost\n" {
				t.Errorf("hostname file %q", h)
			}
			if h, _ := os.ReadFile(sb.Hosts()); !strings.Contains(string(h), "localhost") {
				t.Errorf("hosts file %q", h)
			}
		})
	}
}

func TestValidatePodPaths(t *testing.T) {
	for dir, ok := range map[string]bool{"": true, "/var/log/pods/x": true, "relative": false, "/var/log/../etc": false} {
		err := validatePodPaths(&runtimeapi.PodSandboxConfig{LogDirectory: dir})
		if (err == nil) != ok {
			t.Errorf("%q: %v", dir, err)
		}
	}
}

func TestMatch(t *testing.T) {
	raw, _ := proto.Marshal(&runtimeapi.PodSandboxConfig{Labels: map[string]string{"app": "web"}})
	sb := &Sandbox{ID: "abc123", State: StateReady, Config: raw}
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	for _, tc := range []struct {
		f    *runtimeapi.PodSandboxFilter
		want bool
	}{
		{nil, true},
		{&runtimeapi.PodSandboxFilter{Id: "abc"}, true},
		{&runtimeapi.PodSandboxFilter{Id: "b"}, false},
		{&runtimeapi.PodSandboxFilter{State: ready}, true},
		{&runtimeapi.PodSandboxFilter{State: notReady}, false},
		{&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web"}}, true},
		{&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "db"}}, false},
	} {
		if got := sb.Match(tc.f); got != tc.want {
			t.Errorf("%v: %v", tc.f, got)
		}
	}
}
