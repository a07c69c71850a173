// Package proxy is the benchmark's TCP proxy: it forwards connections from a
// 127.0.0.1 listener to one S3 server, counts the bytes that flow from the
// server to the clients (what a mount fetched), and can shape each connection
// like a real network: a first-byte latency on every response and a
// per-connection bandwidth cap on the server-to-client direction.
//
// It works below HTTP: a "response" starts with the first server byte that
// follows client bytes on the same connection (HTTP/1.1 without pipelining,
// which is what S3 clients speak). Forwarding uses large buffers; with no
// shaping it adds two copies per byte and no waits.
package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Proxy. The zero value forwards without shaping.
type Options struct {
	// Latency delays the first byte of each response by this much after
	// the request's first byte reached the proxy.
	Latency time.Duration
	// BytesPerSec caps each connection's server-to-client rate; 0 means
	// no cap.
	BytesPerSec int64
	// BufferSize is the copy buffer per direction; 0 means 1 MiB
	// (64 KiB when shaping, so that pacing stays smooth).
	BufferSize int
}

// Proxy forwards 127.0.0.1 connections to Target.
type Proxy struct {
	Target string // host:port of the server
	opts   Options

	ln       net.Listener
	down     atomic.Int64 // server -> client bytes
	up       atomic.Int64 // client -> server bytes
	conns    atomic.Int64 // connections accepted
	mu       sync.Mutex
	open     map[net.Conn]struct{}
	wg       sync.WaitGroup
	closed   atomic.Bool
	bufPool  sync.Pool
	bufBytes int
}

// Start listens on listen (e.g. "127.0.0.1:0") and forwards to target.
func Start(listen, target string, opts Options) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{Target: target, opts: opts, ln: ln, open: map[net.Conn]struct{}{}}
	p.bufBytes = opts.BufferSize
	if p.bufBytes <= 0 {
		p.bufBytes = 1 << 20
		if opts.BytesPerSec > 0 {
			p.bufBytes = 64 << 10
		}
	}
	p.bufPool.New = func() any { b := make([]byte, p.bufBytes); return &b }
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the listen address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is http://Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// BytesDown is the number of bytes forwarded from the server to clients.
func (p *Proxy) BytesDown() int64 { return p.down.Load() }

// BytesUp is the number of bytes forwarded from clients to the server.
func (p *Proxy) BytesUp() int64 { return p.up.Load() }

// Conns is the number of client connections accepted.
func (p *Proxy) Conns() int64 { return p.conns.Load() }

// Reset zeroes the counters.
func (p *Proxy) Reset() {
	p.down.Store(0)
	p.up.Store(0)
	p.conns.Store(0)
}

// Close stops listening, closes every open connection and waits for the
// forwarding goroutines.
func (p *Proxy) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.closed.Load() {
			return false
		}
		p.open[c] = struct{}{}
	} else {
		delete(p.open, c)
	}
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.conns.Add(1)
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.Target, 10*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, true) || !p.track(server, true) {
		client.Close()
		server.Close()
		return
	}
	for _, c := range []net.Conn{client, server} {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
	}
	// requestAt is the UnixNano time of the first client byte of the
	// request whose response has not started yet; 0 when none is pending.
	var requestAt atomic.Int64
	done := make(chan struct{}, 2)
	go func() {
		p.pump(server, client, &p.up, func() { requestAt.CompareAndSwap(0, time.Now().UnixNano()) }, nil)
		done <- struct{}{}
	}()
	go func() {
		p.pump(client, server, &p.down, nil, &requestAt)
		done <- struct{}{}
	}()
	<-done
	<-done
	client.Close()
	server.Close()
	p.track(client, false)
	p.track(server, false)
}

// pump copies src to dst, counting into n. onData runs after each chunk is
// read (the request direction marks a pending response). A non-nil
// requestAt makes this the response direction: it applies the latency and
// the bandwidth cap.
func (p *Proxy) pump(dst, src net.Conn, n *atomic.Int64, onData func(), requestAt *atomic.Int64) {
	bp := p.bufPool.Get().(*[]byte)
	defer p.bufPool.Put(bp)
	buf := *bp
	shaping := requestAt != nil && (p.opts.Latency > 0 || p.opts.BytesPerSec > 0)
	var burstStart time.Time
	var burstBytes int64
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			if onData != nil {
				onData()
			}
			if shaping {
				if at := requestAt.Swap(0); at != 0 {
					// A new response: wait out the latency, restart pacing.
					if wait := time.Until(time.Unix(0, at).Add(p.opts.Latency)); wait > 0 {
						time.Sleep(wait)
					}
					burstStart, burstBytes = time.Now(), 0
				} else if burstStart.IsZero() {
					burstStart = time.Now()
				}
			}
			if _, werr := dst.Write(buf[:k]); werr != nil {
				src.Close()
				dst.Close()
				return
			}
			n.Add(int64(k))
			if shaping && p.opts.BytesPerSec > 0 {
				burstBytes += int64(k)
				due := burstStart.Add(time.Duration(float64(burstBytes) / float64(p.opts.BytesPerSec) * float64(time.Second)))
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				}
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				// Half-close: pass the EOF on; the other direction
				// ends when its peer closes too.
				if tc, ok := dst.(*net.TCPConn); ok && tc.CloseWrite() == nil {
					return
				}
			}
			src.Close()
			dst.Close()
			return
		}
	}
}
