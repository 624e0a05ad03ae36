package network

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/crid-project/crid/internal/namespaces"
)

// testNet is a throwaway bridge network: its own bridge name, subnet, IPAM
// dir, cache dir and config dir, all removed by t.Cleanup.
type testNet struct {
	bridge   string
	subnet   *net.IPNet
	subnet6  *net.IPNet
	name     string
	confDir  string
	ipamDir  string
	cacheDir string
	mgr      *Manager
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root")
	}
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			tb.Skipf("CNI plugin %s not installed: %v", p, err)
		}
	}
}

func randHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randInt(tb testing.TB, lo, hi int64) int64 {
	tb.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(hi-lo))
	if err != nil {
		tb.Fatal(err)
	}
	return lo + n.Int64()
}

// conflist renders a bridge+portmap network like hack/cni's default.
func conflist(name, bridge, subnet, subnet6, dataDir string) string {
	ranges := fmt.Sprintf(`[[{"subnet": %q}]`, subnet)
	routes := `[{"dst": "0.0.0.0/0"}`
	if subnet6 != "" {
		ranges += fmt.Sprintf(`, [{"subnet": %q}]`, subnet6)
		routes += `, {"dst": "::/0"}`
	}
	ranges += "]"
	routes += "]"
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": %s, "routes": %s}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}`, name, bridge, dataDir, ranges, routes)
}

func newTestNet(tb testing.TB, v6 bool) *testNet {
	tb.Helper()
	id := randHex(tb, 4)
	third := randInt(tb, 1, 255)
	tn := &testNet{
		bridge:   "crt" + id, // interface names are limited to 15 bytes
		name:     "crid-test-" + id,
		confDir:  tb.TempDir(),
		ipamDir:  tb.TempDir(),
		cacheDir: tb.TempDir(),
	}
	_, tn.subnet, _ = net.ParseCIDR(fmt.Sprintf("10.244.%d.0/24", third))
	s6 := ""
	if v6 {
		s6 = fmt.Sprintf("fd00:%s::/64", id[:4])
		_, tn.subnet6, _ = net.ParseCIDR(s6)
	}
	cleanupFirewall(tb, tn)
	conf := conflist(tn.name, tn.bridge, tn.subnet.String(), s6, tn.ipamDir)
	if err := os.WriteFile(filepath.Join(tn.confDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	mgr, err := New(Config{ConfDir: tn.confDir, BinDirs: []string{"/usr/lib/cni"}, CacheDir: tn.cacheDir}, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = mgr.Close() })
	tn.mgr = mgr
	return tn
}

// cleanupFirewall registers cleanup of everything the bridge and portmap
// plugins leave on the host for this network: the bridge (and its
// route_localnet sysctl with it), rules naming the network, per-pod chains,
// the shared CNI-HOSTPORT-* chains if this test created them, and the
// forwarding sysctls the bridge plugin turns on.
func cleanupFirewall(tb testing.TB, tn *testNet) {
	tb.Helper()
	sysctls := []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}
	saved := map[string][]byte{}
	for _, s := range sysctls {
		if v, err := os.ReadFile(s); err == nil {
			saved[s] = v
		}
	}
	before := map[string]map[string]bool{}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		before[cmd] = chains(tb, cmd)
	}
	tb.Cleanup(func() {
		if l, err := netlink.LinkByName(tn.bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				tb.Errorf("delete bridge %s: %v", tn.bridge, err)
			}
		}
		for _, cmd := range []string{"iptables", "ip6tables"} {
			for _, r := range rulesMatching(tb, cmd, tn.name) {
				tb.Logf("removing leftover %s rule: %s", cmd, r)
				run(tb, cmd, append([]string{"-t", "nat", "-D"}, splitRule(r)[1:]...)...)
			}
			for c := range chains(tb, cmd) {
				if !before[cmd][c] && strings.HasPrefix(c, "CNI-") && !strings.HasPrefix(c, "CNI-HOSTPORT-") {
					tb.Logf("removing leftover %s chain %s", cmd, c)
					run(tb, cmd, "-t", "nat", "-F", c)
					run(tb, cmd, "-t", "nat", "-X", c)
				}
			}
			// Shared portmap chains: only remove what the test made,
			// jumps first, then the chains.
			for _, r := range rulesMatching(tb, cmd, "CNI-HOSTPORT-") {
				f := splitRule(r)
				if !before[cmd]["CNI-HOSTPORT-DNAT"] && !strings.HasPrefix(f[1], "CNI-HOSTPORT-") {
					run(tb, cmd, append([]string{"-t", "nat", "-D"}, f[1:]...)...)
				}
			}
			for c := range chains(tb, cmd) {
				if !before[cmd][c] && strings.HasPrefix(c, "CNI-HOSTPORT-") {
					run(tb, cmd, "-t", "nat", "-F", c)
				}
			}
			for c := range chains(tb, cmd) {
				if !before[cmd][c] && strings.HasPrefix(c, "CNI-HOSTPORT-") {
					run(tb, cmd, "-t", "nat", "-X", c)
				}
			}
		}
		for s, v := range saved {
			_ = os.WriteFile(s, v, 0o644)
		}
	})
}

