package stats

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// UsageOptions bound the disk usage walker; zero fields take the defaults.
type UsageOptions struct {
	// Interval is the pause between two passes over every tree.
	Interval time.Duration
	// TreeTimeout is the longest one tree's walk may take; a walk cut
	// short keeps what it counted (a lower bound).
	TreeTimeout time.Duration
	// InodeBudget is the most inodes counted in one tree.
	InodeBudget uint64
	// StuckAfter is when a walk that has not returned (a syscall hung on a
	// sick disk: the deadline is only checked between reads) is logged.
	StuckAfter time.Duration
}

// Defaults of UsageOptions. The kubelet asks every 10 s or so; eviction
// works on minutes, so a reading up to one interval old is fresh enough.
const (
	DefaultUsageInterval = 10 * time.Second
	DefaultTreeTimeout   = 5 * time.Second
	DefaultInodeBudget   = 1 << 20
	DefaultStuckAfter    = 30 * time.Second
)

func (o UsageOptions) withDefaults() UsageOptions {
	if o.Interval <= 0 {
		o.Interval = DefaultUsageInterval
	}
	if o.TreeTimeout <= 0 {
		o.TreeTimeout = DefaultTreeTimeout
	}
	if o.InodeBudget == 0 {
		o.InodeBudget = DefaultInodeBudget
	}
	if o.StuckAfter <= 0 {
		o.StuckAfter = DefaultStuckAfter
	}
	return o
}

// UsageCache keeps the disk usage of every tree right under a root (each
// container's layer dir under the layers dir), measured by one background
// walker, so that the kubelet's frequent stats and ImageFsInfo calls never
// walk a file tree themselves. The walker goes over the trees one at a
// time, every Interval, and takes the trees from the root's listing on each
// pass, so removed containers drop out. A tree asked for before it was ever
// measured answers "not measured" and is measured next, ahead of the pass.
type UsageCache struct {
	root string
	opt  UsageOptions
	log  *slog.Logger
	// walk measures one tree (a seam for tests).
	walk func(ctx context.Context, dir string, budget uint64) (treeUsage, error)

	wake chan struct{} // the walker has work: pending trees or a pass

	mu         sync.Mutex
	trees      map[string]*treeEntry
	pending    map[string]bool // asked for, never measured
	passWanted bool            // Total was asked before any pass
	passes     uint64          // completed passes
	rootSelf   DirUsage        // the root dir's own inode

	startOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

type treeEntry struct {
	u  treeUsage
	at time.Time // when its walk started
}

// NewUsageCache returns a cache of the trees under root; Start runs its
// walker.
func NewUsageCache(root string, opt UsageOptions, log *slog.Logger) *UsageCache {
	return &UsageCache{
		root: filepath.Clean(root), opt: opt.withDefaults(), log: log, walk: walkTree,
		wake: make(chan struct{}, 1), trees: map[string]*treeEntry{}, pending: map[string]bool{},
	}
}

// Start runs the walker until ctx ends or Close is called. Only the first
// call starts one.
func (c *UsageCache) Start(ctx context.Context) {
	c.startOnce.Do(func() {
		ctx, c.cancel = context.WithCancel(ctx)
		c.done = make(chan struct{})
		go c.run(ctx)
	})
}

// Close stops the walker and waits for it: a walk in progress stops at its
// next directory read.
func (c *UsageCache) Close() {
	c.startOnce.Do(func() {}) // a later Start starts nothing
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
}

// Total is the usage of the whole root, from the last measurement of each
// tree; measured is false until the first pass has ended (that pass is
// then asked for, were the walker idle).
func (c *UsageCache) Total() (u DirUsage, measured bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u = c.rootSelf
	for _, e := range c.trees {
		u.add(e.u.Total)
	}
	if c.passes == 0 {
		c.passWanted = true
		c.signal()
	}
	return u, c.passes > 0
}

// Dir is the last measured usage of dir, a tree right under the root or an
// entry right under such a tree (a container's upper dir). A tree never
// measured answers measured false and is measured promptly; a dir
// elsewhere is not tracked and always answers false.
func (c *UsageCache) Dir(dir string) (u DirUsage, measured bool) {
	rel, err := filepath.Rel(c.root, filepath.Clean(dir))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return DirUsage{}, false
	}
	tree, child, _ := strings.Cut(rel, "/")
	if strings.Contains(child, "/") {
		return DirUsage{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.trees[tree]
	if e == nil {
		c.pending[tree] = true
		c.signal()
		return DirUsage{}, false
	}
	if child == "" {
		return e.u.Total, true
	}
	// A child the walk did not see holds nothing (or, in a partial walk,
	// was not reached: zero is still a lower bound).
	return e.u.Children[child], true
}

// Made records the tree name, just made empty (a new container's writable
// layer), as measured now: it reads as what it is, empty, rather than as
// not measured, until the walker measures it.
func (c *UsageCache) Made(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.trees[name]; !ok {
		c.trees[name] = &treeEntry{u: treeUsage{Children: map[string]DirUsage{}}, at: time.Now()}
	}
	delete(c.pending, name)
}

// signal wakes the walker; c.mu is held.
func (c *UsageCache) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *UsageCache) run(ctx context.Context) {
	defer close(c.done)
	c.pass(ctx)
	// A timer, not a ticker: the pause runs from the end of a pass, so a
	// pass longer than Interval is not followed by another at once.
	t := time.NewTimer(c.opt.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.pass(ctx)
			t.Reset(c.opt.Interval)
		case <-c.wake:
			c.mu.Lock()
			full := c.passWanted
			c.passWanted = false
			c.mu.Unlock()
			if full {
				c.pass(ctx)
				t.Reset(c.opt.Interval)
			} else {
				c.measurePending(ctx)
			}
		}
	}
}

