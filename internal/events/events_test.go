package events

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestHub(t *testing.T) {
	h := NewHub(2)
	h.SetStatus(func(podID string) (*runtimeapi.PodSandboxStatus, []*runtimeapi.ContainerStatus) {
		return &runtimeapi.PodSandboxStatus{Id: podID}, []*runtimeapi.ContainerStatus{{Id: "c"}}
	})
	h.Publish(Event{Type: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, ContainerID: "c", PodID: "p"}) // nobody listens: dropped

	fast, slow := h.Subscribe(), h.Subscribe()
	defer fast.Cancel()
	defer slow.Cancel()
	types := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	}
	for _, typ := range types {
		done := make(chan struct{})
		go func() {
			h.Publish(Event{Type: typ, ContainerID: "c", PodID: "p", At: time.Unix(1, 0)})
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Publish blocked on a subscriber that does not read")
		}
		ev := <-fast.C
		if ev.ContainerEventType != typ || ev.PodSandboxStatus.GetId() != "p" || len(ev.ContainersStatuses) != 1 || ev.CreatedAt != 1e9 {
			t.Fatalf("event %v", ev)
		}
	}
	// slow read nothing: two events fit its buffer, the third ended it.
	n := 0
	for range slow.C {
		n++
	}
	if n != 2 || !slow.Dropped() || fast.Dropped() {
		t.Errorf("slow got %d events, dropped %v; fast dropped %v", n, slow.Dropped(), fast.Dropped())
	}
	if h.Subscribers() != 1 {
		t.Errorf("%d subscribers, want 1", h.Subscribers())
	}
	fast.Cancel()
	fast.Cancel() // idempotent
	h.Close()
	if _, ok := <-h.Subscribe().C; ok {
		t.Error("subscription after Close is open")
	}
}
