package container

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestGracePeriod(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]string
		want time.Duration
	}{
		{nil, 0},
		{map[string]string{"io.kubernetes.pod.terminationGracePeriod": "30"}, 30 * time.Second},
		{map[string]string{"io.kubernetes.pod.terminationGracePeriod": "-1"}, 0},
		{map[string]string{"io.kubernetes.pod.terminationGracePeriod": "soon"}, 0},
	} {
		if got := gracePeriod(tc.in); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestMatch(t *testing.T) {
	raw, _ := proto.Marshal(&runtimeapi.ContainerConfig{Labels: map[string]string{"app": "web", "tier": "1"}})
	c := &Container{ID: "abcdef", SandboxID: "pod123", State: StateRunning, Config: raw}
	running := &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}
	exited := &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}
	for _, tc := range []struct {
		name string
		f    *runtimeapi.ContainerFilter
		want bool
	}{
		{"nil filter", nil, true},
		{"id prefix", &runtimeapi.ContainerFilter{Id: "abc"}, true},
		{"other id", &runtimeapi.ContainerFilter{Id: "x"}, false},
		{"pod prefix", &runtimeapi.ContainerFilter{PodSandboxId: "pod1"}, true},
		{"state", &runtimeapi.ContainerFilter{State: running}, true},
		{"other state", &runtimeapi.ContainerFilter{State: exited}, false},
		{"labels", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "web"}}, true},
		{"label mismatch", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "db"}}, false},
	} {
		if got := c.Match(tc.f); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}
