package oci_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-project/crid/internal/oci"
	"github.com/crid-project/crid/internal/oci/ocitest"
)

// reportMedian reports the median of the timed sections in ms.
func reportMedian(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "median-ms")
}

// BenchmarkCreateStart times Create+Start of `sleep 1000` (kill and
// delete are not timed).
func BenchmarkCreateStart(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	bundle := ocitest.Bundle(b, "sleep", "1000")
	var d []time.Duration
	for b.Loop() {
		id := ocitest.ID("bench-")
		start := time.Now()
		if _, err := e.rt.Create(ctx, oci.CreateOptions{ID: id, Handler: e.h, Bundle: bundle, LogPath: filepath.Join(b.TempDir(), "0.log")}); err != nil {
			b.Fatal(err)
		}
		if err := e.rt.Start(ctx, id, e.h); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
		b.StopTimer()
		_ = e.rt.Kill(ctx, id, e.h, syscall.SIGKILL, false)
		if err := e.rt.Delete(ctx, id, e.h); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportMedian(b, d)
}

// BenchmarkRuncFloor times bare `runc create` + `runc start` of the same
// bundle: the floor BenchmarkCreateStart is compared to.
func BenchmarkRuncFloor(b *testing.B) {
	e := newEnv(b)
	bundle := ocitest.Bundle(b, "sleep", "1000")
	root := []string{"--root", e.h.Root}
	var d []time.Duration
	for b.Loop() {
		id := ocitest.ID("floor-")
		start := time.Now()
		// Container stdio is /dev/null: a pipe would be held open by it.
		if err := exec.Command(e.h.Path, append(root, "create", "--bundle", bundle, "--pid-file", filepath.Join(b.TempDir(), "pid"), id)...).Run(); err != nil {
			b.Fatal(err)
		}
		if out, err := exec.Command(e.h.Path, append(root, "start", id)...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		d = append(d, time.Since(start))
		b.StopTimer()
		if out, err := exec.Command(e.h.Path, append(root, "delete", "--force", id)...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		b.StartTimer()
	}
	reportMedian(b, d)
}

// BenchmarkExecSync times ExecSync of `true` into a running container, as
// the kubelet's exec probes do; BenchmarkRuncExecFloor times the bare
// `runc exec` it wraps, from the same process.
func BenchmarkExecSync(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	id := ocitest.ID("execbench-")
	e.run(b, id, ocitest.Bundle(b, "sleep", "1000"), filepath.Join(b.TempDir(), "0.log"))
	p := &specs.Process{Args: []string{"/bin/true"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := e.rt.ExecSync(ctx, id, e.h, p, 10*time.Second)
		if err != nil || res.ExitCode != 0 {
			b.Fatal(err, res.ExitCode)
		}
		d = append(d, time.Since(start))
	}
	reportMedian(b, d)
}

func BenchmarkRuncExecFloor(b *testing.B) {
	e := newEnv(b)
	id := ocitest.ID("execfloor-")
	e.run(b, id, ocitest.Bundle(b, "sleep", "1000"), filepath.Join(b.TempDir(), "0.log"))
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		if out, err := exec.Command(e.h.Path, "--root", e.h.Root, "exec", id, "/bin/true").CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		d = append(d, time.Since(start))
	}
	reportMedian(b, d)
}
