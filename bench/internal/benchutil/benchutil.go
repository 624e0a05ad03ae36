// Package benchutil holds what the CRI clients under bench/ share: dialing
// a runtime, the minimal pod and container configs they start, and the
// quantile and millisecond formatting of their reports.
package benchutil

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Timeout bounds a whole benchmark run.
const Timeout = 10 * time.Minute

// Client is a CRI connection with its runtime and image services.
type Client struct {
	Runtime runtimeapi.RuntimeServiceClient
	Image   runtimeapi.ImageServiceClient
	conn    *grpc.ClientConn
}

// Dial connects to the CRI endpoint (unix:///path), without TLS, accepting
// replies up to 16 MiB (ListContainerStats with many containers).
func Dial(endpoint string) (*Client, error) {
	if endpoint == "" {
		return nil, fmt.Errorf("-endpoint is required")
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, err
	}
	return &Client{
		Runtime: runtimeapi.NewRuntimeServiceClient(conn),
		Image:   runtimeapi.NewImageServiceClient(conn),
		conn:    conn,
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Context is a background context bounded by Timeout.
func Context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), Timeout)
}

// PodConfig is a pod named name (metadata name, namespace, uid) logging to
// logDir, with an empty Linux config the caller may fill in.
func PodConfig(name, namespace, uid, logDir string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: uid},
		LogDirectory: logDir,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// SleepContainer is a container named name running `sleep 3600` from
// image, logging to logPath (relative to the pod's log directory), with an
// empty Linux config the caller may fill in.
func SleepContainer(name, image, logPath string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  []string{"sleep", "3600"},
		LogPath:  logPath,
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

// RemovePod stops and removes a pod sandbox.
func RemovePod(ctx context.Context, rt runtimeapi.RuntimeServiceClient, id string) error {
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("StopPodSandbox: %w", err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return nil
}

// Sorted is a sorted copy of d.
func Sorted(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// The three quantile rules below differ on purpose: each is the one its
// benchmark has always reported with, so new figures compare with old ones.
// All take a sorted, non-empty slice.

// NearestRank is the q-quantile by nearest rank (podbench); the median of
// an even count is the mean of the two middle values. 0 for no values.
func NearestRank(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	if q == 0.5 && len(d)%2 == 0 {
		return (d[len(d)/2-1] + d[len(d)/2]) / 2
	}
	k := int(q*float64(len(d))+0.999999) - 1
	if k < 0 {
		k = 0
	}
	return d[k]
}

// AtIndex is d[⌊q·n⌋], the last value for q = 1 (execbench).
func AtIndex(d []time.Duration, q float64) time.Duration {
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// AtIndexBelow is d[⌊q·(n-1)⌋] (statsbench).
func AtIndexBelow(d []time.Duration, q float64) time.Duration {
	return d[int(q*float64(len(d)-1))]
}

// MS formats d in milliseconds with two decimals.
func MS(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }

// Fatal prints "<program>: err" to stderr and exits 1.
func Fatal(err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
	os.Exit(1)
}
