package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/image"
)

type imageSpec = *runtimeapi.ImageSpec

// imageService is what the CRI image handlers need of the image store.
type imageService interface {
	Pull(ctx context.Context, ref string, auth *image.Auth) (digest.Digest, error)
	Get(ref string) (image.Image, error)
	List() []image.Image
	Remove(ctx context.Context, ref string) error
	Pinned(img image.Image) bool
	Config(img image.Image) ([]byte, error)
	Usage() image.FsUsage
}

func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("image.image", "an image reference is required")
	}
	var auth *image.Auth
	if a := req.GetAuth(); a != nil {
		auth = &image.Auth{
			Username:      a.GetUsername(),
			Password:      a.GetPassword(),
			Auth:          a.GetAuth(),
			IdentityToken: a.GetIdentityToken(),
			RegistryToken: a.GetRegistryToken(),
		}
	}
	start := time.Now()
	id, err := s.images.Pull(ctx, ref, auth)
	if err != nil {
		return nil, err
	}
	if s.metrics != nil {
		// The image's size stands for the bytes pulled: crid keeps no
		// compressed copy, and a pull of a present image is near-instant.
		if img, err := s.images.Get(id.String()); err == nil {
			s.metrics.ObservePull(img.Size, time.Since(start))
		}
	}
	return &runtimeapi.PullImageResponse{ImageRef: id.String()}, nil
}

func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("image.image", "an image reference or ID is required")
	}
	img, err := s.images.Get(ref)
	if errdefs.IsNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: s.toCRIImage(img)}
	if req.GetVerbose() {
		cfg, err := s.images.Config(img)
		if err != nil {
			return nil, err
		}
		info, err := json.Marshal(struct {
			ImageSpec      json.RawMessage `json:"imageSpec"`
			ManifestDigest digest.Digest   `json:"manifestDigest"`
			DiffIDs        []digest.Digest `json:"diffIDs"`
			Pulled         time.Time       `json:"pulled"`
		}{cfg, img.ManifestDigest, img.Layers, img.Pulled})
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.listImages(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: imgs}, nil
}

// streamBatch keeps each streamed message far below the 16 MiB limit: an
// image record is well under 2 KiB.
const streamBatch = 1000

func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream runtimeapi.ImageService_StreamImagesServer) error {
	imgs, err := s.listImages(req.GetFilter())
	if err != nil {
		return err
	}
	return sendBatches(imgs, func(b []*runtimeapi.Image) error {
		return stream.Send(&runtimeapi.StreamImagesResponse{Images: b})
	})
}

func (s *Server) listImages(filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	if ref := filter.GetImage().GetImage(); ref != "" {
		img, err := s.images.Get(ref)
		if errdefs.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*runtimeapi.Image{s.toCRIImage(img)}, nil
	}
	all := s.images.List()
	out := make([]*runtimeapi.Image, 0, len(all))
	for _, img := range all {
		out = append(out, s.toCRIImage(img))
	}
	return out, nil
}

func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("image.image", "an image reference or ID is required")
	}
	if err := s.images.Remove(ctx, ref); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

func (s *Server) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	u := s.images.Usage()
	resp := &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems: []*runtimeapi.FilesystemUsage{{
			Timestamp:  time.Now().UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: u.Bytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: u.Inodes},
		}},
	}
	// The container filesystem (every writable layer) is reported apart
	// from the images', as containerd and CRI-O do, so the kubelet's
	// eviction can tell image garbage from container writes.
	if s.stats != nil {
		dir, cu, err := s.stats.ContainerFs()
		if err != nil {
			return nil, fmt.Errorf("container filesystem usage: %w", err)
		}
		resp.ContainerFilesystems = []*runtimeapi.FilesystemUsage{{
			Timestamp:  time.Now().UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: dir},
			UsedBytes:  &runtimeapi.UInt64Value{Value: cu.Bytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: cu.Inodes},
		}}
	}
	return resp, nil
}

func (s *Server) toCRIImage(img image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID.String(),
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.Size),
		Spec:        &runtimeapi.ImageSpec{Image: img.ID.String()},
		Pinned:      s.images.Pinned(img),
	}
	if uid, name := img.UserID(); uid != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *uid}
	} else {
		out.Username = name
	}
	return out
}
