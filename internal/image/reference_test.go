package image

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestNormalizeRef(t *testing.T) {
	const dgst = "sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf"
	for _, tc := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"library/busybox", "docker.io/library/busybox:latest"},
		{"docker.io/busybox", "docker.io/library/busybox:latest"},
		{"registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"},
		{"localhost:5000/a/b", "localhost:5000/a/b:latest"},
		{"gcr.io/x/img@" + dgst, "gcr.io/x/img@" + dgst},
		{"gcr.io/x/img:tag@" + dgst, "gcr.io/x/img@" + dgst},
	} {
		got, err := normalizeRef(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got.String() != tc.want {
			t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "upper/CASE", "a b", "busybox@sha256:short", ":tag", "x/../y"} {
		if _, err := normalizeRef(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: err %v, want InvalidArgument", bad, err)
		}
	}
}

func TestParseID(t *testing.T) {
	const hex = "9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf"
	if d, ok := parseID("sha256:" + hex); !ok || d.Encoded() != hex {
		t.Error("full ID")
	}
	if _, ok := parseID(hex); !ok {
		t.Error("bare ID")
	}
	for _, bad := range []string{"busybox", "sha256:abc", "md5:" + hex, ""} {
		if _, ok := parseID(bad); ok {
			t.Errorf("%q parsed as ID", bad)
		}
	}
}

func FuzzNormalizeRef(f *testing.F) {
	for _, s := range []string{"busybox", "a.b/c:d", "x@sha256:0000", "localhost:5000/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := normalizeRef(s)
		if err == nil {
			// A canonical reference must normalize to itself.
			again, err := normalizeRef(n.String())
			if err != nil || again.String() != n.String() {
				t.Fatalf("%q → %q → %v, %v", s, n, again, err)
			}
		}
	})
}
