package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-project/crid/internal/config"
	"github.com/crid-project/crid/internal/container"
	"github.com/crid-project/crid/internal/image"
	"github.com/crid-project/crid/internal/network"
	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/sandbox"
	"github.com/crid-project/crid/internal/store"
)

// newTestServer returns a server over real services with empty stores:
// every registry is a closed port, so pulls fail fast and nothing leaves the
// host, and the CNI config dir is empty, so pods fail at network setup and
// are rolled back.
func newTestServer(t testing.TB) *Server {
	t.Helper()
	root := t.TempDir()
	hosts := filepath.Join(root, "hosts", "_default")
	if err := os.MkdirAll(hosts, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(hosts, "hosts.toml"), []byte("server = \"http://127.0.0.1:1\"\n"), 0o644)
	db, err := store.Open(filepath.Join(root, "crid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := config.Default()
	cfg.Root, cfg.State = filepath.Join(root, "root"), filepath.Join(root, "state")
	cfg.Image.RegistryConfigDir = filepath.Join(root, "hosts")
	cfg.Network.ConfDir = filepath.Join(root, "net.d")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	images, err := image.New(cfg.Root, db, cfg.Image, log)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := oci.New(oci.Config{ConmonPath: "conmon", StateDir: cfg.State, ExitDir: filepath.Join(cfg.State, "exits"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	net, err := network.New(network.Config{ConfDir: cfg.Network.ConfDir, BinDirs: cfg.Network.BinDirs, CacheDir: filepath.Join(root, "cni")}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	runc := oci.Handler{Name: "runc", Path: "runc", Root: filepath.Join(cfg.State, "runc")}
	pods, err := sandbox.New(sandbox.Config{StateDir: cfg.State, ShmSize: cfg.ShmSize, HasHandler: func(n string) bool { return n == "" || n == "runc" }}, db, net, log)
	if err != nil {
		t.Fatal(err)
	}
	ctrs, err := container.New(container.Config{RootDir: cfg.Root, StateDir: cfg.State, CgroupDriver: "cgroupfs",
		Handlers: map[string]oci.Handler{"": runc, "runc": runc}, DefaultHandler: "runc"}, db, rt, images, pods, log)
	if err != nil {
		t.Fatal(err)
	}
	pods.Containers, pods.Infra = ctrs, ctrs
	return New(cfg, Services{Images: images, Pods: pods, Containers: ctrs}, "test", log)
}

// call invokes a unary method the way gRPC does, through the interceptor,
// with the request decoded from raw protobuf bytes.
func call(s *Server, desc grpc.MethodDesc, service string, raw []byte) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	dec := func(m any) error {
		if err := proto.Unmarshal(raw, m.(proto.Message)); err != nil {
			// As grpc-go reports an undecodable request.
			return status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
		}
		return nil
	}
	return desc.Handler(s, ctx, dec, s.unaryInterceptor)
}

func unaryMethods() map[string]grpc.MethodDesc {
	out := map[string]grpc.MethodDesc{}
	for _, sd := range []grpc.ServiceDesc{runtimeapi.RuntimeService_ServiceDesc, runtimeapi.ImageService_ServiceDesc} {
		for _, m := range sd.Methods {
			out["/"+sd.ServiceName+"/"+m.MethodName] = m
		}
	}
	return out
}

// withoutService are the RPCs of the services newTestServer leaves out.
var withoutService = map[string]bool{
	"Exec": true, "Attach": true, "PortForward": true, "ListContainerStats": true, "ContainerStats": true,
	"ListPodSandboxStats": true, "PodSandboxStats": true, "ListMetricDescriptors": true, "ListPodSandboxMetrics": true,
}

func TestEveryMethodAnswersEmptyRequest(t *testing.T) {
	s := newTestServer(t)
	streams := len(runtimeapi.RuntimeService_ServiceDesc.Streams) + len(runtimeapi.ImageService_ServiceDesc.Streams)
	if n := len(unaryMethods()) + streams; n != 43 {
		t.Errorf("the CRI v1 services have %d RPCs, this test knows 43", n)
	}
	for name, m := range unaryMethods() {
		_, err := call(s, m, name, nil)
		if _, ok := status.FromError(err); !ok {
			t.Errorf("%s: error %v is not a gRPC status", name, err)
		}
		// The test server has no streaming and stats services, which crid
		// always has; every other RPC answers (none is Unimplemented).
		_, method, _ := strings.Cut(name[1:], "/")
		switch code := status.Code(err); {
		case code == codes.OK, code == codes.InvalidArgument, code == codes.NotFound:
		case code == codes.Unimplemented && withoutService[method]:
		default:
			t.Errorf("%s with an empty request: %v", name, err)
		}
	}
}

func TestVersionStatusRuntimeConfig(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	v, err := s.Version(ctx, &runtimeapi.VersionRequest{Version: "0.1.0"})
	if err != nil || v.RuntimeName != "crid" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion != "test" {
		t.Fatalf("Version: %v %v", v, err)
	}
	st, err := s.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range st.Status.Conditions {
		conds[c.Type] = c
	}
	if !conds[runtimeapi.RuntimeReady].Status || conds[runtimeapi.NetworkReady].Status || conds[runtimeapi.NetworkReady].Reason == "" {
		t.Fatalf("conditions: %v", st.Status.Conditions)
	}
	if st.Info["config"] == "" {
		t.Fatal("verbose status lacks the config")
	}
	if f := st.GetFeatures(); !f.GetSupplementalGroupsPolicy() || !f.GetMountOptions() || f.GetUserNamespacesHostNetwork() {
		t.Errorf("runtime features %v", f)
	}
	for driver, want := range map[string]runtimeapi.CgroupDriver{"cgroupfs": runtimeapi.CgroupDriver_CGROUPFS, "systemd": runtimeapi.CgroupDriver_SYSTEMD} {
		s.cfg.CgroupDriver = driver
		rc, err := s.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
		if err != nil || rc.Linux.CgroupDriver != want {
			t.Errorf("%s: %v %v", driver, rc, err)
		}
	}
}

func TestImageStatusOfMissingImageIsEmpty(t *testing.T) {
	s := newTestServer(t)
	resp, err := s.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}})
	if err != nil || resp.Image != nil {
		t.Fatalf("%v %v", resp, err)
	}
}

// FuzzHandlers feeds arbitrary bytes, decoded as each method's request, to
// every unary handler: none may panic or return a non-status error.
func FuzzHandlers(f *testing.F) {
	s := newTestServer(f)
	methods := unaryMethods()
	names := make([]string, 0, len(methods))
	for n := range methods {
		names = append(names, n)
	}
	seed, _ := proto.Marshal(&runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}})
	for i := range names {
		f.Add(uint8(i), seed)
		f.Add(uint8(i), []byte{})
	}
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		name := names[int(which)%len(names)]
		_, err := call(s, methods[name], name, raw)
		if err != nil {
			if _, ok := status.FromError(err); !ok {
				t.Fatalf("%s: non-status error %v", name, err)
			}
		}
	})
}

func TestPanicBecomesInternal(t *testing.T) {
	s := newTestServer(t)
	_, err := s.unaryInterceptor(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/Y"},
		func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("panicking handler: %v", err)
	}
}
