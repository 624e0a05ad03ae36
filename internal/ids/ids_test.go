package ids

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestNew(t *testing.T) {
	a, b := New(), New()
	if len(a) != 64 || a == b {
		t.Fatalf("%q %q", a, b)
	}
}

func TestFind(t *testing.T) {
	type rec struct{ hidden bool }
	m := map[string]*rec{"abc1": {}, "abc2": {}, "def": {}, "dee": {hidden: true}}
	visible := func(r *rec) bool { return !r.hidden }
	for _, tc := range []struct {
		id   string
		want *rec
		err  func(error) bool
	}{
		{"abc1", m["abc1"], nil},
		{"d", m["def"], nil}, // "dee" is hidden from prefix matches
		{"dee", m["dee"], nil},
		{"abc", nil, errdefs.IsInvalidArgument},
		{"", nil, errdefs.IsInvalidArgument},
		{"x", nil, errdefs.IsNotFound},
	} {
		got, err := Find(m, tc.id, "thing", visible)
		if tc.err != nil {
			if !tc.err(err) {
				t.Errorf("%q: err %v", tc.id, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %v %v", tc.id, got, err)
		}
	}
}
