package e2e

import (
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// metricsAddr is free in the tests' own network namespace.
const metricsAddr = "127.0.0.1:19640"

// TestStatsMetricsEvents runs a pod whose container writes 5 MiB into its
// writable layer and checks what the kubelet would read: container and pod
// stats, the container filesystem in ImageFsInfo, the CRI metrics, the
// event stream of the whole lifecycle, and crid's own Prometheus metrics.
func TestStatsMetricsEvents(t *testing.T) {
	c := newCrid(t, rig(t), "--metrics-address", metricsAddr)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, c.sock))

	evs, err := rt.GetContainerEvents(ctx(t), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *runtimeapi.ContainerEventResponse, 100)
	go func() {
		for {
			ev, err := evs.Recv()
			if err != nil {
				close(got)
				return
			}
			got <- ev
		}
	}()
	// The subscription is made when the stream's first message is read
	// server-side: wait until crid counts it.
	waitUntil(t, "event subscriber", func() bool {
		return strings.Contains(scrape(t), "crid_event_subscribers 1")
	})

	podID, ctrID := c.runPod("stats", "dd if=/dev/zero of=/filler bs=1M count=5 2>/dev/null; sleep 3600")
	waitUntil(t, "writable layer usage", func() bool {
		r, err := rt.ContainerStats(ctx(t), &runtimeapi.ContainerStatsRequest{ContainerId: ctrID})
		return err == nil && r.Stats.GetWritableLayer().GetUsedBytes().GetValue() >= 5<<20
	})

	list, err := rt.ListContainerStats(ctx(t), &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: podID}})
	if err != nil || len(list.Stats) != 1 {
		t.Fatalf("ListContainerStats: %v, %d stats", err, len(list.GetStats()))
	}
	time.Sleep(1100 * time.Millisecond) // a CPU rate needs two readings a second apart
	list, _ = rt.ListContainerStats(ctx(t), &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: ctrID}})
	cs := list.GetStats()[0]
	switch {
	case cs.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0:
		t.Errorf("no CPU usage: %v", cs.GetCpu())
	case cs.GetCpu().GetUsageNanoCores() == nil:
		t.Errorf("no CPU rate on the second reading: %v", cs.GetCpu())
	case cs.GetMemory().GetWorkingSetBytes().GetValue() == 0 || cs.GetMemory().GetUsageBytes().GetValue() < cs.GetMemory().GetWorkingSetBytes().GetValue():
		t.Errorf("memory: %v", cs.GetMemory())
	case cs.GetWritableLayer().GetInodesUsed().GetValue() == 0:
		t.Errorf("writable layer: %v", cs.GetWritableLayer())
	case (cgroupV2() && hostHas("cpu.pressure", "") || hostHas("", "unified/cpu.pressure")) &&
		(cs.GetCpu().GetPsi() == nil || cs.GetMemory().GetPsi() == nil || cs.GetIo().GetPsi() == nil):
		// The kubelet's summary API (KubeletPSI) takes the pressure of
		// each container from CRI: from the v2 hierarchy, also on a v1
		// host that has one (hybrid).
		t.Errorf("no PSI with a cgroup v2 hierarchy: cpu %v, memory %v, io %v", cs.GetCpu().GetPsi(), cs.GetMemory().GetPsi(), cs.GetIo())
	}

	ps, err := rt.PodSandboxStats(ctx(t), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	l := ps.Stats.GetLinux()
	if l.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || l.GetMemory().GetWorkingSetBytes().GetValue() == 0 ||
		l.GetNetwork().GetDefaultInterface().GetName() != "eth0" || len(l.GetNetwork().GetInterfaces()) == 0 || len(l.GetContainers()) != 1 || l.GetProcess().GetProcessCount().GetValue() == 0 {
		t.Errorf("pod stats: %v", ps.Stats)
	}

	stream, err := rt.StreamContainerStats(ctx(t), &runtimeapi.StreamContainerStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n += len(r.ContainerStats)
	}
	if n != 1 {
		t.Errorf("StreamContainerStats sent %d stats, want 1", n)
	}

	fs, err := c.images().ImageFsInfo(ctx(t), &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fs.ContainerFilesystems) != 1 || fs.ContainerFilesystems[0].GetUsedBytes().GetValue() < 5<<20 {
		t.Errorf("ImageFsInfo: %v %v", fs, err)
	}

	pm, err := rt.ListPodSandboxMetrics(ctx(t), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil || len(pm.PodMetrics) != 1 {
		t.Fatalf("ListPodSandboxMetrics: %v %v", pm, err)
	}
	names := map[string]bool{}
	for _, cm := range pm.PodMetrics[0].ContainerMetrics {
		for _, m := range cm.Metrics {
			names[m.Name] = true
		}
	}
	for _, m := range pm.PodMetrics[0].Metrics {
		names[m.Name] = true
	}
	for _, want := range []string{"container_memory_working_set_bytes", "container_cpu_usage_seconds_total", "container_fs_usage_bytes", "container_network_receive_bytes_total"} {
		if !names[want] {
			t.Errorf("ListPodSandboxMetrics lacks %s", want)
		}
	}

	c.mustCrictl("stopp", podID)
	c.mustCrictl("rmp", podID)

	want := []struct {
		id string
		t  runtimeapi.ContainerEventType
	}{
		{podID, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT},
		{podID, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT},
		{ctrID, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT},
		{ctrID, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT},
		{ctrID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT},
		{podID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT},
		{ctrID, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT},
		{podID, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT},
	}
	for i, w := range want {
		select {
		case ev := <-got:
			if ev.GetContainerId() != w.id || ev.GetContainerEventType() != w.t {
				t.Fatalf("event %d: %s %s, want %s %s", i, ev.GetContainerId()[:12], ev.GetContainerEventType(), w.id[:12], w.t)
			}
			if w.t != runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT && ev.GetPodSandboxStatus().GetId() != podID {
				t.Errorf("event %d carries pod status %v", i, ev.GetPodSandboxStatus())
			}
			if w.id == ctrID && w.t == runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT &&
				(len(ev.GetContainersStatuses()) != 1 || ev.GetContainersStatuses()[0].GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING) {
				t.Errorf("STARTED event carries container statuses %v", ev.GetContainersStatuses())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d (%s) never came", i, w.t)
		}
	}

	text := scrape(t)
	for _, family := range []string{
		"crid_cri_request_duration_seconds_bucket{method=\"RunPodSandbox\"",
		"crid_cri_requests_total{code=\"OK\",method=\"CreateContainer\"}",
		"crid_create_stage_duration_seconds_count{op=\"pod\",stage=\"network\"}",
		"crid_create_stage_duration_seconds_count{op=\"container\",stage=\"runtime\"}",
		"crid_image_pull_bytes_total",
		"crid_image_pull_duration_seconds_count",
		"crid_conmon_processes",
		"crid_event_subscribers",
		"crid_pods{state=\"ready\"}",
		"crid_containers{state=\"running\"}",
		"go_goroutines",
	} {
		if !strings.Contains(text, family) {
			t.Errorf("metrics lack %s", family)
		}
	}
}

// scrape reads crid's metrics inside the tests' network namespace.
func scrape(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net=/run/netns/"+netns, "curl", "-sf", "http://"+metricsAddr+"/metrics").Output()
	if err != nil {
		return ""
	}
	return string(out)
}
