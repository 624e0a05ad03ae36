package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestFamilies(t *testing.T) {
	m := New()
	m.ObserveRPC("/runtime.v1.RuntimeService/RunPodSandbox", codes.OK, 20*time.Millisecond)
	m.ObserveRPC("/runtime.v1.RuntimeService/StartContainer", codes.NotFound, time.Millisecond)
	m.ObservePull(1<<20, time.Second)
	m.ObserveStage("pod", "network", 22*time.Millisecond)
	if err := m.Register(Counts{
		Pods:        func() map[string]int { return map[string]int{"ready": 2, "notready": 0} },
		Containers:  func() map[string]int { return map[string]int{"running": 3} },
		Monitors:    func() int { return 3 },
		Subscribers: func() int { return 1 },
	}); err != nil {
		t.Fatal(err)
	}
	text := scrape(t, m)
	for _, want := range []string{
		`crid_cri_request_duration_seconds_count{method="RunPodSandbox"} 1`,
		`crid_cri_requests_total{code="OK",method="RunPodSandbox"} 1`,
		`crid_cri_errors_total{code="NotFound",method="StartContainer"} 1`,
		`crid_image_pull_bytes_total 1.048576e+06`,
		`crid_image_pull_duration_seconds_count 1`,
		`crid_create_stage_duration_seconds_count{op="pod",stage="network"} 1`,
		`crid_pods{state="ready"} 2`,
		`crid_pods{state="notready"} 0`,
		`crid_containers{state="running"} 3`,
		`crid_conmon_processes 3`,
		`crid_event_subscribers 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(text, `crid_cri_errors_total{code="OK"`) {
		t.Error("a successful call counted as an error")
	}
}
