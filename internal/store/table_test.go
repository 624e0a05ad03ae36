package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

type thing struct {
	ID, Name string
	N        int
	Hidden   bool
}

func openTable(t *testing.T, path string) (*Store, *Table[thing]) {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := NewTable(db, "things", "thing", Keys[thing]{
		ID:   func(v *thing) string { return v.ID },
		Name: func(v *thing) string { return v.Name },
	})
	if err != nil {
		t.Fatal(err)
	}
	return db, tb
}

func TestTableUpdateIsAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, tb := openTable(t, path)
	if err := tb.Insert(thing{ID: "a1", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Insert(thing{ID: "a1"}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second insert: %v", err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tb.Update("a1", func(v *thing) error { v.N++; return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if v, _ := tb.Get("a1"); v.N != 50 {
		t.Fatalf("N = %d after 50 concurrent increments", v.N)
	}
	// A failing fn changes nothing.
	if _, err := tb.Update("a1", func(v *thing) error { v.N = -1; return errors.New("no") }); err == nil {
		t.Fatal("fn error lost")
	}
	db.Close()
	db, tb = openTable(t, path)
	defer db.Close()
	if v, ok := tb.Get("a1"); !ok || v.N != 50 {
		t.Fatalf("reloaded %+v %v", v, ok)
	}
}

// An Update that comes after a Delete must not bring the record back: a
// Stop queued behind a Remove once did.
func TestTableUpdateAfterDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, tb := openTable(t, path)
	if err := tb.Insert(thing{ID: "a1", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	changed := tb.Changed("a1")
	if err := tb.Delete("a1"); err != nil {
		t.Fatal(err)
	}
	<-changed // deletion is a change
	if _, err := tb.Update("a1", func(v *thing) error { v.N = 1; return nil }); !errdefs.IsNotFound(err) {
		t.Fatalf("update of a deleted record: %v", err)
	}
	db.Close()
	db, tb = openTable(t, path)
	defer db.Close()
	if _, ok := tb.Get("a1"); ok {
		t.Fatal("deleted record came back")
	}
	// Its name is free again.
	if res, existing, err := tb.Reserve(context.Background(), "a", "a2"); err != nil || existing != "" || res == nil {
		t.Fatalf("reserve freed name: %v %q", err, existing)
	}
}

func TestTableFindAndNames(t *testing.T) {
	db, tb := openTable(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()
	for _, v := range []thing{{ID: "abc", Name: "x"}, {ID: "abd", Name: "y", Hidden: true}} {
		if err := tb.Insert(v); err != nil {
			t.Fatal(err)
		}
	}
	shown := func(v *thing) bool { return !v.Hidden }
	if v, err := tb.Find("ab", shown); err != nil || v.ID != "abc" {
		t.Fatalf("prefix: %+v %v", v, err)
	}
	if _, err := tb.Find("abd", shown); !errdefs.IsNotFound(err) {
		t.Fatalf("hidden record found: %v", err)
	}
	if n := len(tb.List(shown)); n != 1 {
		t.Fatalf("List: %d", n)
	}
	// Names of loaded records are held.
	db.Close()
}

func TestTableChanged(t *testing.T) {
	db, tb := openTable(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()
	if err := tb.Insert(thing{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	ch := tb.Changed("a")
	select {
	case <-ch:
		t.Fatal("closed before a change")
	default:
	}
	if _, err := tb.Update("a", func(v *thing) error { v.N = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	<-ch
	select {
	case <-tb.Changed("missing"):
	default:
		t.Fatal("Changed of a missing record must be closed")
	}
}

// Records loaded at start answer reads but refuse changes until repaired.
func TestTableRecovering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, tb := openTable(t, path)
	if err := tb.Insert(thing{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := tb.CheckRecovered("a"); err != nil || tb.Recovering() != 0 {
		t.Fatalf("a record made since the start is not recovering: %v", err)
	}
	db.Close()
	db, tb = openTable(t, path)
	defer db.Close()
	if err := tb.CheckRecovered("a"); !errdefs.IsUnavailable(err) || tb.Recovering() != 1 {
		t.Fatalf("loaded record: %v, %d recovering", err, tb.Recovering())
	}
	v, unlock, ok := tb.TryLockGet("a")
	if !ok || v.ID != "a" {
		t.Fatal("TryLockGet of a free record failed")
	}
	if _, _, ok := tb.TryLockGet("a"); ok {
		t.Fatal("TryLockGet took a held lock")
	}
	unlock()
	if _, _, ok := tb.TryLockGet("missing"); ok {
		t.Fatal("TryLockGet of a missing record succeeded")
	}
	tb.Recovered("a")
	if err := tb.CheckRecovered("a"); err != nil || tb.Recovering() != 0 {
		t.Fatalf("after Recovered: %v", err)
	}
}
