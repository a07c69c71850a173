// Package metrics is s3mount's Prometheus instrumentation
// (prometheus/client_golang): a decorator around s3backend.Client and
// s3backend.Buckets that counts and times every S3 request, the FUSE
// operations reported by fs.Ops, the block cache's counters, and the HTTP
// server of /metrics. Every metric is named s3mount_*; the Go runtime's and
// the process's standard collectors (go_*, process_*) are served too.
//
// The S3 metrics count calls of s3backend.Client, each of which may be
// several HTTP attempts (the SDK's retries).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/fs"
	"github.com/s3mount/s3mount/s3backend"
)

// Metrics holds one mount's metrics in its own registry.
type Metrics struct {
	reg *prometheus.Registry

	requests    *prometheus.CounterVec   // op, status
	latency     *prometheus.HistogramVec // op
	inFlight    *prometheus.GaugeVec     // op
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	uploadsOpen prometheus.Gauge
	fuseOps     *prometheus.CounterVec   // op, errno
	fuseLatency *prometheus.HistogramVec // op

	// writes counts S3 requests that change the bucket and are under way;
	// uploads maps the upload ID of each open multipart upload to its key.
	writes  atomic.Int64
	mu      sync.Mutex
	uploads map[string]Upload // guarded by mu
}

// Upload is a multipart upload that was created and neither completed nor
// aborted yet.
type Upload struct {
	Client   s3backend.Client
	Key      string
	UploadID string
}

// latencyBuckets, in seconds: 1 ms to 60 s.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// New makes the metrics and registers them, with the Go and process
// collectors, in a registry of their own.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), uploads: map[string]Upload{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "s3mount_s3_requests_total",
		Help: "S3 requests by API operation and outcome: status is ok, the HTTP status of a failure, canceled, or error (no response)."},
		[]string{"op", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "s3mount_s3_request_duration_seconds",
		Help:    "S3 request latency by API operation, retries included (GetObject: until the body starts).",
		Buckets: latencyBuckets}, []string{"op"})
	m.inFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "s3mount_s3_requests_in_flight",
		Help: "S3 requests under way by API operation (UploadPart: parts uploading, PutObject: small files uploading)."},
		[]string{"op"})
	m.bytesIn = prometheus.NewCounter(prometheus.CounterOpts{Name: "s3mount_s3_received_bytes_total",
		Help: "Object bytes received from S3 (GetObject bodies)."})
	m.bytesOut = prometheus.NewCounter(prometheus.CounterOpts{Name: "s3mount_s3_sent_bytes_total",
		Help: "Object bytes sent to S3 by successful PutObject and UploadPart requests."})
	m.uploadsOpen = prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3mount_multipart_uploads_open",
		Help: "Multipart uploads created and not yet completed or aborted (files being written)."})
	m.fuseOps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "s3mount_fuse_ops_total",
		Help: "FUSE operations by opcode and errno (OK for success)."}, []string{"op", "errno"})
	m.fuseLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "s3mount_fuse_op_duration_seconds",
		Help: "FUSE operation latency by opcode.", Buckets: latencyBuckets}, []string{"op"})
	m.reg.MustRegister(m.requests, m.latency, m.inFlight, m.bytesIn, m.bytesOut, m.uploadsOpen,
		m.fuseOps, m.fuseLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry holding every metric.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveFuse counts one FUSE operation; it is fs.Ops.Observe.
func (m *Metrics) ObserveFuse(op string, errno syscall.Errno, d time.Duration) {
	m.fuseOps.WithLabelValues(op, fs.ErrnoName(errno)).Inc()
	m.fuseLatency.WithLabelValues(op).Observe(d.Seconds())
}

// WatchOps serves the open handle counts of a mount's fs.Ops as
// s3mount_fuse_open_handles{kind="file"|"dir"}.
func (m *Metrics) WatchOps(o *fs.Ops) {
	for kind, f := range map[string]func() int64{"file": o.OpenFiles, "dir": o.OpenDirs} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "s3mount_fuse_open_handles",
			Help: "Open FUSE handles by kind.", ConstLabels: prometheus.Labels{"kind": kind}},
			func() float64 { return float64(f()) }))
	}
}

