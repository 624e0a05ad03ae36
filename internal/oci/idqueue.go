package oci

import (
	"slices"
	"sync"
)

// idQueue (used by both watchers) hands IDs to out in order without ever blocking the producer for
// longer than its goroutine takes to append: they queue up without bound
// until the reader takes them.
type idQueue struct {
	out   chan string
	in    chan string
	drops chan string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newIDQueue() *idQueue {
	q := &idQueue{
		out:   make(chan string),
		in:    make(chan string),
		drops: make(chan string),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go q.run()
	return q
}

func (q *idQueue) run() {
	defer close(q.done)
	var queue []string
	for {
		var out chan string
		var next string
		if len(queue) > 0 {
			out, next = q.out, queue[0]
		}
		select {
		case id := <-q.in:
			queue = append(queue, id)
		case id := <-q.drops:
			queue = slices.DeleteFunc(queue, func(s string) bool { return s == id })
		case out <- next:
			queue[0] = ""
			queue = queue[1:]
		case <-q.stop:
			return
		}
	}
}

// push queues id; it is a no-op once the queue is closed.
func (q *idQueue) push(id string) {
	select {
	case q.in <- id:
	case <-q.done:
	}
}

// drop removes every queued id: once it returns, none of them is delivered.
func (q *idQueue) drop(id string) {
	select {
	case q.drops <- id:
	case <-q.done:
	}
}

// close stops the queue; safe to call more than once.
func (q *idQueue) close() {
	q.once.Do(func() { close(q.stop) })
	<-q.done
}
