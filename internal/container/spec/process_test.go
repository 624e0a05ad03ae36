package spec

import (
	"slices"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestProcessArgs(t *testing.T) {
	for _, tc := range []struct {
		name            string
		command, args   []string
		entrypoint, cmd []string
		want            []string
		wantErr         string
	}{
		{name: "image only", entrypoint: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/ep", "a"}},
		{name: "image cmd only", cmd: []string{"/bin/sh", "-c", "x"}, want: []string{"/bin/sh", "-c", "x"}},
		{name: "command drops image cmd", command: []string{"/c"}, entrypoint: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/c"}},
		{name: "command and args", command: []string{"/c"}, args: []string{"x"}, entrypoint: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/c", "x"}},
		{name: "args replace cmd", args: []string{"x", "y"}, entrypoint: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/ep", "x", "y"}},
		{name: "args without entrypoint", args: []string{"/bin/x"}, cmd: []string{"a"}, want: []string{"/bin/x"}},
		{name: "reset entrypoint", entrypoint: []string{""}, cmd: []string{"/a"}, want: []string{"/a"}},
		{name: "nothing", wantErr: "no command specified"},
		{name: "reset entrypoint only", entrypoint: []string{""}, wantErr: "no command specified"},
		{name: "empty command string", command: []string{""}, wantErr: "no command specified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &runtimeapi.ContainerConfig{Command: tc.command, Args: tc.args}
			got, err := processArgs(c, &ocispec.ImageConfig{Entrypoint: tc.entrypoint, Cmd: tc.cmd})
			if checkErr(t, err, tc.wantErr) && !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	kv := func(k, v string) *runtimeapi.KeyValue { return &runtimeapi.KeyValue{Key: k, Value: []byte(v)} }
	for _, tc := range []struct {
		name     string
		image    []string
		cri      []*runtimeapi.KeyValue
		hostname string
		want     []string
	}{
		{name: "defaults", hostname: "h", want: []string{"HOSTNAME=h", defaultPath}},
		{name: "no hostname", want: []string{defaultPath}},
		{name: "image path kept", image: []string{"PATH=/x", "A=1"}, want: []string{"PATH=/x", "A=1"}},
		{
			name:  "cri overrides image in place",
			image: []string{"A=1", "B=2"}, cri: []*runtimeapi.KeyValue{kv("B", "3"), kv("C", "4=5")},
			want: []string{"A=1", "B=3", "C=4=5", defaultPath},
		},
		{name: "cri hostname wins", hostname: "h", cri: []*runtimeapi.KeyValue{kv("HOSTNAME", "x")}, want: []string{"HOSTNAME=x", defaultPath}},
		{name: "empty key ignored", cri: []*runtimeapi.KeyValue{kv("", "x")}, want: []string{defaultPath}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := processEnv(&runtimeapi.ContainerConfig{Envs: tc.cri}, &ocispec.ImageConfig{Env: tc.image}, tc.hostname)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWorkingDir(t *testing.T) {
	for _, tc := range []struct{ cri, image, want string }{
		{"", "", "/"}, {"", "/img", "/img"}, {"/cri", "/img", "/cri"},
	} {
		if got := workingDir(&runtimeapi.ContainerConfig{WorkingDir: tc.cri}, &ocispec.ImageConfig{WorkingDir: tc.image}); got != tc.want {
			t.Errorf("workingDir(%q, %q) = %q", tc.cri, tc.image, got)
		}
	}
}

func TestStopSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
	}{
		{"", syscall.SIGTERM}, {"SIGTERM", syscall.SIGTERM}, {"TERM", syscall.SIGTERM},
		{"15", syscall.SIGTERM}, {"SIGKILL", syscall.SIGKILL}, {"sigquit", syscall.SIGQUIT},
		{"9", syscall.SIGKILL}, {"SIGRTMIN+3", syscall.Signal(37)}, {"bogus", syscall.SIGTERM},
		{"0", syscall.SIGTERM}, {"99", syscall.SIGTERM},
	} {
		if got := StopSignal(ocispec.ImageConfig{StopSignal: tc.in}); got != tc.want {
			t.Errorf("StopSignal(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
