package container

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-project/crid/internal/sandbox"
)

// fakePlugins records the events of each container, refuses creates while
// refuse is set, and injects an env var into every spec.
type fakePlugins struct {
	mu      sync.Mutex
	events  map[string][]string
	refuse  bool
	blocked int // sync blocks held
}

func (p *fakePlugins) add(id, ev string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events[id] = append(p.events[id], ev)
	return nil
}

func (p *fakePlugins) of(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events[id])
}

func (p *fakePlugins) BlockSync() func() {
	p.mu.Lock()
	p.blocked++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.blocked--
		p.mu.Unlock()
	}
}

func (p *fakePlugins) CreateContainer(_ context.Context, _ *sandbox.Sandbox, c *Container, s *specs.Spec) error {
	p.mu.Lock()
	refuse := p.refuse
	p.mu.Unlock()
	if refuse {
		p.add(c.ID, "CreateContainer refused")
		return errors.New("refused by a plugin")
	}
	s.Process.Env = append(s.Process.Env, "NRI=yes")
	return p.add(c.ID, "CreateContainer")
}

func (p *fakePlugins) PostCreateContainer(_ context.Context, _ *sandbox.Sandbox, c *Container) error {
	return p.add(c.ID, "PostCreateContainer")
}
func (p *fakePlugins) StartContainer(_ context.Context, _ *sandbox.Sandbox, c *Container) error {
	return p.add(c.ID, "StartContainer")
}
func (p *fakePlugins) PostStartContainer(_ context.Context, _ *sandbox.Sandbox, c *Container) error {
	return p.add(c.ID, "PostStartContainer")
}
func (p *fakePlugins) UpdateContainer(_ context.Context, _ *sandbox.Sandbox, c *Container, r *specs.LinuxResources) (*specs.LinuxResources, error) {
	return r, p.add(c.ID, "UpdateContainer")
}
func (p *fakePlugins) PostUpdateContainer(_ context.Context, _ *sandbox.Sandbox, c *Container) error {
	return p.add(c.ID, "PostUpdateContainer")
}
func (p *fakePlugins) StopContainer(_ context.Context, _ *sandbox.Sandbox, c *Container) error {
	return p.add(c.ID, "StopContainer")
}
func (p *fakePlugins) RemoveContainer(_ context.Context, _ *sandbox.Sandbox, c *Container) error {
	return p.add(c.ID, "RemoveContainer")
}

// Plugins hear of each event once and in order, StopContainer also for a
// container that exited on its own and always before RemoveContainer; their
// adjustment reaches the spec; a refused create leaves nothing, holds no
// sync block and can be retried.
func TestPluginEvents(t *testing.T) {
	h := newHarness(t)
	p := &fakePlugins{events: map[string][]string{}}
	h.m.Plugins = p

	id := h.run("pod-a", "web")
	if s, err := h.m.Spec(id); err != nil || !slices.Contains(s.Process.Env, "NRI=yes") {
		t.Errorf("the plugin's env is not in the spec: %v", err)
	}
	h.rt.exitQuietly(id, 0)
	h.rt.exits <- id
	h.waitFor(id, "exited", exited)
	waitEvents(t, p, id, 5)
	if err := h.m.Remove(bg, id); err != nil {
		t.Fatal(err)
	}
	want := []string{"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer", "StopContainer", "RemoveContainer"}
	if got := p.of(id); !slices.Equal(got, want) {
		t.Errorf("events %v\nwant %v", got, want)
	}

	// Stopped and removed by the kubelet.
	id = h.run("pod-a", "db")
	if err := h.m.Stop(bg, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Remove(bg, id); err != nil {
		t.Fatal(err)
	}
	if got := p.of(id); !slices.Equal(got, want) {
		t.Errorf("events %v\nwant %v", got, want)
	}

	p.refuse = true
	_, err := h.m.Create(bg, "pod-a", ctrConfig("refused"))
	if err == nil || !strings.Contains(err.Error(), "refused by a plugin") {
		t.Fatalf("create: %v, want the plugin's refusal", err)
	}
	if n := len(h.m.recs.List(nil)); n != 0 {
		t.Errorf("a refused create left %d records", n)
	}
	p.refuse = false
	h.create("pod-a", "refused")
	if p.blocked != 0 {
		t.Errorf("%d sync blocks never released", p.blocked)
	}
}

// waitEvents waits for id's n-th event (StopContainer follows the exit
// watcher's record, in its goroutine).
func waitEvents(t *testing.T, p *fakePlugins, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for len(p.of(id)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("events of %s: %v, want %d", id, p.of(id), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
