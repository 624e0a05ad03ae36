package server

import (
	"context"
	"encoding/json"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	runtimeName = "crid"
	// apiVersion is the CRI API version crid implements.
	apiVersion = "v1"
	// kubeAPIVersion is the legacy "version" field: the kubelet sends and
	// expects 0.1.0.
	kubeAPIVersion = "0.1.0"
)

func (s *Server) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       runtimeName,
		RuntimeVersion:    s.version,
		RuntimeApiVersion: apiVersion,
	}, nil
}

func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	netReady, reason, message := s.pods.NetworkReady()
	rtReady, rtReason, rtMessage := s.containers.RuntimeReady()
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: rtReady, Reason: rtReason, Message: rtMessage},
			{Type: runtimeapi.NetworkReady, Status: netReady, Reason: reason, Message: message},
		}},
		RuntimeHandlers: s.runtimeHandlers(),
		Features: &runtimeapi.RuntimeFeatures{
			// Merge and Strict are both implemented (internal/container/spec).
			SupplementalGroupsPolicy: true,
			// Mount.mount_options: noexec, nosuid, nodev and the access-time
			// options are applied to bind mounts, anything else refused
			// (internal/container/spec, addBindOptions). The kubelet
			// rejects pods that ask for them unless this is set.
			MountOptions: true,
		},
	}
	if err := s.nriErr; err != nil {
		// Not a condition the kubelet waits for: pods run without NRI.
		resp.Status.Conditions = append(resp.Status.Conditions, &runtimeapi.RuntimeCondition{
			Type: "NRIReady", Status: false, Reason: "NRIUnavailable", Message: err.Error(),
		})
	}
	if req.GetVerbose() {
		cfg, err := json.Marshal(s.cfg)
		if err != nil {
			return nil, err
		}
		// Objects crid has not yet reconciled since it started: their
		// state is the last recorded one, and changes answer Unavailable.
		recovering, _ := json.Marshal(map[string]int{"pods": s.pods.Recovering(), "containers": s.containers.Recovering()})
		checkpoint := "enabled"
		if err := s.containers.CheckpointOff(); err != nil {
			checkpoint = err.Error()
		}
		resp.Info = map[string]string{"config": string(cfg), "recovering": string(recovering), "checkpoint": checkpoint}
	}
	return resp, nil
}

func (s *Server) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.cfg.CgroupDriver == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// runtimeHandlers lists the handlers whose runtime binary resolved, the
// default one also under the empty name the kubelet uses for pods without
// a RuntimeClass (if it resolved).
func (s *Server) runtimeHandlers() []*runtimeapi.RuntimeHandler {
	names := s.containers.HandlerNames()
	for _, n := range names {
		if n == s.containers.DefaultHandler() {
			names = append([]string{""}, names...)
			break
		}
	}
	out := make([]*runtimeapi.RuntimeHandler, 0, len(names))
	for _, n := range names {
		out = append(out, &runtimeapi.RuntimeHandler{Name: n, Features: &runtimeapi.RuntimeHandlerFeatures{
			RecursiveReadOnlyMounts: s.containers.SupportsRRO(n),
			UserNamespaces:          s.containers.SupportsUserNS(n),
		}})
	}
	return out
}

// UpdatePodSandboxResources applies new pod-level resources (an in-place
// resize) to the pod's cgroup, past the NRI plugins, and records them.
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id", "required")
	}
	if err := s.pods.UpdateResources(ctx, req.GetPodSandboxId(), req.GetOverhead(), req.GetResources()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
