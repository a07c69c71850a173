package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/s3mount/s3mount/cache"
	"github.com/s3mount/s3mount/fs"
	"github.com/s3mount/s3mount/s3backend"
	"github.com/s3mount/s3mount/s3backend/s3fake"
)

func TestClientCountsRequestsBytesAndUploads(t *testing.T) {
	ctx := context.Background()
	m := New()
	fake := s3fake.New("bkt")
	c := m.Client(fake)
	if _, err := c.Put(ctx, "small", []byte("12345"), s3backend.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateMultipart(ctx, "big", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.uploadsOpen); got != 1 || len(m.OpenUploads()) != 1 {
		t.Errorf("uploads open = %v, %d; want 1", got, len(m.OpenUploads()))
	}
	part := make([]byte, 5<<20)
	etag, err := c.UploadPart(ctx, "big", id, 1, part)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompleteMultipart(ctx, "big", id, []s3backend.Part{{Number: 1, ETag: etag}}, s3backend.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.uploadsOpen); got != 0 || len(m.OpenUploads()) != 0 {
		t.Errorf("uploads open after completing = %v, %d; want 0", got, len(m.OpenUploads()))
	}
	r, err := c.OpenRange(ctx, "small", "", 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "12345" {
		t.Fatalf("read %q, %v", b, err)
	}
	r.Close()
	if _, err := c.Head(ctx, "missing"); err == nil {
		t.Fatal("Head of a missing key succeeded")
	}
	for _, tc := range []struct {
		op, status string
		want       float64
	}{
		{"PutObject", "ok", 1}, {"CreateMultipartUpload", "ok", 1}, {"UploadPart", "ok", 1},
		{"CompleteMultipartUpload", "ok", 1}, {"GetObject", "ok", 1}, {"HeadObject", "404", 1},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(tc.op, tc.status)); got != tc.want {
			t.Errorf("s3mount_s3_requests_total{op=%q,status=%q} = %v, want %v", tc.op, tc.status, got, tc.want)
		}
	}
	if got := testutil.ToFloat64(m.bytesOut); got != 5+5<<20 {
		t.Errorf("bytes out = %v, want %d", got, 5+5<<20)
	}
	if got := testutil.ToFloat64(m.bytesIn); got != 5 {
		t.Errorf("bytes in = %v, want 5", got)
	}
	if m.WritesInFlight() != 0 {
		t.Errorf("WritesInFlight = %d after every request ended", m.WritesInFlight())
	}
}

func TestServeExposesEveryFamily(t *testing.T) {
	m := New()
	blocks, err := cache.NewBlocks(1<<20, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer blocks.Close()
	m.WatchCache(blocks)
	m.ObserveFuse("LOOKUP", syscall.ENOENT, time.Millisecond)
	_, _ = m.Client(s3fake.New("bkt")).Head(context.Background(), "x")
	ops := &fs.Ops{}
	m.WatchOps(ops)
	srv, err := m.Serve("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get("http://" + srv.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`s3mount_fuse_ops_total{errno="ENOENT",op="LOOKUP"} 1`,
		`s3mount_s3_requests_total{op="HeadObject",status="404"} 1`,
		`s3mount_s3_request_duration_seconds_bucket{op="HeadObject",le="+Inf"} 1`,
		`s3mount_cache_hits_total 0`, `s3mount_cache_misses_total 0`, `s3mount_cache_evictions_total 0`,
		`s3mount_cache_bytes 0`, `s3mount_cache_max_bytes 1.048576e+06`,
		`s3mount_fuse_open_handles{kind="file"} 0`, `s3mount_multipart_uploads_open 0`,
		"s3mount_s3_received_bytes_total 0", "s3mount_s3_sent_bytes_total 0", "go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if _, err := m.Serve(srv.Addr, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("a second server on %s: %v, want an error naming --metrics-addr", srv.Addr, err)
	}
}

func TestBucketsDecoratorCountsAndWrapsClients(t *testing.T) {
	ctx := context.Background()
	m := New()
	b := m.Buckets(s3fake.NewBuckets("one"))
	if _, err := b.ListBuckets(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateBucket(ctx, "two"); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateBucket(ctx, "two"); err == nil {
		t.Fatal("creating an existing bucket succeeded")
	}
	c, err := b.Client(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", []byte("abc"), s3backend.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("ListBuckets", "ok")); got != 1 {
		t.Errorf("ListBuckets ok = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("CreateBucket", "ok")); got != 1 {
		t.Errorf("CreateBucket ok = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.requests); got != 4 {
		t.Errorf("%d request series, want 4 (ListBuckets, CreateBucket ok and failed, PutObject)", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("PutObject", "ok")); got != 1 {
		t.Errorf("PutObject through a bucket's client = %v, want 1", got)
	}
}
