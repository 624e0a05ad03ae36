package sandbox

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/namespaces"
)

func usernsPod(name string, net runtimeapi.NamespaceMode) *runtimeapi.PodSandboxConfig {
	cfg := podConfig(name)
	maps := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 300000, Length: 65536}}
	cfg.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
		Network: net, Pid: runtimeapi.NamespaceMode_CONTAINER,
		UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: maps, Gids: maps},
	}
	return cfg
}

func TestRunUserNS(t *testing.T) {
	m, _, _ := newTestManager(t)
	m.cfg.SupportsUserNS = func(h string) bool { return h == "userns" }

	for _, tc := range []struct {
		name    string
		cfg     *runtimeapi.PodSandboxConfig
		handler string
		want    error
	}{
		{name: "handler without idmapped mounts", cfg: usernsPod("a", runtimeapi.NamespaceMode_POD), want: errdefs.ErrFailedPrecondition},
		{name: "host network", cfg: usernsPod("b", runtimeapi.NamespaceMode_NODE), handler: "userns", want: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.cfg.HasHandler = func(string) bool { return true }
			if _, err := m.Run(context.Background(), tc.cfg, tc.handler); !errors.Is(err, tc.want) {
				t.Fatalf("Run: %v, want %v", err, tc.want)
			}
			if n := len(m.recs.List(nil)); n != 0 {
				t.Errorf("%d pods recorded after a refused Run", n)
			}
		})
	}

	id, err := m.Run(context.Background(), usernsPod("c", runtimeapi.NamespaceMode_POD), "userns")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []namespaces.Kind{namespaces.User, namespaces.Net, namespaces.UTS, namespaces.IPC} {
		if !namespaces.Alive(sb.Namespaces[k]) {
			t.Errorf("%s namespace not pinned: %v", k, sb.Namespaces)
		}
	}
	if err := m.Remove(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if namespaces.Alive(sb.Namespaces[namespaces.User]) {
		t.Error("user namespace still pinned after Remove")
	}
}
