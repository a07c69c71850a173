package s3backend

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// bodyWriteSize is how many bytes of a request body go to the connection
// per write(2): 1 MiB.
const bodyWriteSize = 1 << 20

// bodyBufs holds the buffers of bodyConn.ReadFrom (*[]byte of
// bodyWriteSize bytes): one per request body being sent.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, bodyWriteSize); return &b }}

// bodyConn is a plain (not TLS) connection of the SDK's HTTP transport
// whose ReadFrom sends a request body in writes of bodyWriteSize bytes.
//
// net/http hands a request body of known length to the connection's
// ReadFrom (persistConnWriter.ReadFrom) wrapped in an io.LimitedReader,
// which hides the body's WriterTo; *net.TCPConn.ReadFrom then falls back to
// io.Copy with its 32 KiB buffer: 256 write(2)s per 8 MiB part, about
// 32,000 per GiB uploaded. 1 MiB writes make that about 1,000 per GiB, with
// the same one copy of the bytes (measured on a 1 GiB dd through the mount:
// 28,631 write(2)s before, 1,713 after; the mount's CPU time about 8% lower;
// test/bench/README.md, "Machine notes").
// TLS connections wrap a bodyConn and never call its ReadFrom: their
// record size sets their writes.
type bodyConn struct {
	net.Conn
}

// ReadFrom implements io.ReaderFrom: it copies r to the connection in
// writes of up to bodyWriteSize bytes, until r's EOF. A sliceReader body
// (sliceBodyClient) goes out from its own bytes, without a copy.
// It returns the bytes written and the first read or write error (not
// io.EOF).
func (c bodyConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if br, ok := lr.R.(sliceReader); ok && int64(br.Len()) <= lr.N {
			n, err := br.WriteTo(c.Conn)
			lr.N -= n
			return n, err
		}
	}
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	// Hide c's own ReadFrom and any WriterTo of r from io.CopyBuffer, so
	// that it uses the buffer.
	return io.CopyBuffer(struct{ io.Writer }{c.Conn}, struct{ io.Reader }{r}, *bp)
}

// wrapDial makes a DialContext return bodyConns.
func wrapDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return bodyConn{c}, nil
	}
}

// httpDoer is the SDK's HTTP client interface (s3.HTTPClient).
type httpDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// sliceBodyClient sends body, the whole request body of every attempt of
// one operation, as a sliceReader.
//
// The SDK hands net/http its own wrapper of the operation's Body (smithy-go
// safeReadCloser), which hides the bytes behind Read: bodyConn.ReadFrom
// then copies them through its buffer. net/http passes the request's own
// Body on to the connection (inside an io.LimitedReader), so with a
// sliceReader bodyConn.ReadFrom writes the caller's bytes to the socket
// directly: about 1 GiB less copied per GiB uploaded, and no buffer to
// fault in. A request whose Content-Length is not len(body) is sent as
// built.
type sliceBodyClient struct {
	next httpDoer
	body []byte
}

// sliceReader is a request body over bytes in memory.
type sliceReader struct{ *bytes.Reader }

// Close implements io.Closer; it does nothing.
func (sliceReader) Close() error { return nil }

// Do implements s3.HTTPClient.
func (c sliceBodyClient) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && len(c.body) > 0 && req.ContentLength == int64(len(c.body)) {
		body := c.body
		req.Body = sliceReader{bytes.NewReader(body)}
		req.GetBody = func() (io.ReadCloser, error) { return sliceReader{bytes.NewReader(body)}, nil }
	}
	return c.next.Do(req)
}

// sliceBody is an operation option (for UploadPart and PutObject, whose
// Body is bytes.NewReader(body)) that sends body without copying it; see
// sliceBodyClient.
func sliceBody(body []byte) func(*s3.Options) {
	return func(o *s3.Options) { o.HTTPClient = sliceBodyClient{next: o.HTTPClient, body: body} }
}