// WatchWrites serves the write path's gauges (fs.ReadWriteStats):
// s3mount_upload_parts_queued and s3mount_staging_bytes.
func (m *Metrics) WatchWrites() {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "s3mount_upload_parts_queued",
			Help: "Parts of streamed files waiting for an upload slot (--upload-concurrency)."},
			func() float64 { return float64(fs.ReadWriteStats().PartsQueued) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "s3mount_staging_bytes",
			Help: "Bytes on disk of staging files (files changed in place), bounded by --staging-limit."},
			func() float64 { return float64(fs.ReadWriteStats().StagedBytes) }),
	)
}

// WatchCache serves the block cache's counters (cache.Blocks.Stats), read
// at each scrape.
func (m *Metrics) WatchCache(b *cache.Blocks) {
	stat := func(f func(cache.BlockStats) int64) func() float64 {
		return func() float64 { return float64(f(b.Stats())) }
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "s3mount_cache_hits_total",
			Help: "Block cache lookups answered from the cache."}, stat(func(s cache.BlockStats) int64 { return s.Hits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "s3mount_cache_misses_total",
			Help: "Block cache lookups not answered from the cache."}, stat(func(s cache.BlockStats) int64 { return s.Misses })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "s3mount_cache_fetches_total",
			Help: "Blocks fetched from S3 (concurrent misses of one block share a fetch)."}, stat(func(s cache.BlockStats) int64 { return s.Fetches })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "s3mount_cache_evictions_total",
			Help: "Blocks evicted to make room."}, stat(func(s cache.BlockStats) int64 { return s.Evictions })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "s3mount_cache_bytes",
			Help: "Bytes of blocks in the cache."}, stat(func(s cache.BlockStats) int64 { return s.Bytes })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "s3mount_cache_max_bytes",
			Help: "The cache's bound in bytes (--cache-size)."}, func() float64 { return float64(b.MaxBytes()) }),
	)
}

// WritesInFlight is the number of S3 requests under way that change the
// bucket (PutObject, UploadPart, UploadPartCopy, CreateMultipartUpload,
// CompleteMultipartUpload, AbortMultipartUpload, CopyObject, DeleteObject).
func (m *Metrics) WritesInFlight() int64 { return m.writes.Load() }

// OpenUploads returns the multipart uploads created and neither completed
// nor aborted.
func (m *Metrics) OpenUploads() []Upload {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Upload, 0, len(m.uploads))
	for _, u := range m.uploads {
		out = append(out, u)
	}
	return out
}

// Server serves /metrics.
type Server struct {
	// Addr is the address listened on (HOST:PORT, the port chosen by the
	// system when 0 was asked).
	Addr string
	srv  *http.Server
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// Serve listens on addr (HOST:PORT, already checked) and serves /metrics
// in the background until the returned server is closed. A listen error
// (address in use, no such host) is returned, naming the option.
func (m *Metrics) Serve(addr string, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("option --metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "addr", addr, "err", err)
		}
	}()
	return &Server{Addr: ln.Addr().String(), srv: srv}, nil
}

// status is the outcome label of a request.
func status(err error) string {
	if err == nil {
		return "ok"
	}
	var e *s3backend.Error
	switch {
	case errors.As(err, &e) && e.Status != 0:
		return strconv.Itoa(e.Status)
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// begin starts counting one request of op; the returned func ends it.
func (m *Metrics) begin(op string, write bool) func(err error) {
	start := time.Now()
	g := m.inFlight.WithLabelValues(op)
	g.Inc()
	if write {
		m.writes.Add(1)
	}
	return func(err error) {
		g.Dec()
		if write {
			m.writes.Add(-1)
		}
		m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(op, status(err)).Inc()
	}
}
