package stats

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sync/singleflight"
)

// Target is one container or pod to read.
type Target struct {
	// Key names the target; CPU rates are kept per key between calls.
	Key string
	// Cgroup is its cgroupfs path ("" if it has none to read).
	Cgroup string
	// Layer is its writable layer dir ("" if none), read from the
	// collector's usage cache.
	Layer string
	// Net reads its network counters (nil: none).
	Net func() ([]Interface, error)
}

// Result is what was read of a target. Fields are nil when their source
// could not be read; Err says why.
type Result struct {
	Key        string
	CgroupPath string // the target's Cgroup
	Cgroup     *Cgroup
	// NanoCores is the CPU use since the previous reading of the same key,
	// in billionths of a core; HasRate is false at the first reading.
	NanoCores uint64
	HasRate   bool
	Layer     *DirUsage
	Net       []Interface
	Err       error
}

// Collector reads many targets at once: at most Limit at a time, and never
// longer than Timeout per call. Calls that want the same target at once
// share one read (the kubelet asks for pod and container stats
// concurrently), so a stuck read is never started again while it hangs:
// later calls wait for it until their own deadline.
type Collector struct {
	reader  *Reader
	limit   int
	timeout time.Duration
	// layers answers writable-layer usage from a cache (nil: none is
	// reported); a stats call never walks a layer itself.
	layers func(dir string) (DirUsage, bool)

	flights singleflight.Group // by target key

	mu   sync.Mutex
	prev map[string]cpuPoint
}

type cpuPoint struct {
	at        time.Time
	usage     uint64
	rate      uint64
	hasRate   bool
	lastTouch time.Time
}

// minRateInterval: readings closer than this reuse the last rate; a
// delta over a few milliseconds is mostly noise.
const minRateInterval = time.Second

// NewCollector returns a collector over r.
func NewCollector(r *Reader, limit int, timeout time.Duration) *Collector {
	if limit < 1 {
		limit = 1
	}
	return &Collector{reader: r, limit: limit, timeout: timeout, prev: map[string]cpuPoint{}}
}

// Collect reads targets concurrently and returns one result per target, in
// order. Targets not read before the deadline carry an error.
func (c *Collector) Collect(ctx context.Context, targets []Target) []Result {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	results := make([]Result, len(targets))
	done := make([]bool, len(targets))
	type item struct {
		i   int
		res Result
	}
	jobs := make(chan int)
	out := make(chan item, len(targets))
	workers := min(c.limit, len(targets))
	for range workers {
		go func() {
			for i := range jobs {
				out <- item{i, c.read(ctx, targets[i])}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range targets {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for n := 0; n < len(targets); n++ {
		select {
		case it := <-out:
			results[it.i], done[it.i] = it.res, true
		case <-ctx.Done():
			for i, t := range targets {
				if !done[i] {
					results[i] = Result{Key: t.Key, Err: fmt.Errorf("stats of %s not read in time: %w", t.Key, errdefs.ErrUnavailable)}
				}
			}
			return results
		}
	}
	c.prune()
	return results
}

// read reads t, or waits for a read of t already in flight, until ctx ends.
func (c *Collector) read(ctx context.Context, t Target) Result {
	ch := c.flights.DoChan(t.Key, func() (any, error) { return c.readNow(t), nil })
	select {
	case r := <-ch:
		return r.Val.(Result)
	case <-ctx.Done():
		return Result{Key: t.Key, Err: fmt.Errorf("stats of %s not read in time: %w", t.Key, errdefs.ErrUnavailable)}
	}
}

func (c *Collector) readNow(t Target) Result {
	res := Result{Key: t.Key, CgroupPath: t.Cgroup}
	if t.Cgroup != "" {
		cg, err := c.reader.Read(t.Cgroup)
		if err != nil {
			res.Err = err
		} else {
			res.Cgroup = &cg
			res.NanoCores, res.HasRate = c.rate(t.Key, cg.Timestamp, cg.CPU.Usage)
		}
	}
	if t.Layer != "" && c.layers != nil {
		// Not measured yet: no reading rather than a made-up zero.
		if u, ok := c.layers(t.Layer); ok {
			res.Layer = &u
		}
	}
	if t.Net != nil {
		ifs, err := t.Net()
		if err == nil {
			res.Net = ifs
		} else if res.Err == nil {
			res.Err = err
		}
	}
	return res
}

// rate is the CPU use per second between this reading and the previous one
// of key, in nanocores.
func (c *Collector) rate(key string, at time.Time, usage uint64) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.prev[key]
	if ok && at.Sub(p.at) < minRateInterval {
		p.lastTouch = at
		c.prev[key] = p
		return p.rate, p.hasRate
	}
	np := cpuPoint{at: at, usage: usage, lastTouch: at}
	if ok && usage >= p.usage {
		np.rate = uint64(float64(usage-p.usage) / at.Sub(p.at).Seconds())
		np.hasRate = true
	}
	c.prev[key] = np
	return np.rate, np.hasRate
}

// prune forgets rates of targets not read for a while (removed ones).
func (c *Collector) prune() {
	c.mu.Lock()
	defer c.mu.Unlock()
	cutoff := time.Now().Add(-10 * time.Minute)
	for k, p := range c.prev {
		if p.lastTouch.Before(cutoff) {
			delete(c.prev, k)
		}
	}
}
