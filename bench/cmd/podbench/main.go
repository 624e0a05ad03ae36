// Command podbench times pod and container start over CRI, the way the
// kubelet starts a one-container pod: RunPodSandbox, CreateContainer,
// StartContainer, each RPC timed on its own. It is the client of
// bench/pods.sh and is run, unchanged, against every runtime.
//
//	podbench -endpoint unix:///run/crid/crid.sock [-n 30]
//	         run N timed pod starts (each pod stopped and removed, untimed)
//	podbench -endpoint ... -leave 10
//	         start 10 pods with one container each and leave them running;
//	         print "pod <pod id> <container id>" per pod
//	podbench -critest-summary DIR
//	         summarise critest -benchmark's *_benchmark_data.json in DIR
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/crid-project/crid/bench/internal/benchutil"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	var (
		endpoint = flag.String("endpoint", "", "CRI endpoint, unix:///path")
		n        = flag.Int("n", 30, "timed iterations")
		leave    = flag.Int("leave", 0, "start this many pods, leave them running, and exit")
		image    = flag.String("image", "docker.io/library/busybox:latest", "container image (pulled first, untimed)")
		logDir   = flag.String("log-dir", "/var/tmp/podbench-logs", "parent of the pods' log directories")
		cgParent = flag.String("cgroup-parent", "/podbench", "parent of the pods' cgroupfs cgroups (/<parent>/pod<uid>); empty: runtime default")
		warmup   = flag.Int("warmup", 2, "untimed iterations first")
		summary  = flag.String("critest-summary", "", "summarise critest benchmark JSON files in this directory and exit")
	)
	flag.Parse()
	if *summary != "" {
		if err := critestSummary(*summary); err != nil {
			benchutil.Fatal(err)
		}
		return
	}
	c, err := benchutil.Dial(*endpoint)
	if err != nil {
		benchutil.Fatal(err)
	}
	defer c.Close()
	b := &bench{
		rt: c.Runtime, img: c.Image,
		image: *image, logDir: *logDir, cgParent: *cgParent, run: fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff),
	}
	ctx, cancel := benchutil.Context()
	defer cancel()
	if _, err := b.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: b.image}}); err != nil {
		benchutil.Fatal(fmt.Errorf("pull %s: %w", b.image, err))
	}
	if *leave > 0 {
		for i := 0; i < *leave; i++ {
			r, err := b.start(ctx, i)
			if err != nil {
				benchutil.Fatal(err)
			}
			fmt.Printf("pod %s %s\n", r.pod, r.ctr)
		}
		return
	}
	for i := 0; i < *warmup; i++ {
		r, err := b.start(ctx, -1-i)
		if err != nil {
			benchutil.Fatal(err)
		}
		if err := b.remove(ctx, r.pod); err != nil {
			benchutil.Fatal(err)
		}
	}
	var runp, create, start, both []time.Duration
	for i := 0; i < *n; i++ {
		r, err := b.start(ctx, i)
		if err != nil {
			benchutil.Fatal(err)
		}
		runp = append(runp, r.runp)
		create = append(create, r.create)
		start = append(start, r.start)
		both = append(both, r.create+r.start)
		if err := b.remove(ctx, r.pod); err != nil {
			benchutil.Fatal(err)
		}
	}
	fmt.Printf("# %d iterations after %d untimed; milliseconds\n", *n, *warmup)
	fmt.Printf("%-28s %8s %8s %8s %8s\n", "rpc", "median", "p90", "min", "max")
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{{"RunPodSandbox", runp}, {"CreateContainer", create}, {"StartContainer", start}, {"CreateContainer+Start", both}} {
		printStats(s.name, s.d)
	}
}

type bench struct {
	rt                           runtimeapi.RuntimeServiceClient
	img                          runtimeapi.ImageServiceClient
	image, logDir, cgParent, run string
}

type result struct {
	pod, ctr            string
	runp, create, start time.Duration
}

func (b *bench) start(ctx context.Context, i int) (result, error) {
	var r result
	name := fmt.Sprintf("podbench-%s-%d", b.run, i)
	if i < 0 {
		name = fmt.Sprintf("podbench-%s-w%d", b.run, -i)
	}
	uid := name + "-uid"
	logDir := filepath.Join(b.logDir, "default_"+name+"_"+uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return r, err
	}
	// As the kubelet sends them: hostname, cluster DNS, pod labels, and
	// per-container PID namespaces.
	podCfg := benchutil.PodConfig(name, "default", uid, logDir)
	podCfg.Hostname = name
	podCfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}, Options: []string{"ndots:5"}}
	podCfg.Labels = map[string]string{"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": uid}
	podCfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: namespaces()}
	if b.cgParent != "" {
		podCfg.Linux.CgroupParent = b.cgParent + "/pod" + uid
	}
	t0 := time.Now()
	pr, err := b.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	r.runp = time.Since(t0)
	if err != nil {
		return r, fmt.Errorf("RunPodSandbox: %w", err)
	}
	r.pod = pr.PodSandboxId
	ctrCfg := benchutil.SleepContainer("sleep", b.image, "sleep/0.log")
	ctrCfg.Labels = map[string]string{"io.kubernetes.container.name": "sleep"}
	ctrCfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaces()}
	t0 = time.Now()
	cr, err := b.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: r.pod, Config: ctrCfg, SandboxConfig: podCfg})
	r.create = time.Since(t0)
	if err != nil {
		return r, fmt.Errorf("CreateContainer: %w", err)
	}
	r.ctr = cr.ContainerId
	t0 = time.Now()
	_, err = b.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ctr})
	r.start = time.Since(t0)
	if err != nil {
		return r, fmt.Errorf("StartContainer: %w", err)
	}
	return r, nil
}

// namespaces: the pod's network and IPC, the container's own PID namespace.
func namespaces() *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD,
		Pid:     runtimeapi.NamespaceMode_CONTAINER,
		Ipc:     runtimeapi.NamespaceMode_POD,
	}
}

func (b *bench) remove(ctx context.Context, pod string) error {
	return benchutil.RemovePod(ctx, b.rt, pod)
}

func printStats(name string, d []time.Duration) {
	s := benchutil.Sorted(d)
	if len(s) == 0 {
		fmt.Printf("%-28s %8s\n", name, "-")
		return
	}
	ms := benchutil.MS
	fmt.Printf("%-28s %8s %8s %8s %8s\n", name, ms(benchutil.NearestRank(s, 0.5)), ms(benchutil.NearestRank(s, 0.9)), ms(s[0]), ms(s[len(s)-1]))
}

// critest -benchmark -benchmarking-output-dir writes one
// LifecycleBenchmarksResultsSet per benchmark (cri-tools pkg/benchmark/util.go).
type resultsSet struct {
	OperationsNames []string `json:"operationsNames"`
	NumParallel     int      `json:"numParallel"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

func critestSummary(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*_data.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no *_data.json in %s", dir)
	}
	sort.Strings(files)
	fmt.Printf("%-28s %8s %8s %8s %8s\n", "operation (ms)", "median", "p90", "min", "max")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var rs resultsSet
		if err := json.Unmarshal(data, &rs); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		bench := strings.TrimSuffix(filepath.Base(f), "_data.json")
		for i, op := range rs.OperationsNames {
			var d []time.Duration
			for _, p := range rs.Datapoints {
				if i < len(p.OperationsDurationsNs) {
					d = append(d, time.Duration(p.OperationsDurationsNs[i]))
				}
			}
			printStats(fmt.Sprintf("%s/%s", strings.TrimSuffix(bench, "_benchmark"), op), d)
		}
	}
	return nil
}
