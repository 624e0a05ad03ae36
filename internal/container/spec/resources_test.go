package spec

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestResources(t *testing.T) {
	type R = runtimeapi.LinuxContainerResources
	for _, tc := range []struct {
		name    string
		r       *R
		swap    bool
		hugetlb bool
		check   func(t *testing.T, r *specs.LinuxResources)
		wantErr string
	}{
		{name: "nil", check: func(t *testing.T, r *specs.LinuxResources) {
			if r.CPU != nil || r.Memory != nil {
				t.Errorf("%+v", r)
			}
		}},
		{name: "cpu", r: &R{CpuShares: 1024, CpuPeriod: 100000, CpuQuota: 50000, CpusetCpus: "0-1,3", CpusetMems: "0"},
			check: func(t *testing.T, r *specs.LinuxResources) {
				c := r.CPU
				if *c.Shares != 1024 || *c.Period != 100000 || *c.Quota != 50000 || c.Cpus != "0-1,3" || c.Mems != "0" {
					t.Errorf("%+v", c)
				}
			}},
		{name: "unlimited quota", r: &R{CpuQuota: -1}, check: func(t *testing.T, r *specs.LinuxResources) {
			if *r.CPU.Quota != -1 {
				t.Errorf("%+v", r.CPU)
			}
		}},
		{name: "memory, swap = limit", r: &R{MemoryLimitInBytes: 64 << 20}, swap: true, check: func(t *testing.T, r *specs.LinuxResources) {
			if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 {
				t.Errorf("%+v", r.Memory)
			}
		}},
		{name: "memory without swap accounting", r: &R{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 128 << 20}, check: func(t *testing.T, r *specs.LinuxResources) {
			if *r.Memory.Limit != 64<<20 || r.Memory.Swap != nil {
				t.Errorf("%+v", r.Memory)
			}
		}},
		{name: "explicit swap", r: &R{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 128 << 20}, swap: true, check: func(t *testing.T, r *specs.LinuxResources) {
			if *r.Memory.Swap != 128<<20 {
				t.Errorf("%+v", r.Memory)
			}
		}},
		{name: "hugepages and unified", r: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
			Unified: map[string]string{"memory.high": "1000000"}}, hugetlb: true, check: func(t *testing.T, r *specs.LinuxResources) {
			if len(r.HugepageLimits) != 1 || r.HugepageLimits[0].Pagesize != "2MB" || r.Unified["memory.high"] != "1000000" {
				t.Errorf("%+v", r)
			}
		}},
		// The kubelet sends a zero limit per page size the node has; runc
		// fails the create when it cannot set one.
		{name: "hugepages without hugetlb controller", r: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}},
			MemoryLimitInBytes: 64 << 20}, check: func(t *testing.T, r *specs.LinuxResources) {
			if r.HugepageLimits != nil || *r.Memory.Limit != 64<<20 {
				t.Errorf("%+v", r)
			}
		}},
		{name: "shares too big", r: &R{CpuShares: 262145}, wantErr: "cpu_shares"},
		{name: "shares negative", r: &R{CpuShares: -5}, wantErr: "cpu_shares"},
		{name: "period too small", r: &R{CpuPeriod: 10}, wantErr: "cpu_period"},
		{name: "period too big", r: &R{CpuPeriod: 2000000}, wantErr: "cpu_period"},
		{name: "quota too small", r: &R{CpuQuota: 10}, wantErr: "cpu_quota"},
		{name: "quota negative", r: &R{CpuQuota: -2}, wantErr: "cpu_quota"},
		{name: "memory negative", r: &R{MemoryLimitInBytes: -1}, wantErr: "memory_limit_in_bytes"},
		{name: "memory tiny", r: &R{MemoryLimitInBytes: 4096}, wantErr: "memory_limit_in_bytes"},
		{name: "swap below limit", r: &R{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 32 << 20}, wantErr: "memory_swap_limit_in_bytes"},
		{name: "swap negative", r: &R{MemorySwapLimitInBytes: -7}, wantErr: "memory_swap_limit_in_bytes"},
		{name: "bad cpuset", r: &R{CpusetCpus: "0-"}, wantErr: "cpuset_cpus"},
		{name: "bad mems", r: &R{CpusetMems: "a"}, wantErr: "cpuset_mems"},
		{name: "bad page size", r: &R{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2M"}}}, wantErr: "page_size"},
		{name: "bad unified key", r: &R{Unified: map[string]string{"../x": "1"}}, wantErr: "unified"},
		{name: "oom too low", r: &R{OomScoreAdj: -1001}, wantErr: "oom_score_adj"},
		{name: "oom too high", r: &R{OomScoreAdj: 1001}, wantErr: "oom_score_adj"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			in.Config.Linux = &runtimeapi.LinuxContainerConfig{Resources: tc.r}
			in.SwapLimitSupported = tc.swap
			in.HugetlbSupported = tc.hugetlb
			s, _, err := Build(in)
			if checkErr(t, err, tc.wantErr) {
				tc.check(t, s.Linux.Resources)
			}
		})
	}
}

func TestOOMScoreAdjClamp(t *testing.T) {
	for _, tc := range []struct {
		req  int64
		min  int
		want int
	}{
		{req: -999, min: 0, want: 0},
		{req: -999, min: -1000, want: -999},
		{req: 500, min: -100, want: 500},
		{req: 0, min: 200, want: 200},
	} {
		got, err := oomScoreAdj(&runtimeapi.LinuxContainerResources{OomScoreAdj: tc.req}, tc.min)
		if err != nil || *got != tc.want {
			t.Errorf("oomScoreAdj(%d, min %d) = %d, %v; want %d", tc.req, tc.min, *got, err, tc.want)
		}
	}
}
