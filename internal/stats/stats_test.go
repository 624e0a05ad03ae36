package stats

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
)

func TestMain(m *testing.M) {
	// Lets the cgroups library read fixture files off cgroupfs.
	cgroups.TestMode = true
	os.Exit(m.Run())
}

// The fixtures are a cgroup's files as the kernel shows them: v1 copied from
// a fresh cgroup on a 6.x kernel with usage values set by hand, v2 written
// from the kernel's cgroup-v2 documentation.
func TestReadCgroup(t *testing.T) {
	v1 := newReaderAt(false, "", map[string]string{
		"memory": "testdata/v1/memory", "cpuacct": "testdata/v1/cpuacct",
		"cpu": "testdata/v1/cpu", "pids": "testdata/v1/pids",
	}, "")
	// A v1 host with a v2 hierarchy (hybrid): PSI comes from there, where
	// only cpu.stat and the pressure files exist.
	hybrid := newReaderAt(false, "", v1.mounts, "testdata/v1/unified")
	v2 := newReaderAt(true, "testdata/v2", nil, "")
	for _, tc := range []struct {
		name    string
		r       *Reader
		cpu     CPU
		mem     Memory
		pids    uint64
		pidsMax uint64
		swap    bool
	}{
		{
			name: "v1", r: v1,
			cpu:  CPU{Usage: 123456789},
			mem:  Memory{Usage: 10 << 20, WorkingSet: 8 << 20, RSS: 6 << 20, Cache: 4 << 20, PgFault: 1000, PgMajFault: 3, OOMKills: 2, Limit: 64 << 20},
			pids: 3, swap: true,
		},
		{
			name: "v1 hybrid", r: hybrid,
			cpu:  CPU{Usage: 123456789},
			mem:  Memory{Usage: 10 << 20, WorkingSet: 8 << 20, RSS: 6 << 20, Cache: 4 << 20, PgFault: 1000, PgMajFault: 3, OOMKills: 2, Limit: 64 << 20},
			pids: 3, swap: true,
		},
		{
			name: "v2", r: v2,
			cpu: CPU{Usage: 123456000, User: 100000000, System: 23456000, Periods: 10, ThrottledPeriods: 2, ThrottledTime: 5000000},
			mem: Memory{Usage: 10 << 20, WorkingSet: 8 << 20, RSS: 6 << 20, Cache: 4 << 20, MappedFile: 1 << 20, Kernel: 512 << 10,
				PgFault: 1000, PgMajFault: 3, OOMKills: 2, Limit: 64 << 20, Swap: 4096, MaxUsage: 11000000},
			pids: 3, pidsMax: 100, swap: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cg, err := tc.r.Read("/pod/ctr")
			if err != nil {
				t.Fatal(err)
			}
			if tc.name != "v2" {
				// cpuacct.stat is in USER_HZ ticks; only the total is exact.
				cg.CPU.User, cg.CPU.System = 0, 0
				cg.Memory.MaxUsage, cg.Memory.Failcnt, cg.Memory.Kernel, cg.Memory.MappedFile = 0, 0, 0, 0
			}
			if cg.CPU != tc.cpu {
				t.Errorf("cpu = %+v, want %+v", cg.CPU, tc.cpu)
			}
			if cg.Memory != tc.mem {
				t.Errorf("memory = %+v, want %+v", cg.Memory, tc.mem)
			}
			if cg.Pids != tc.pids || cg.PidsLimit != tc.pidsMax || cg.HasSwap != tc.swap {
				t.Errorf("pids %d/%d swap %v", cg.Pids, cg.PidsLimit, cg.HasSwap)
			}
			if got := cg.Memory.Available(); got != 56<<20 {
				t.Errorf("available = %d", got)
			}
			if tc.name == "v1" && (cg.PSI != PSI{}) {
				t.Errorf("PSI on cgroup v1: %+v", cg.PSI)
			}
			if tc.name != "v1" {
				p := cg.PSI
				if p.CPU == nil || p.CPU.Some.Total != 12345 || p.CPU.Full.Avg10 != 0.5 || p.Memory == nil || p.Memory.Some.Avg60 != 1 ||
					p.IO == nil || p.IO.Full.Total != 3 {
					t.Errorf("PSI %+v %+v %+v", p.CPU, p.Memory, p.IO)
				}
				if u := criCPU(&cg, 0, false); u.Psi.GetSome().GetTotal() != 12345 || criIO(&cg).GetPsi().GetFull().GetTotal() != 3 {
					t.Errorf("CRI PSI: cpu %v io %v", u.Psi, criIO(&cg))
				}
			}
			if _, err := tc.r.Read("/pod/gone"); !errorsIs(err, ErrNoCgroup) {
				t.Errorf("missing cgroup: %v", err)
			}
		})
	}
}

