package s3backend

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"unsafe"
)

// recordingConn records the size of each Write, and how many bytes came
// straight from the memory of watch.
type recordingConn struct {
	net.Conn
	watch   []byte
	mu      sync.Mutex
	writes  []int
	aliased int
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	if len(p) > 0 && len(c.watch) > 0 {
		base := uintptr(unsafe.Pointer(unsafe.SliceData(c.watch)))
		at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
		if at >= base && at < base+uintptr(len(c.watch)) {
			c.aliased += len(p)
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recordingConn) largest() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := 0
	for _, n := range c.writes {
		m = max(m, n)
	}
	return m
}

// bodyServer starts an HTTP server on 127.0.0.1 that sends every request
// body it receives to got (buffered n), and makes a random body of a few
// bodyWriteSize.
func bodyServer(t *testing.T, n int) (ln net.Listener, body []byte, got chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body = make([]byte, 3*bodyWriteSize+12345)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(rnd.Uint32())
	}
	got = make(chan []byte, n)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln, body, got
}

// A request body sent by net/http through a wrapped dial goes out in
// writes of bodyWriteSize, not io.Copy's 32 KiB, and arrives intact.
func TestBodyConnSendsBodiesInLargeWrites(t *testing.T) {
	ln, body, got := bodyServer(t, 1)

	var rec *recordingConn
	var d net.Dialer
	tr := &http.Transport{DialContext: wrapDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		rec = &recordingConn{Conn: c}
		return rec, nil
	})}
	defer tr.CloseIdleConnections()
	// As the SDK sends a part: a body of known length.
	req, err := http.NewRequest(http.MethodPut, "http://"+ln.Addr().String()+"/part", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if b := <-got; !bytes.Equal(b, body) {
		t.Fatalf("server got %d bytes, not the %d sent (or different ones)", len(b), len(body))
	}
	if n := rec.largest(); n < bodyWriteSize {
		t.Errorf("largest write %d bytes, want %d: bodies bypass bodyConn.ReadFrom (writes %v)", n, bodyWriteSize, rec.writes)
	}
}

// Dial errors pass through wrapDial unchanged.
func TestWrapDialPassesErrors(t *testing.T) {
	want := &net.OpError{Op: "dial", Err: io.ErrUnexpectedEOF}
	_, err := wrapDial(func(context.Context, string, string) (net.Conn, error) { return nil, want })(context.Background(), "tcp", "x:1")
	if err != want {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

// opaqueBody hides its reader's type, as the SDK's own wrapper of an
// operation's Body does (smithy-go safeReadCloser).
type opaqueBody struct{ r io.Reader }

func (b *opaqueBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *opaqueBody) Close() error               { return nil }

// sliceBodyClient makes net/http send a part's bytes from the caller's own
// memory (no copy through bodyConn's buffer), intact, on a new and on a
// kept-alive connection.
func TestSliceBodyIsSentWithoutACopy(t *testing.T) {
	ln, body, got := bodyServer(t, 4)

	var mu sync.Mutex
	var conns []*recordingConn
	var d net.Dialer
	tr := &http.Transport{DialContext: wrapDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		rc := &recordingConn{Conn: c, watch: body}
		mu.Lock()
		conns = append(conns, rc)
		mu.Unlock()
		return rc, nil
	})}
	defer tr.CloseIdleConnections()
	client := sliceBodyClient{next: &http.Client{Transport: tr}, body: body}
	for i := range 2 {
		req, err := http.NewRequest(http.MethodPut, "http://"+ln.Addr().String()+"/part",
			&opaqueBody{r: bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if b := <-got; !bytes.Equal(b, body) {
			t.Fatalf("request %d: server got %d bytes, not the %d sent (or different ones)", i, len(b), len(body))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	aliased := 0
	for _, c := range conns {
		aliased += c.aliased
	}
	if aliased != 2*len(body) {
		t.Fatalf("%d of %d body bytes were written from the caller's memory: the body was copied", aliased, 2*len(body))
	}

	// A body of another length than the request's is left as built.
	req, _ := http.NewRequest(http.MethodPut, "http://"+ln.Addr().String()+"/part", bytes.NewReader(body[:10]))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if b := <-got; !bytes.Equal(b, body[:10]) {
		t.Fatalf("short request: server got %q", b)
	}
}
