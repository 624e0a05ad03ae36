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
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			{
				Type:    runtimeapi.NetworkReady,
				Status:  false,
				Reason:  "NetworkPluginNotReady",
				Message: "crid: no CNI network is configured",
			},
		}},
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: &runtimeapi.RuntimeHandlerFeatures{}}},
	}
	if req.GetVerbose() {
		cfg, err := json.Marshal(s.cfg)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"config": string(cfg)}
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
