package container

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"syscall"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/container/spec"
)

func (c *Container) criState() runtimeapi.ContainerState {
	switch c.State {
	case StateCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case StateRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case StateExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

func unixNano(t interface {
	UnixNano() int64
	IsZero() bool
}) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// CRIStatus is the container as ContainerStatus reports it.
func (c *Container) CRIStatus() *runtimeapi.ContainerStatus {
	cfg := c.ContainerConfig()
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    cfg.GetMetadata(),
		State:       c.criState(),
		CreatedAt:   c.CreatedAt.UnixNano(),
		StartedAt:   unixNano(c.StartedAt),
		FinishedAt:  unixNano(c.FinishedAt),
		ExitCode:    c.ExitCode,
		Image:       &runtimeapi.ImageSpec{Image: c.ImageName, Annotations: cfg.GetImage().GetAnnotations(), UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage()},
		ImageRef:    c.ImageID.String(),
		ImageId:     c.ImageID.String(),
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      cfg.GetLabels(),
		Annotations: cfg.GetAnnotations(),
		Mounts:      c.criMounts(),
		LogPath:     c.LogPath,
		StopSignal:  c.criStopSignal(),
	}
	if len(c.Resources) > 0 {
		r := &runtimeapi.LinuxContainerResources{}
		if proto.Unmarshal(c.Resources, r) == nil {
			st.Resources = &runtimeapi.ContainerResources{Linux: r}
		}
	}
	if len(c.User) > 0 {
		u := &runtimeapi.ContainerUser{}
		if proto.Unmarshal(c.User, u) == nil {
			st.User = u
		}
	}
	return st
}

// criMounts are the config's mounts, each image mount with the ID of the
// image mounted in image.image_ref (KEP-5365: the kubelet reports it in the
// pod's volume mount status), the value PullImage returned for it.
func (c *Container) criMounts() []*runtimeapi.Mount {
	mounts := c.ContainerConfig().GetMounts()
	if len(c.ImageVolumes) == 0 {
		return mounts
	}
	// Copies: the decoded config is shared by copies of the record.
	out := slices.Clone(mounts)
	for _, v := range c.ImageVolumes {
		if v.Mount < 0 || v.Mount >= len(out) || out[v.Mount].GetImage() == nil {
			continue
		}
		m := proto.CloneOf(out[v.Mount])
		m.Image.ImageRef = v.ImageID.String()
		out[v.Mount] = m
	}
	return out
}

// criStopSignal is the signal StopContainer sends first, as containerd
// reports it: the configured one as the kubelet named it, else the image's
// (or SIGTERM, recorded at create).
func (c *Container) criStopSignal() runtimeapi.Signal {
	if s := c.ContainerConfig().GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return s
	}
	if c.StopSignal == 0 {
		return runtimeapi.Signal_SIGNAL_SIGTERM
	}
	return spec.CRISignal(syscall.Signal(c.StopSignal))
}

// CRI is the container as ListContainers reports it.
func (c *Container) CRI() *runtimeapi.Container {
	cfg := c.ContainerConfig()
	return &runtimeapi.Container{
		Id:           c.ID,
		PodSandboxId: c.SandboxID,
		Metadata:     cfg.GetMetadata(),
		Image:        &runtimeapi.ImageSpec{Image: c.ImageName, UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage()},
		ImageRef:     c.ImageID.String(),
		ImageId:      c.ImageID.String(),
		State:        c.criState(),
		CreatedAt:    c.CreatedAt.UnixNano(),
		Labels:       cfg.GetLabels(),
		Annotations:  cfg.GetAnnotations(),
	}
}

// Info is the verbose status.
func (c *Container) Info() map[string]string {
	b, err := json.Marshal(struct {
		*Container
		Config *runtimeapi.ContainerConfig `json:"config"`
	}{c, c.ContainerConfig()})
	if err != nil {
		return nil
	}
	return map[string]string{"info": string(b)}
}

// Match reports whether the container passes a ListContainers filter.
func (c *Container) Match(f *runtimeapi.ContainerFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) {
		return false
	}
	if f.GetPodSandboxId() != "" && !strings.HasPrefix(c.SandboxID, f.GetPodSandboxId()) {
		return false
	}
	if f.GetState() != nil && f.GetState().GetState() != c.criState() {
		return false
	}
	labels := c.ContainerConfig().GetLabels()
	for k, v := range f.GetLabelSelector() {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Sorted returns containers newest first.
func Sorted(cs []Container) []Container {
	sort.Slice(cs, func(i, j int) bool { return cs[i].CreatedAt.After(cs[j].CreatedAt) })
	return cs
}
