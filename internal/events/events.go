// Package events fans container and pod lifecycle events out to the
// kubelet's GetContainerEvents streams (its evented PLEG). Publishing never
// blocks: each subscriber has a bounded buffer, and a subscriber that falls
// behind is dropped (its stream ends, and the kubelet relists and
// resubscribes), so a slow or vanished kubelet cannot stall a lifecycle
// operation.
package events

import (
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Event is one lifecycle change. For pod sandbox events ContainerID is the
// sandbox's ID, as in containerd.
type Event struct {
	Type        runtimeapi.ContainerEventType
	ContainerID string
	PodID       string
	At          time.Time
}

// StatusFunc returns the pod's status and its containers' statuses at the
// time of an event (nil pod status if the pod is gone).
type StatusFunc func(podID string) (*runtimeapi.PodSandboxStatus, []*runtimeapi.ContainerStatus)

// Hub distributes events to subscribers.
type Hub struct {
	buffer int
	status StatusFunc

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// Subscription receives events on C until it is cancelled or drops
// behind; then C is closed and Dropped reports which.
type Subscription struct {
	C       <-chan *runtimeapi.ContainerEventResponse
	c       chan *runtimeapi.ContainerEventResponse
	hub     *Hub
	dropped bool
}

// NewHub returns a hub whose subscribers buffer up to buffer events.
func NewHub(buffer int) *Hub {
	return &Hub{buffer: buffer, subs: map[*Subscription]struct{}{}}
}

// SetStatus sets how events are filled with the pod's and its containers'
// statuses; without it events carry none.
func (h *Hub) SetStatus(f StatusFunc) {
	h.mu.Lock()
	h.status = f
	h.mu.Unlock()
}

// Subscribe starts a subscription; the caller must Cancel it.
func (h *Hub) Subscribe() *Subscription {
	c := make(chan *runtimeapi.ContainerEventResponse, h.buffer)
	s := &Subscription{C: c, c: c, hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(c)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

// Cancel ends the subscription. Idempotent.
func (s *Subscription) Cancel() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.c)
	}
}

// Dropped reports whether the subscription ended because it fell behind.
func (s *Subscription) Dropped() bool {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.dropped
}

// Subscribers is the number of live subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Publish sends ev to every subscriber without blocking. With no
// subscriber it costs a lock and a map length.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	if len(h.subs) == 0 {
		h.mu.Unlock()
		return
	}
	status := h.status
	h.mu.Unlock()

	// Statuses are read outside the hub's lock: they take the managers'.
	resp := &runtimeapi.ContainerEventResponse{
		ContainerId:        ev.ContainerID,
		ContainerEventType: ev.Type,
		CreatedAt:          ev.At.UnixNano(),
	}
	if status != nil {
		resp.PodSandboxStatus, resp.ContainersStatuses = status(ev.PodID)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.c <- resp:
		default:
			// Full: this subscriber is behind. Ending its stream makes the
			// kubelet fall back to relisting, which loses nothing; keeping
			// it would mean blocking or silently skipping events.
			s.dropped = true
			delete(h.subs, s)
			close(s.c)
		}
	}
}

// Close ends every subscription (crid is stopping).
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.c)
	}
}
