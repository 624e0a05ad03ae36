package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/checkpoint"
)

// CheckpointContainer dumps a running container with CRIU into an archive
// at location, leaving it running. timeout (seconds), if set, bounds the
// call as the kubelet's checkpoint request asks.
func (s *Server) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container_id", "required")
	}
	if req.GetLocation() == "" {
		return nil, invalid("location", "required")
	}
	if req.GetTimeout() < 0 {
		return nil, invalid("timeout", "must not be negative")
	}
	// A timeout too long to count in nanoseconds is no bound at all.
	if t := req.GetTimeout(); t > 0 && t < int64(math.MaxInt64/time.Second) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	if err := s.containers.Checkpoint(ctx, req.GetContainerId(), req.GetLocation()); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointContainerResponse{}, nil
}

// CheckpointPod writes one consistent checkpoint of the pod's selected
// containers under output_path (see container.Manager.CheckpointPod).
func (s *Server) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id", "required")
	}
	if len(req.GetContainerIds()) == 0 {
		return nil, invalid("container_ids", "required")
	}
	if err := s.containers.CheckpointPod(ctx, req.GetPodSandboxId(), req.GetOutputPath(), req.GetContainerIds(), req.GetOptions()); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointPodResponse{}, nil
}

// maxPodCheckpointBytes bounds a pod checkpoint a restore reads: about the
// largest memory a node's pod has.
const maxPodCheckpointBytes = 256 << 30

// RestorePod makes a new pod from a pod checkpoint, with the kubelet's
// restore-time configuration, and in it one CREATED container per
// checkpointed container, which StartContainer restores. The checkpoint
// is verified whole first and never written to; on any error the pod and
// what was made in it are removed.
func (s *Server) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (resp *runtimeapi.RestorePodResponse, retErr error) {
	dir := req.GetCheckpointPath()
	switch {
	case dir == "":
		return nil, invalid("checkpoint_path", "required")
	case !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || strings.ContainsRune(dir, 0):
		return nil, invalid("checkpoint_path", "%q is not an absolute, clean path", dir)
	case req.GetConfig() == nil:
		return nil, invalid("config", "required")
	case len(req.GetContainerConfigs()) == 0:
		return nil, invalid("container_configs", "required")
	}
	for k := range req.GetOptions() {
		return nil, invalid("options", "%q: crid has no restore options", k)
	}
	if err := s.containers.CheckpointOff(); err != nil {
		return nil, fmt.Errorf("restore pod: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	handler := req.GetRuntimeHandler()
	if handler == "" {
		handler = s.containers.DefaultHandler()
	} else if !slices.Contains(s.containers.HandlerNames(), handler) {
		return nil, invalid("runtime_handler", "%q is not configured", handler)
	}
	manifest, _, err := checkpoint.ReadPod(ctx, dir, maxPodCheckpointBytes)
	if errors.Is(err, checkpoint.ErrBadArchive) {
		return nil, fmt.Errorf("restore pod: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return nil, fmt.Errorf("restore pod: %w", err)
	}
	if manifest.Handler != handler {
		return nil, fmt.Errorf("restore pod: the checkpoint was taken with runtime handler %q; runtime handler %q cannot restore it: %w",
			manifest.Handler, handler, errdefs.ErrFailedPrecondition)
	}
	// The configurations name exactly the checkpointed containers.
	byName := map[string]checkpoint.PodContainer{}
	for _, c := range manifest.Containers {
		byName[c.Name] = c
	}
	seen := map[string]bool{}
	for i, cfg := range req.GetContainerConfigs() {
		name := cfg.GetMetadata().GetName()
		switch _, ok := byName[name]; {
		case name == "":
			return nil, invalid(fmt.Sprintf("container_configs[%d].metadata.name", i), "required")
		case seen[name]:
			return nil, invalid("container_configs", "container %q is repeated", name)
		case !ok:
			return nil, invalid("container_configs", "container %q is not in the checkpoint", name)
		}
		seen[name] = true
	}
	if len(seen) != len(byName) {
		var missing []string
		for name := range byName {
			if !seen[name] {
				missing = append(missing, name)
			}
		}
		slices.Sort(missing)
		return nil, invalid("container_configs", "no configuration for checkpointed containers %q", missing)
	}

	podID, err := s.pods.Run(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	log := s.log.With("pod", podID)
	defer func() {
		if retErr == nil {
			return
		}
		// Removing the pod removes the containers made in it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := s.pods.Remove(rctx, podID); err != nil {
			log.Error("could not remove the pod of a failed restore", "err", err)
		}
	}()
	sb, err := s.pods.Get(podID)
	if err != nil {
		return nil, err
	}
	if shm := sb.Shm(); shm != "/dev/shm" {
		if err := checkpoint.RestoreShm(ctx, dir, shm); err != nil {
			return nil, fmt.Errorf("restore pod %s: /dev/shm: %w", podID, err)
		}
	}
	resp = &runtimeapi.RestorePodResponse{PodSandboxId: podID}
	for _, cfg := range req.GetContainerConfigs() {
		want := byName[cfg.GetMetadata().GetName()]
		rel, _ := checkpoint.ContainerArchive(want.Name)
		id, err := s.containers.CreateRestored(ctx, podID, cfg, filepath.Join(dir, filepath.FromSlash(rel)), want)
		if err != nil {
			return nil, err
		}
		resp.RestoredContainers = append(resp.RestoredContainers, &runtimeapi.RestoredContainer{Name: want.Name, ContainerId: id})
	}
	log.Info("pod restored from a checkpoint", "checkpoint", dir, "containers", len(resp.RestoredContainers))
	return resp, nil
}
