package spec

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageMount is a CRI mount of an image rather than a host path (KEP-4639,
// a pod's volumes[].image). The caller mounts the image read-only and
// passes the dir to bind in Input.ImageVolumes.
type ImageMount struct {
	Index   int    // in the config's mounts
	Image   string // mounts[i].image.image: the image ID PullImage returned
	SubPath string // image_sub_path, cleaned; "" is the image's root
}

// IsImageMount reports whether m mounts an image.
func IsImageMount(m *runtimeapi.Mount) bool { return m.GetImage().GetImage() != "" }

// ImageMounts returns the image mounts of cfg, checked as Build checks
// them, so that a bad one is refused before anything is made.
func ImageMounts(cfg *runtimeapi.ContainerConfig) ([]ImageMount, error) {
	var out []ImageMount
	for i, m := range cfg.GetMounts() {
		sub, ok, err := checkImageMount(fmt.Sprintf("mounts[%d]", i), m)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, ImageMount{Index: i, Image: m.GetImage().GetImage(), SubPath: sub})
		}
	}
	return out, nil
}

// checkImageMount checks what a mount of an image must be: without a host
// path and read-only (image volumes are read-only by definition), its sub
// path relative and without "..". It returns the cleaned sub path and
// whether m mounts an image at all; a sub path without an image is an
// error, not ignored.
func checkImageMount(field string, m *runtimeapi.Mount) (subPath string, isImage bool, err error) {
	if !IsImageMount(m) {
		if m.GetImageSubPath() != "" {
			return "", false, invalid(field+".image_sub_path", "set without an image")
		}
		return "", false, nil
	}
	if m.GetHostPath() != "" {
		return "", true, invalid(field+".host_path", "must be empty when image is set (%q)", m.GetHostPath())
	}
	if !m.GetReadonly() {
		return "", true, invalid(field+".readonly", "image volumes are always read-only: must be true")
	}
	sub := m.GetImageSubPath()
	if sub == "" {
		return "", true, nil
	}
	if filepath.IsAbs(sub) {
		return "", true, invalid(field+".image_sub_path", "%q is not relative to the image's root", sub)
	}
	if slices.Contains(strings.Split(sub, "/"), "..") {
		return "", true, invalid(field+".image_sub_path", "%q contains \"..\"", sub)
	}
	if sub = filepath.Clean(sub); sub == "." {
		sub = ""
	}
	return sub, true, nil
}

// imageSource is the dir Build binds for the image mount at index i: where
// the caller mounted the image (or resolved its sub path).
func imageSource(field string, i int, in Input) (string, error) {
	src := in.ImageVolumes[i]
	if src == "" {
		return "", fmt.Errorf("%w: %s.image: the image %q is not mounted", errdefs.ErrFailedPrecondition, field, in.Config.GetMounts()[i].GetImage().GetImage())
	}
	return src, nil
}
