package server

import (
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/events"
)

// eventSource is what GetContainerEvents needs.
type eventSource interface {
	Subscribe() *events.Subscription
}

// GetContainerEvents streams lifecycle events until the client goes away or
// falls so far behind that its buffer overflows; then the stream ends with
// Unavailable and the kubelet relists and resubscribes.
func (s *Server) GetContainerEvents(req *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	if s.events == nil {
		return errdefs.ErrNotImplemented
	}
	sub := s.events.Subscribe()
	defer sub.Cancel()
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				if sub.Dropped() {
					return fmt.Errorf("event subscriber fell behind: %w", errdefs.ErrUnavailable)
				}
				return nil // crid is stopping
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}
