package store

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

type rec struct {
	Name string
	N    int
}

func TestRoundTripAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *Tx) error {
		if err := tx.Put("things", "a", rec{"a", 1}); err != nil {
			return err
		}
		return tx.Put("things", "b", rec{"b", 2})
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(func(tx *Tx) error {
		var r rec
		if err := tx.Get("things", "b", &r); err != nil {
			return err
		}
		if r.N != 2 {
			t.Errorf("got %+v", r)
		}
		all, err := List[rec](tx, "things")
		if err != nil {
			return err
		}
		if len(all) != 2 || all[0].Name != "a" {
			t.Errorf("list = %+v", all)
		}
		if err := tx.Get("things", "zz", &r); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("missing key: %v, want NotFound", err)
		}
		if err := tx.Get("nobucket", "zz", &r); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("missing bucket: %v, want NotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFailedUpdateChangesNothing(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(func(tx *Tx) error { return tx.Put("things", "a", rec{"a", 1}) }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = s.Update(func(tx *Tx) error {
		if err := tx.Put("things", "a", rec{"a", 99}); err != nil {
			return err
		}
		if err := tx.Delete("things", "a"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	_ = s.View(func(tx *Tx) error {
		var r rec
		if err := tx.Get("things", "a", &r); err != nil || r.N != 1 {
			t.Errorf("after failed update: %+v, %v", r, err)
		}
		return nil
	})
}

func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := Open(path); err == nil {
		s2.Close()
		t.Fatal("second Open of a locked store succeeded")
	}
}
