package container

import (
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodStatuses has every container the kubelet made in the pod, newest
// first, whatever its state, and nothing of other pods.
func TestPodStatuses(t *testing.T) {
	h := newHarness(t)
	web := h.run("pod-a", "web")
	side := h.create("pod-a", "side")
	other := h.create("pod-b", "web")
	if err := h.m.Stop(bg, web, 0); err != nil {
		t.Fatal(err)
	}
	ids := func(pod string) []string {
		var out []string
		for _, st := range h.m.PodStatuses(pod) {
			out = append(out, st.GetId())
		}
		return out
	}
	if got := ids("pod-a"); !slices.Equal(got, []string{side, web}) {
		t.Errorf("pod-a: %v, want %v", got, []string{side, web})
	}
	if got := ids("pod-b"); !slices.Equal(got, []string{other}) {
		t.Errorf("pod-b: %v, want %v", got, []string{other})
	}
	if got := ids("pod-c"); len(got) != 0 {
		t.Errorf("unknown pod: %v", got)
	}
	st := h.m.PodStatuses("pod-a")
	if st[0].GetState() != runtimeapi.ContainerState_CONTAINER_CREATED || st[1].GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("states %v, %v", st[0].GetState(), st[1].GetState())
	}
	if err := h.m.Remove(bg, side); err != nil {
		t.Fatal(err)
	}
	if got := ids("pod-a"); !slices.Equal(got, []string{web}) {
		t.Errorf("after removing side: %v", got)
	}
}
