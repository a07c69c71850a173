package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func backend(t *testing.T, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func get(t *testing.T, c *http.Client, url string) []byte {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCounts(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	p, err := Start("127.0.0.1:0", backend(t, body), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := &http.Client{Transport: &http.Transport{}}
	for i := 0; i < 3; i++ {
		if got := get(t, c, p.URL()+"/x"); !bytes.Equal(got, body) {
			t.Fatalf("body mismatch: %d bytes", len(got))
		}
	}
	down := p.BytesDown()
	if down < 3*int64(len(body)) || down > 3*int64(len(body))+3*1024 {
		t.Errorf("BytesDown = %d, want 3 MiB plus headers", down)
	}
	if p.Conns() != 1 {
		t.Errorf("Conns = %d, want 1 (keep-alive)", p.Conns())
	}
	if p.BytesUp() == 0 {
		t.Errorf("BytesUp = 0")
	}
	p.Reset()
	if p.BytesDown() != 0 {
		t.Errorf("after Reset BytesDown = %d", p.BytesDown())
	}
}

func TestShaping(t *testing.T) {
	body := make([]byte, 2<<20)
	p, err := Start("127.0.0.1:0", backend(t, body), Options{Latency: 50 * time.Millisecond, BytesPerSec: 20 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := &http.Client{Transport: &http.Transport{}}
	// Small responses: each pays the latency, also on a reused connection.
	for i := 0; i < 2; i++ {
		start := time.Now()
		resp, err := c.Head(p.URL() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if d := time.Since(start); d < 45*time.Millisecond {
			t.Errorf("request %d took %v, want >= 50ms latency", i, d)
		}
	}
	// 2 MiB at 20 MiB/s: about 100ms plus the latency.
	start := time.Now()
	if got := get(t, c, p.URL()+"/x"); len(got) != len(body) {
		t.Fatalf("got %d bytes", len(got))
	}
	if d := time.Since(start); d < 130*time.Millisecond || d > 2*time.Second {
		t.Errorf("2 MiB took %v, want about 150ms", d)
	}
}

func TestClose(t *testing.T) {
	p, err := Start("127.0.0.1:0", backend(t, []byte("x")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(20 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung with an open connection")
	}
}