// pass measures every tree the root lists, one at a time, serving trees
// asked for in between, and forgets trees the root no longer holds.
func (c *UsageCache) pass(ctx context.Context) {
	start := time.Now()
	names, self, err := c.list()
	if err != nil {
		// Keep the last readings: better than reporting a full disk empty.
		c.log.Warn("list container layers", "dir", c.root, "error", err)
	}
	for _, name := range names {
		c.measurePending(ctx)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		e := c.trees[name]
		c.mu.Unlock()
		if e != nil && !e.at.Before(start) {
			continue // just measured as asked for
		}
		c.measure(ctx, name)
	}
	if ctx.Err() != nil {
		return
	}
	listed := make(map[string]bool, len(names))
	for _, n := range names {
		listed[n] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.rootSelf = self
		for name, e := range c.trees {
			// A tree measured during this pass but made after the
			// listing stays until the next pass lists it.
			if !listed[name] && e.at.Before(start) {
				delete(c.trees, name)
			}
		}
	}
	c.passes++
	c.passWanted = false // this pass answers a Total asked during it
}

// list is the trees under the root and the root's own usage; a missing
// root (no container yet) holds nothing.
func (c *UsageCache) list() ([]string, DirUsage, error) {
	st, err := os.Lstat(c.root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, DirUsage{}, nil
	}
	if err != nil {
		return nil, DirUsage{}, err
	}
	var self DirUsage
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		self = DirUsage{Bytes: uint64(s.Blocks) * 512, Inodes: 1}
	}
	ents, err := os.ReadDir(c.root)
	if err != nil {
		return nil, DirUsage{}, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, self, nil
}

// measurePending measures the trees asked for and never measured.
func (c *UsageCache) measurePending(ctx context.Context) {
	for ctx.Err() == nil {
		c.mu.Lock()
		var name string
		for n := range c.pending {
			name = n
			break
		}
		c.mu.Unlock()
		if name == "" {
			return
		}
		c.measure(ctx, name)
	}
}

// measure walks one tree, within the tree deadline and inode budget, and
// stores what it counted. A walk that outlasts StuckAfter is logged; the
// requests go on answering from the cache meanwhile.
func (c *UsageCache) measure(ctx context.Context, name string) {
	dir := filepath.Join(c.root, name)
	start := time.Now()
	stuck := time.AfterFunc(c.opt.StuckAfter, func() {
		c.log.Warn("disk usage walk stuck", "dir", dir, "after", c.opt.StuckAfter)
	})
	wctx, cancel := context.WithTimeout(ctx, c.opt.TreeTimeout)
	u, err := c.walk(wctx, dir, c.opt.InodeBudget)
	cancel()
	if !stuck.Stop() {
		c.log.Warn("disk usage walk ended after being stuck", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	}
	if ctx.Err() != nil {
		return // shutting down: the reading may be cut short
	}
	c.mu.Lock()
	prev := c.trees[name]
	c.trees[name] = &treeEntry{u: u, at: start}
	delete(c.pending, name)
	c.mu.Unlock()
	switch {
	case u.Partial && (prev == nil || !prev.u.Partial):
		// Logged when a tree starts being cut short, not on every pass.
		c.log.Warn("disk usage walk cut short; usage is a lower bound", "dir", dir, "inodes", u.Total.Inodes, "error", err)
	case err != nil:
		c.log.Debug("disk usage walk", "dir", dir, "error", err)
	}
}
