package network

import (
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

func TestParseResult(t *testing.T) {
	idx := func(i int) *int { return &i }
	ipn := func(s string) net.IPNet {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return *n
	}
	ifaces := []*current.Interface{{Name: "crid0"}, {Name: "veth1"}, {Name: "eth0", Sandbox: "/run/ns/net"}}
	tests := []struct {
		name    string
		res     types.Result
		want    string
		wantErr bool
	}{
		{name: "v6 listed first is sorted after v4", res: &current.Result{CNIVersion: "1.0.0", Interfaces: ifaces, IPs: []*current.IPConfig{
			{Interface: idx(2), Address: ipn("fd00::2/64")},
			{Interface: idx(2), Address: ipn("10.0.0.2/24")},
		}}, want: "[10.0.0.2 fd00::2] eth0"},
		{name: "host-side IPs are not the pod's", res: &current.Result{CNIVersion: "1.0.0", Interfaces: ifaces, IPs: []*current.IPConfig{
			{Interface: idx(0), Address: ipn("10.0.0.1/24")},
			{Interface: idx(2), Address: ipn("10.0.0.3/24")},
		}}, want: "[10.0.0.3] eth0"},
		{name: "no interface index", res: &current.Result{CNIVersion: "1.0.0", IPs: []*current.IPConfig{
			{Address: ipn("10.0.0.4/24")},
		}}, want: "[10.0.0.4] eth0"},
		{name: "no IPs", res: &current.Result{CNIVersion: "1.0.0", Interfaces: ifaces}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseResult(tt.res)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprintf("%v %s", got.IPs, got.Interface); s != tt.want {
				t.Errorf("got %s, want %s", s, tt.want)
			}
		})
	}
}

func TestSkipIdle(t *testing.T) {
	list, err := libcni.NetworkConfFromBytes([]byte(conflist("n", "b", "10.1.0.0/24", "", "/tmp/x")))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		caps map[string]any
		want int
	}{
		{name: "no port mappings skips portmap", caps: map[string]any{}, want: 1},
		{name: "port mappings keep portmap", caps: map[string]any{"portMappings": []portMapping{{HostPort: 1, ContainerPort: 1, Protocol: "tcp"}}}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := skipIdle(list, &libcni.RuntimeConf{CapabilityArgs: tt.caps})
			if len(got.Plugins) != tt.want {
				t.Errorf("%d plugins, want %d", len(got.Plugins), tt.want)
			}
			if string(got.Bytes) != string(list.Bytes) || len(list.Plugins) != 2 {
				t.Error("skipIdle changed the cached config or the original list")
			}
		})
	}
}

// TestShippedConflist checks that the default network hack/setup.sh
// installs loads with the plugins installed here.
func TestShippedConflist(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "hack", "cni")
	got := loadConfig(dir, DefaultBinDirs, discardLog())
	if got.list == nil {
		t.Skipf("not loadable here (plugins missing?): %s", got.msg)
	}
	if got.list.Name != "crid" || got.list.CNIVersion != "1.0.0" || len(got.list.Plugins) != 2 {
		t.Errorf("unexpected shipped network: %+v", got.list)
	}
}
