package steps

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

type rec struct {
	Log  Log
	Data string
}

// table is an in-memory Table that can fail its next update.
type table struct {
	recs     map[string]rec
	failNext bool
	writes   int
}

func (t *table) Update(id string, fn func(*rec) error) (rec, error) {
	if t.failNext {
		t.failNext = false
		return rec{}, errors.New("disk full")
	}
	t.writes++
	v, ok := t.recs[id]
	if !ok {
		return rec{}, fmt.Errorf("%s: not found", id)
	}
	if err := fn(&v); err != nil {
		return rec{}, err
	}
	t.recs[id] = v
	return v, nil
}

func recorder(t *table) Recorder[rec] {
	return Recorder[rec]{Table: t, Log: func(r *rec) *Log { return &r.Log }, Op: "test"}
}

func TestRunRecordsIntentBeforeEffect(t *testing.T) {
	tb := &table{recs: map[string]rec{"a": {}}}
	r := recorder(tb)
	var sawIntent bool
	err := r.Run(context.Background(), "a", Step[rec]{
		Name:   "one",
		Intent: func(v *rec) { v.Data = "intent" },
		Make: func(_ context.Context, v rec) error {
			sawIntent = v.Log.Has("one") && !v.Log.Done("one") && v.Data == "intent" && tb.recs["a"].Log.Has("one")
			return nil
		},
		Made: func(v *rec) { v.Data += "+made" },
	})
	if err != nil || !sawIntent {
		t.Fatalf("err %v, intent recorded before the effect: %v", err, sawIntent)
	}
	if got := tb.recs["a"]; !got.Log.Done("one") || got.Data != "intent+made" {
		t.Fatalf("record %+v", got)
	}
	// A step is begun once.
	if err := r.Run(context.Background(), "a", Step[rec]{Name: "one", Make: func(context.Context, rec) error { return nil }}); err == nil {
		t.Fatal("a second run of one step succeeded")
	}
}

func TestFailedStepStaysOwed(t *testing.T) {
	tb := &table{recs: map[string]rec{"a": {}}}
	r := recorder(tb)
	boom := errors.New("boom")
	if err := r.Run(context.Background(), "a", Step[rec]{Name: "one", Make: func(context.Context, rec) error { return boom }}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got := tb.recs["a"].Log.Pending(); !reflect.DeepEqual(got, []string{"one"}) {
		t.Fatalf("pending %v", got)
	}
	// An intent that cannot be recorded makes nothing.
	tb.failNext = true
	made := false
	if err := r.Run(context.Background(), "a", Step[rec]{Name: "two", Make: func(context.Context, rec) error { made = true; return nil }}); err == nil || made {
		t.Fatalf("err %v, made %v", err, made)
	}
}

func TestUndoInReverseAndResumable(t *testing.T) {
	tb := &table{recs: map[string]rec{"a": {Log: Log{{"one", true}, {"two", true}, {"three", false}, {"keep", true}}}}}
	r := recorder(tb)
	var order []string
	fail := true
	undo := Undoers[rec]{
		"one": {Do: func(context.Context, rec) error { order = append(order, "one"); return nil }},
		"two": {Do: func(context.Context, rec) error {
			order = append(order, "two")
			if fail {
				fail = false
				return errors.New("busy")
			}
			return nil
		}, Forget: func(v *rec) { v.Data = "forgot two" }},
		"three": {Do: func(context.Context, rec) error { order = append(order, "three"); return nil }},
	}
	if _, err := r.Undo(context.Background(), "a", tb.recs["a"], undo); err == nil {
		t.Fatal("undo with a failing step succeeded")
	}
	got, err := r.Undo(context.Background(), "a", tb.recs["a"], undo)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"three", "two", "two", "one"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("undo order %v, want %v", order, want)
	}
	if !reflect.DeepEqual(got.Log, Log{{"keep", true}}) || got.Data != "forgot two" {
		t.Fatalf("after undo: %+v", got)
	}
}

func TestConfirm(t *testing.T) {
	tb := &table{recs: map[string]rec{"a": {Log: Log{{Name: "start"}}}}}
	r := recorder(tb)
	if _, err := r.Confirm("a", "start", func(v *rec) { v.Data = "running" }); err != nil {
		t.Fatal(err)
	}
	if v := tb.recs["a"]; !v.Log.Done("start") || v.Data != "running" {
		t.Fatalf("%+v", v)
	}
	if _, err := r.Confirm("a", "other", nil); err == nil {
		t.Fatal("confirmed a step never begun")
	}
}

// Log changes never write into a backing array another copy shares.
func TestLogCopyOnWrite(t *testing.T) {
	base := make(Log, 1, 4)
	base[0] = Entry{Name: "a"}
	x, y := base.begin("x"), base.begin("y")
	if x[1].Name != "x" || y[1].Name != "y" {
		t.Fatalf("appends share memory: %v %v", x, y)
	}
	d := x.done("a")
	if x[0].Done || !d[0].Done {
		t.Fatal("done changed its input")
	}
}

// RunAll writes once per step plus once to finish, and a step that fails
// leaves every step before it recorded done and itself owed.
func TestRunAll(t *testing.T) {
	tb := &table{recs: map[string]rec{"a": {}}}
	r := recorder(tb)
	ok := func(context.Context, rec) error { return nil }
	plan := []Step[rec]{
		{Name: "one", Make: ok, Made: func(v *rec) { v.Data += "1" }},
		{Name: "two", Make: func(_ context.Context, v rec) error {
			if !v.Log.Done("one") || v.Data != "1" {
				t.Errorf("step one not recorded done before two is made: %+v", v)
			}
			return nil
		}, Made: func(v *rec) { v.Data += "2" }},
	}
	got, took, err := r.RunAll(context.Background(), "a", plan, func(v *rec) { v.Data += "!" })
	if err != nil || got.Data != "12!" || !got.Log.Done("two") || len(took) != 2 {
		t.Fatalf("RunAll: %+v %v %v", got, took, err)
	}
	if tb.writes != 3 {
		t.Fatalf("%d writes for two steps, want 3", tb.writes)
	}
	tb.recs["b"] = rec{}
	boom := errors.New("boom")
	plan[1].Make = func(context.Context, rec) error { return boom }
	if _, _, err := r.RunAll(context.Background(), "b", plan, nil); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if v := tb.recs["b"]; !v.Log.Done("one") || !reflect.DeepEqual(v.Log.Pending(), []string{"two"}) {
		t.Fatalf("after a failed second step: %+v", v.Log)
	}
}