func run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// chains lists the nat table's chains.
func chains(tb testing.TB, cmd string) map[string]bool {
	tb.Helper()
	out := map[string]bool{}
	for _, l := range strings.Split(run(tb, cmd+"-save", "-t", "nat"), "\n") {
		if strings.HasPrefix(l, ":") {
			out[strings.Fields(l[1:])[0]] = true
		}
	}
	return out
}

// rulesMatching lists nat rules ("-A ...") containing s.
func rulesMatching(tb testing.TB, cmd, s string) []string {
	tb.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(run(tb, cmd+"-save", "-t", "nat")))
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "-A ") && strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// splitRule splits an iptables-save rule into arguments, honouring the
// double quotes around comments.
func splitRule(r string) []string {
	var out []string
	var cur strings.Builder
	inQ, esc := false, false
	for _, c := range r {
		switch {
		case esc:
			cur.WriteRune(c)
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			inQ = !inQ
		case c == ' ' && !inQ:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// newPodNS pins fresh namespaces for a pod and removes them in cleanup.
func newPodNS(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "ns")
	pinned, err := namespaces.Create(dir, []namespaces.Kind{namespaces.Net, namespaces.IPC, namespaces.UTS}, "pod")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := namespaces.Remove(dir); err != nil {
			tb.Errorf("remove namespaces: %v", err)
		}
	})
	return pinned[namespaces.Net]
}

// freePort returns a TCP port free on the host right now.
func freePort(tb testing.TB) int32 {
	tb.Helper()
	for range 50 {
		p := randInt(tb, 20000, 32000)
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err == nil {
			l.Close()
			return int32(p)
		}
	}
	tb.Fatal("no free port")
	return 0
}

// serveInNetNS listens on port inside the netns and answers each
// connection with msg.
func serveInNetNS(tb testing.TB, netns string, port int, msg string) {
	tb.Helper()
	var ln net.Listener
	// A socket stays in the netns it was created in, so only Listen needs
	// to run there.
	err := namespaces.Do(netns, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, msg)
			c.Close()
		}
	}()
}

func dialRead(addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// bridgePorts counts links enslaved to the bridge (the pods' host veths).
func bridgePorts(tb testing.TB, bridge string) int {
	tb.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return 0
	}
	links, err := netlink.LinkList()
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			n++
		}
	}
	return n
}

// ipamFiles lists host-local's per-IP reservation files for the network.
func ipamFiles(tb testing.TB, tn *testNet) []string {
	tb.Helper()
	ents, err := os.ReadDir(filepath.Join(tn.ipamDir, tn.name))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if net.ParseIP(e.Name()) != nil {
			out = append(out, e.Name())
		}
	}
	return out
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// assertOnEth0 checks that eth0 inside the netns carries every IP.
func assertOnEth0(tb testing.TB, netns string, ips []net.IP) {
	tb.Helper()
	err := namespaces.Do(netns, func() error {
		eth0, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := eth0.Addrs()
		if err != nil {
			return err
		}
		for _, ip := range ips {
			found := false
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
					found = true
				}
			}
			if !found {
				tb.Errorf("%s not on eth0 (has %v)", ip, addrs)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}
