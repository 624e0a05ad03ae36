package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/events"
	"github.com/crid-project/crid/internal/metrics"
	"github.com/crid-project/crid/internal/sandbox"
	"github.com/crid-project/crid/internal/stats"
)

// observability is what crid reports about itself and its workloads: the
// stats service, the event hub and the Prometheus metrics.
type observability struct {
	stats   *stats.Service
	events  *events.Hub
	metrics *metrics.Metrics
}

// eventBuffer: the kubelet reads events as they come; a burst of a few
// hundred pod changes fits, and a stream further behind than that is ended.
const eventBuffer = 1024

// setupObservability wires events and stage metrics into the managers and
// starts the metrics HTTP server on cfg.Metrics.Address ("" disables it).
func setupObservability(ctx context.Context, d deps) (*observability, error) {
	st, err := stats.NewService(d.containers, d.pods, d.log.With("component", "stats"))
	if err != nil {
		// Stats are not worth refusing to run pods: the calls answer
		// Unimplemented instead.
		d.log.Error("stats unavailable", "error", err)
		st = nil
	} else {
		// The disk usage walker lives as long as crid: requests only read
		// what it measured.
		st.Start(ctx)
		d.containers.OnLayerMade = st.LayerMade
	}
	o := &observability{stats: st, events: events.NewHub(eventBuffer), metrics: metrics.New()}
	o.events.SetStatus(func(podID string) (*runtimeapi.PodSandboxStatus, []*runtimeapi.ContainerStatus) {
		var ps *runtimeapi.PodSandboxStatus
		if sb, err := d.pods.Get(podID); err == nil {
			ps = sb.CRIStatus()
		}
		return ps, d.containers.PodStatuses(podID)
	})
	obs := observer{o}
	d.pods.Observer = obs
	d.containers.Observer = obs
	err = o.metrics.Register(metrics.Counts{
		// Every state is reported, zero included, so that a dashboard's
		// series do not vanish when the last pod of a state goes.
		Pods: func() map[string]int {
			n := map[string]int{string(sandbox.StateReady): 0, string(sandbox.StateNotReady): 0}
			for _, sb := range d.pods.List() {
				n[string(sb.State)]++
			}
			return n
		},
		Containers: func() map[string]int {
			n := map[string]int{string(container.StateCreated): 0, string(container.StateRunning): 0, string(container.StateExited): 0}
			for _, c := range d.containers.List() {
				n[string(c.State)]++
			}
			return n
		},
		Monitors: func() int {
			n := 0
			for _, c := range d.containers.List() {
				if c.State == container.StateCreated || c.State == container.StateRunning {
					if _, ok := d.rt.MonitorPID(c.ID); ok {
						n++
					}
				}
			}
			return n
		},
		Subscribers: o.events.Subscribers,
	})
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	if addr := d.cfg.Metrics.Address; addr != "" {
		// A taken port is logged, not fatal: metrics are not worth refusing
		// to run pods over.
		if err := serveMetrics(ctx, addr, o.metrics.Handler(), d); err != nil {
			d.log.Error("metrics unavailable", "address", addr, "error", err)
		}
	}
	go func() { <-ctx.Done(); o.events.Close() }()
	return o, nil
}

// serveMetrics listens now (so a taken port is reported at start) and serves
// /metrics until ctx ends.
func serveMetrics(ctx context.Context, addr string, h http.Handler, d deps) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	d.log.Info("serving metrics", "address", lis.Addr().String())
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return nil
}

// observer is what the sandbox and container managers report to.
type observer struct{ o *observability }

func (ob observer) Event(ev events.Event) { ob.o.events.Publish(ev) }

func (ob observer) Stage(op, stage string, d time.Duration) { ob.o.metrics.ObserveStage(op, stage, d) }
