// Package metrics holds crid's own Prometheus metrics (the daemon's, not
// the containers': those go to the kubelet through the CRI metrics calls):
// per-call latency and result codes, the stages of pod and container
// creation, image pulls, and counts of pods, containers and monitors taken
// at scrape time.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
)

const namespace = "crid"

// Metrics is crid's registry and the metrics it updates as it works.
type Metrics struct {
	reg          *prometheus.Registry
	rpcLatency   *prometheus.HistogramVec
	rpcRequests  *prometheus.CounterVec
	rpcErrors    *prometheus.CounterVec
	stages       *prometheus.HistogramVec
	pullBytes    prometheus.Counter
	pullDuration prometheus.Histogram
}

// New returns the metrics, registered with the Go runtime and process
// collectors.
func New() *Metrics {
	// Buckets from 0.5 ms: crid answers most calls in a few milliseconds,
	// and a pod start takes tens.
	fast := prometheus.ExponentialBuckets(0.0005, 2, 16)
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rpcLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "cri_request_duration_seconds",
			Help: "Latency of CRI calls, by method.", Buckets: fast,
		}, []string{"method"}),
		rpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cri_requests_total",
			Help: "CRI calls, by method and gRPC result code.",
		}, []string{"method", "code"}),
		rpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cri_errors_total",
			Help: "CRI calls that failed, by method and gRPC code.",
		}, []string{"method", "code"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "create_stage_duration_seconds",
			Help:    "Duration of each stage of creating a pod (namespaces, network i.e. CNI, infra, total) or a container (rootfs, spec, runtime i.e. conmon+runc create, start).",
			Buckets: fast,
		}, []string{"op", "stage"}),
		pullBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "image_pull_bytes_total",
			Help: "Bytes of images pulled (their unpacked size).",
		}),
		pullDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "image_pull_duration_seconds",
			Help: "Duration of successful image pulls.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
	}
	m.reg.MustRegister(m.rpcLatency, m.rpcRequests, m.rpcErrors, m.stages, m.pullBytes, m.pullDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// shortMethod turns /runtime.v1.RuntimeService/RunPodSandbox into
// RunPodSandbox: label values stay short and the service is implied.
func shortMethod(full string) string { return full[strings.LastIndexByte(full, '/')+1:] }

// ObserveRPC records one CRI call.
func (m *Metrics) ObserveRPC(method string, code codes.Code, d time.Duration) {
	method = shortMethod(method)
	m.rpcLatency.WithLabelValues(method).Observe(d.Seconds())
	m.rpcRequests.WithLabelValues(method, code.String()).Inc()
	if code != codes.OK {
		m.rpcErrors.WithLabelValues(method, code.String()).Inc()
	}
}

// ObservePull records a successful image pull.
func (m *Metrics) ObservePull(bytes int64, d time.Duration) {
	m.pullBytes.Add(float64(max(bytes, 0)))
	m.pullDuration.Observe(d.Seconds())
}

// ObserveStage records how long one stage of creating a pod or container
// took.
func (m *Metrics) ObserveStage(op, stage string, d time.Duration) {
	m.stages.WithLabelValues(op, stage).Observe(d.Seconds())
}

// Register adds a collector (such as the counts below).
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Counts are read at each scrape.
type Counts struct {
	Pods        func() map[string]int // by state
	Containers  func() map[string]int // by state
	Monitors    func() int            // live conmon processes
	Subscribers func() int            // GetContainerEvents streams
}

var (
	podsDesc = prometheus.NewDesc(namespace+"_pods", "Pod sandboxes, by state.", []string{"state"}, nil)
	ctrsDesc = prometheus.NewDesc(namespace+"_containers", "Containers, by state.", []string{"state"}, nil)
	monDesc  = prometheus.NewDesc(namespace+"_conmon_processes", "Live conmon monitor processes (one per created or running container).", nil, nil)
	subDesc  = prometheus.NewDesc(namespace+"_event_subscribers", "Open GetContainerEvents streams.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c Counts) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- ctrsDesc
	ch <- monDesc
	ch <- subDesc
}

// Collect implements prometheus.Collector.
func (c Counts) Collect(ch chan<- prometheus.Metric) {
	for state, n := range c.Pods() {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(n), state)
	}
	for state, n := range c.Containers() {
		ch <- prometheus.MustNewConstMetric(ctrsDesc, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(monDesc, prometheus.GaugeValue, float64(c.Monitors()))
	ch <- prometheus.MustNewConstMetric(subDesc, prometheus.GaugeValue, float64(c.Subscribers()))
}
