package image

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// normalizeRef turns what a user or the kubelet typed into the canonical
// reference crid stores: "busybox" → "docker.io/library/busybox:latest",
// "repo:tag@sha256:…" → "repo@sha256:…" (the digest wins, as in the kubelet).
func normalizeRef(s string) (reference.Named, error) {
	if s == "" {
		return nil, fmt.Errorf("image: reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	named, err := reference.ParseDockerRef(s)
	if err != nil {
		return nil, fmt.Errorf("image: reference %q: %v: %w", s, err, errdefs.ErrInvalidArgument)
	}
	return named, nil
}

// parseID accepts "sha256:<64 hex>" or a bare 64-hex ID.
func parseID(s string) (digest.Digest, bool) {
	if !strings.Contains(s, ":") {
		s = "sha256:" + s
	}
	d, err := digest.Parse(s)
	if err != nil || d.Algorithm() != digest.SHA256 {
		return "", false
	}
	return d, true
}

// isHexPrefix reports whether s could be a truncated image ID.
func isHexPrefix(s string) bool {
	if len(s) < 4 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
