// Command statsbench times ListContainerStats (and ListPodSandboxStats)
// against a CRI endpoint: the calls the kubelet's summary API and eviction
// manager make every few seconds. bench/stats.sh runs it against crid and
// containerd with the same number of running containers.
//
//	statsbench -endpoint unix:///run/crid/crid.sock -n 50 -want 100
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/crid-project/crid/bench/internal/benchutil"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "CRI endpoint, unix:///path")
	n := flag.Int("n", 50, "timed calls")
	want := flag.Int("want", 0, "fail unless this many container stats come back")
	pods := flag.Bool("pods", false, "time ListPodSandboxStats instead")
	flag.Parse()
	cl, err := benchutil.Dial(*endpoint)
	if err != nil {
		benchutil.Fatal(err)
	}
	defer cl.Close()
	rt := cl.Runtime
	call := func(ctx context.Context) (int, error) {
		if *pods {
			r, err := rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return len(r.GetStats()), err
		}
		r, err := rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
		return len(r.GetStats()), err
	}
	ctx, cancel := benchutil.Context()
	defer cancel()
	// Two untimed calls: connection set-up, and the first CPU reading
	// (later ones also compute a rate).
	for range 2 {
		if _, err := call(ctx); err != nil {
			benchutil.Fatal(err)
		}
	}
	var ds []time.Duration
	got := 0
	for range *n {
		start := time.Now()
		c, err := call(ctx)
		if err != nil {
			benchutil.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		got = c
		// The kubelet polls; back-to-back calls would measure a hot loop.
		time.Sleep(100 * time.Millisecond)
	}
	if *want > 0 && got < *want {
		benchutil.Fatal(fmt.Errorf("%d stats, want %d", got, *want))
	}
	ds = benchutil.Sorted(ds)
	q := func(f float64) string { return benchutil.MS(benchutil.AtIndexBelow(ds, f)) }
	// median p90 min max (ms) and the number of stats
	fmt.Printf("%s %s %s %s %d\n", q(0.5), q(0.9), q(0), q(1), got)
}
