package sandbox

import (
	"encoding/json"
	"sort"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (s *Sandbox) criState() runtimeapi.PodSandboxState {
	if s.State == StateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// CRIStatus is the sandbox as PodSandboxStatus reports it.
func (s *Sandbox) CRIStatus() *runtimeapi.PodSandboxStatus {
	cfg := s.PodConfig()
	st := &runtimeapi.PodSandboxStatus{
		Id:             s.ID,
		Metadata:       cfg.GetMetadata(),
		State:          s.criState(),
		CreatedAt:      s.CreatedAt.UnixNano(),
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: s.RuntimeHandler,
		Network:        &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if len(s.IPs) > 0 {
		st.Network.Ip = s.IPs[0]
		for _, ip := range s.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

// CRI is the sandbox as ListPodSandbox reports it.
func (s *Sandbox) CRI() *runtimeapi.PodSandbox {
	cfg := s.PodConfig()
	return &runtimeapi.PodSandbox{
		Id:             s.ID,
		Metadata:       cfg.GetMetadata(),
		State:          s.criState(),
		CreatedAt:      s.CreatedAt.UnixNano(),
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: s.RuntimeHandler,
	}
}

// Info is the verbose status: the record and the pod config, as JSON.
func (s *Sandbox) Info() map[string]string {
	b, err := json.Marshal(struct {
		*Sandbox
		Config *runtimeapi.PodSandboxConfig `json:"config"`
	}{s, s.PodConfig()})
	if err != nil {
		return nil
	}
	return map[string]string{"info": string(b)}
}

// Match reports whether the sandbox passes a ListPodSandbox filter: ID
// prefix, state, and every label of the selector.
func (s *Sandbox) Match(f *runtimeapi.PodSandboxFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(s.ID, f.GetId()) {
		return false
	}
	if f.GetState() != nil && f.GetState().GetState() != s.criState() {
		return false
	}
	labels := s.PodConfig().GetLabels()
	for k, v := range f.GetLabelSelector() {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Sorted returns the sandboxes newest first.
func Sorted(sbs []Sandbox) []Sandbox {
	sort.Slice(sbs, func(i, j int) bool { return sbs[i].CreatedAt.After(sbs[j].CreatedAt) })
	return sbs
}
