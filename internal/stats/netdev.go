package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Interface is one network interface's counters.
type Interface struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// ReadNetDev reads the counters of the network namespace the calling thread
// is in (/proc/thread-self/net/dev) or of a process (/proc/<pid>/net/dev).
func ReadNetDev(path string) ([]Interface, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read network counters: %w", err)
	}
	return ParseNetDev(data)
}

// ParseNetDev parses /proc/net/dev: two header lines, then one line per
// interface, "name: 8 receive counters 8 transmit counters". The loopback
// interface is left out, as the kubelet and cAdvisor do.
func ParseNetDev(data []byte) ([]Interface, error) {
	var out []Interface
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 0; sc.Scan(); line++ {
		if line < 2 {
			continue
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("net/dev line %d: no interface name", line+1)
		}
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("net/dev line %d: empty interface name", line+1)
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("net/dev line %d: %d fields, want 16", line+1, len(f))
		}
		var v [16]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("net/dev line %d: %w", line+1, err)
			}
			v[i] = n
		}
		if name == "lo" {
			continue
		}
		out = append(out, Interface{
			Name:    name,
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	return out, sc.Err()
}
