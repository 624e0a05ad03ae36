package sandbox

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakePlugins records the events of each pod and refuses RunPodSandbox
// while refuse is set.
type fakePlugins struct {
	mu     sync.Mutex
	events map[string][]string
	refuse bool
}

func (p *fakePlugins) add(id, ev string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events[id] = append(p.events[id], ev)
	return nil
}

func (p *fakePlugins) BlockSync() func() { return func() {} }
func (p *fakePlugins) RunPodSandbox(_ context.Context, sb *Sandbox) error {
	if p.refuse {
		p.add(sb.ID, "RunPodSandbox refused")
		return errors.New("refused by a plugin")
	}
	return p.add(sb.ID, "RunPodSandbox")
}
func (p *fakePlugins) StopPodSandbox(_ context.Context, sb *Sandbox) error {
	return p.add(sb.ID, "StopPodSandbox")
}
func (p *fakePlugins) RemovePodSandbox(_ context.Context, sb *Sandbox) error {
	return p.add(sb.ID, "RemovePodSandbox")
}
func (p *fakePlugins) UpdatePodSandbox(_ context.Context, sb *Sandbox, _, _ *runtimeapi.LinuxContainerResources) error {
	return p.add(sb.ID, "UpdatePodSandbox")
}
func (p *fakePlugins) PostUpdatePodSandbox(_ context.Context, sb *Sandbox) error {
	return p.add(sb.ID, "PostUpdatePodSandbox")
}

// Plugins hear of a pod's run, update, stop (once, however often it is
// stopped) and removal in order; a refused run leaves nothing and is
// undone with RemovePodSandbox, and the retry runs the pod.
func TestPluginEvents(t *testing.T) {
	m, fn, _ := newTestManager(t)
	p := &fakePlugins{events: map[string][]string{}}
	m.Plugins = p
	ctx := context.Background()
	id, err := m.Run(ctx, podConfig("nri"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateResources(ctx, id, nil, &runtimeapi.LinuxContainerResources{CpuShares: 2}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := m.Stop(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	want := []string{"RunPodSandbox", "UpdatePodSandbox", "PostUpdatePodSandbox", "StopPodSandbox", "RemovePodSandbox"}
	if got := p.events[id]; !slices.Equal(got, want) {
		t.Errorf("events %v\nwant %v", got, want)
	}

	p.refuse = true
	if _, err := m.Run(ctx, podConfig("refused"), ""); err == nil {
		t.Fatal("a refused pod ran")
	}
	if n := len(m.recs.List(nil)); n != 0 || len(fn.adds) != 0 {
		t.Errorf("a refused pod left %d records and %d networks", n, len(fn.adds))
	}
	for id, evs := range p.events {
		if evs[0] == "RunPodSandbox refused" && !slices.Equal(evs, []string{"RunPodSandbox refused", "RemovePodSandbox"}) {
			t.Errorf("refused pod %s: events %v", id, evs)
		}
	}
	p.refuse = false
	if _, err := m.Run(ctx, podConfig("refused"), ""); err != nil {
		t.Fatalf("retry: %v", err)
	}
}
