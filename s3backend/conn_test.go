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
)

// recordingConn records the size of each Write.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
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

// A request body sent by net/http through a wrapped dial goes out in
// writes of bodyWriteSize, not io.Copy's 32 KiB, and arrives intact.
func TestBodyConnSendsBodiesInLargeWrites(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 3*bodyWriteSize+12345)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(rnd.Uint32())
	}
	got := make(chan []byte, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	})}
	go srv.Serve(ln)
	defer srv.Close()

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
