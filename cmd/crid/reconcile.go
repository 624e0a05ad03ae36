package main

import (
	"context"
	"log/slog"
	"time"
)

// reconcileInterval is how often the reconciler looks at every object. It
// is a backstop: monitor deaths, exits and infra deaths are acted on as
// they are reported.
const reconcileInterval = 30 * time.Second

// reconciler is one kind of object the reconciler repairs.
type reconciler interface {
	Recover(ctx context.Context)
	Reconcile(ctx context.Context)
}

// reconcile runs the start-up recovery (containers first: a pod's repair
// stops and removes its containers) and then the periodic pass, until ctx
// ends.
func reconcile(ctx context.Context, containers, pods reconciler, every time.Duration, log *slog.Logger) {
	start := time.Now()
	containers.Recover(ctx)
	pods.Recover(ctx)
	log.Info("recovery after start finished", "took", time.Since(start))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			containers.Reconcile(ctx)
			pods.Reconcile(ctx)
		}
	}
}
