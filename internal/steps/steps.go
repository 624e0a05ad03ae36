// Package steps records the side effects of crid's multi-step operations
// (the namespaces, mounts, network and processes a pod or container is
// made of) in the object's own record, so that a crash, a failure or a
// cancellation at any point can be undone from the record alone.
//
// A step is recorded as begun before its effect is made and as done after;
// undoing follows the record last step first, and each undo must work
// whether or not the effect was made, or made halfway. Every step defines
// its crash points, which the end-to-end tests enumerate (see
// internal/crashpoint): "<op>/<step>" after the intent is recorded,
// "<op>/<step>/made" after the effect is made and "<op>/<step>/undone"
// after it is undone, each before the record says so.
package steps

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/crid-project/crid/internal/crashpoint"
)

// Log is the list of steps an object has begun, in order.
type Log []Entry

// Entry is one step of a Log.
type Entry struct {
	Name string `json:"name"`
	Done bool   `json:"done,omitempty"`
}

// Has reports whether the step was begun: its undo is owed.
func (l Log) Has(name string) bool {
	return slices.ContainsFunc(l, func(e Entry) bool { return e.Name == name })
}

// Done reports whether the step was made to the end.
func (l Log) Done(name string) bool {
	return slices.ContainsFunc(l, func(e Entry) bool { return e.Name == name && e.Done })
}

// Pending returns the begun steps that were not done.
func (l Log) Pending() []string {
	var out []string
	for _, e := range l {
		if !e.Done {
			out = append(out, e.Name)
		}
	}
	return out
}

// The Log methods below return a new slice: records are copied by value,
// and an append into a shared backing array would change another copy.

func (l Log) begin(name string) Log { return append(slices.Clip(l), Entry{Name: name}) }

func (l Log) done(name string) Log {
	out := slices.Clone(l)
	for i := range out {
		if out[i].Name == name {
			out[i].Done = true
		}
	}
	return out
}

func (l Log) drop(name string) Log {
	return slices.DeleteFunc(slices.Clone(l), func(e Entry) bool { return e.Name == name })
}

// Table is the record store the steps are kept in (a store.Table).
type Table[T any] interface {
	Update(id string, fn func(*T) error) (T, error)
}

// Recorder records the steps of one kind of object.
type Recorder[T any] struct {
	Table Table[T]
	Log   func(*T) *Log // the record's step log
	Op    string        // crash points are named "<Op>/<step>"
}

// Step is one side effect.
type Step[T any] struct {
	Name string
	// Intent, if set, records with the intent what the undo will need
	// to know (an ID chosen for the effect).
	Intent func(*T)
	// Make makes the effect, given the record as it was when the intent
	// was recorded.
	Make func(ctx context.Context, rec T) error
	// Made, if set, records what Make produced, with the step's end.
	Made func(*T)
}

// Run records s as begun, makes it, and records it as done. If Make fails
// the intent stays recorded: the caller's undo cleans up.
func (r Recorder[T]) Run(ctx context.Context, id string, s Step[T]) error {
	done, err := r.begin(ctx, id, s, nil)
	if err != nil {
		return err
	}
	_, err = r.Table.Update(id, func(v *T) error { done(v); return nil })
	return err
}

// RunAll runs the steps of plan in order, stopping at the first failure,
// then records finish, and returns the record and how long each step
// took. Each step's end is written together with the next step's intent,
// and the last one's with finish: one write per step instead of two, with
// the record at every crash point just as Run would leave it.
func (r Recorder[T]) RunAll(ctx context.Context, id string, plan []Step[T], finish func(*T)) (T, map[string]time.Duration, error) {
	took := make(map[string]time.Duration, len(plan))
	var prev func(*T)
	for _, s := range plan {
		start := time.Now()
		done, err := r.begin(ctx, id, s, prev)
		if err != nil {
			var zero T
			return zero, took, err
		}
		took[s.Name] = time.Since(start)
		prev = done
	}
	rec, err := r.Table.Update(id, func(v *T) error {
		if prev != nil {
			prev(v)
		}
		if finish != nil {
			finish(v)
		}
		return nil
	})
	return rec, took, err
}

// begin records s as begun, with prev (the end of the step before) in the
// same write, and makes it. It returns the record of s's end, for the
// caller to write.
func (r Recorder[T]) begin(ctx context.Context, id string, s Step[T], prev func(*T)) (done func(*T), err error) {
	rec, err := r.Table.Update(id, func(v *T) error {
		if prev != nil {
			prev(v)
		}
		l := r.Log(v)
		if l.Has(s.Name) {
			return fmt.Errorf("step %s of %s %s was already begun", s.Name, r.Op, id)
		}
		*l = l.begin(s.Name)
		if s.Intent != nil {
			s.Intent(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	crashpoint.Hit(r.Op + "/" + s.Name)
	if err := s.Make(ctx, rec); err != nil {
		return nil, err
	}
	crashpoint.Hit(r.Op + "/" + s.Name + "/made")
	return func(v *T) {
		l := r.Log(v)
		*l = l.done(s.Name)
		if s.Made != nil {
			s.Made(v)
		}
	}, nil
}

// Confirm records a step that Run began as done, with what made says: a
// reconciler that found the effect made (a crash came before Run could
// say so) finishes the step this way.
func (r Recorder[T]) Confirm(id, name string, made func(*T)) (T, error) {
	return r.Table.Update(id, func(v *T) error {
		l := r.Log(v)
		if !l.Has(name) {
			return fmt.Errorf("step %s of %s %s was not begun", name, r.Op, id)
		}
		*l = l.done(name)
		if made != nil {
			made(v)
		}
		return nil
	})
}

// Undo undoes one step.
type Undo[T any] struct {
	// Do gets the record as it is now and must succeed whether the
	// step's effect was made, made halfway, or not at all.
	Do func(ctx context.Context, rec T) error
	// Forget, if set, clears what the record says of the effect; it
	// runs with the step's removal from the record.
	Forget func(*T)
}

// Undoers undo steps by name.
type Undoers[T any] map[string]Undo[T]

// Undo undoes, last first, every recorded step that undo has a function
// for, and drops each from the record once undone; steps without one are
// kept. It stops at the first failure, which a later Undo resumes.
func (r Recorder[T]) Undo(ctx context.Context, id string, current T, undo Undoers[T]) (T, error) {
	rec := current
	l := *r.Log(&rec)
	for i := len(l) - 1; i >= 0; i-- {
		name := l[i].Name
		u, ok := undo[name]
		if !ok {
			continue
		}
		if err := u.Do(ctx, rec); err != nil {
			return rec, fmt.Errorf("undo %s of %s %s: %w", name, r.Op, id, err)
		}
		crashpoint.Hit(r.Op + "/" + name + "/undone")
		var err error
		rec, err = r.Table.Update(id, func(v *T) error {
			*r.Log(v) = r.Log(v).drop(name)
			if u.Forget != nil {
				u.Forget(v)
			}
			return nil
		})
		if err != nil {
			return rec, err
		}
	}
	return rec, nil
}