func TestParseNetDev(t *testing.T) {
	data := []byte(`Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:   12345      10    1    2    0     0          0         0     6789       7    3    4    0     0       0          0
`)
	ifs, err := ParseNetDev(data)
	if err != nil {
		t.Fatal(err)
	}
	want := Interface{Name: "eth0", RxBytes: 12345, RxPackets: 10, RxErrors: 1, RxDropped: 2, TxBytes: 6789, TxPackets: 7, TxErrors: 3, TxDropped: 4}
	if len(ifs) != 1 || ifs[0] != want {
		t.Fatalf("got %+v", ifs)
	}
	for _, bad := range []string{"h\nh\neth0 1 2 3\n", "h\nh\neth0: 1 2\n", "h\nh\n: " + "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", "h\nh\neth0: x 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"} {
		if _, err := ParseNetDev([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseNetDev(f *testing.F) {
	f.Add([]byte("a\nb\neth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"))
	f.Add([]byte("a\nb\n lo:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ifs, err := ParseNetDev(data)
		if err != nil && ifs != nil {
			t.Fatal("interfaces with an error")
		}
		for _, in := range ifs {
			if in.Name == "" || in.Name == "lo" {
				t.Fatalf("interface %q", in.Name)
			}
		}
	})
}

// Calls that want the same target at once (the kubelet lists pod and
// container stats concurrently) share its read: both get the reading.
func TestCollectorSharesConcurrentReads(t *testing.T) {
	c := NewCollector(newReaderAt(true, "testdata/v2", nil, ""), 2, time.Minute)
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := Target{Key: "ctr", Cgroup: "/pod/ctr", Net: func() ([]Interface, error) {
		once.Do(func() { close(started) })
		<-release
		return nil, nil
	}}
	first := make(chan []Result)
	go func() { first <- c.Collect(context.Background(), []Target{slow}) }()
	<-started
	second := make(chan []Result)
	go func() { second <- c.Collect(context.Background(), []Target{slow}) }()
	close(release)
	for _, ch := range []chan []Result{first, second} {
		if res := <-ch; res[0].Err != nil || res[0].Cgroup == nil {
			t.Errorf("result %+v", res[0])
		}
	}
}

// A stuck read (here: network counters that never come) must not hold a
// call past its deadline, nor be started again while it hangs.
func TestCollectorTimeoutAndRates(t *testing.T) {
	r := newReaderAt(true, "testdata/v2", nil, "")
	c := NewCollector(r, 2, 200*time.Millisecond)
	release := make(chan struct{})
	defer close(release)
	stuck := Target{Key: "stuck", Net: func() ([]Interface, error) { <-release; return nil, nil }}
	ok := Target{Key: "ok", Cgroup: "/pod/ctr"}

	start := time.Now()
	res := c.Collect(context.Background(), []Target{stuck, ok, ok})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Collect took %v with a stuck target", d)
	}
	if !errdefs.IsUnavailable(res[0].Err) || res[1].Cgroup == nil || res[1].HasRate {
		t.Fatalf("results %+v", res)
	}
	// The stuck read is still in flight: it is not started again, and the
	// others still answer.
	res = c.Collect(context.Background(), []Target{stuck, ok})
	if !errdefs.IsUnavailable(res[0].Err) || res[1].Cgroup == nil {
		t.Fatalf("second results %+v", res)
	}

	// Rates: a reading a second later with 0.5 s more CPU is half a core.
	c.prev["k"] = cpuPoint{at: time.Unix(100, 0), usage: 1e9, lastTouch: time.Unix(100, 0)}
	if n, ok := c.rate("k", time.Unix(101, 0), 1.5e9); !ok || n != 5e8 {
		t.Errorf("rate = %d %v", n, ok)
	}
	if n, ok := c.rate("k", time.Unix(101, 1e8), 9e9); !ok || n != 5e8 {
		t.Errorf("a reading 100 ms later keeps the rate: %d %v", n, ok)
	}
}

func errorsIs(err, target error) bool {
	for err != nil {
		if err == target {
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
