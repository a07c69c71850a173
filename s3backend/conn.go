package s3backend

import (
	"context"
	"io"
	"net"
	"sync"
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
// writes of up to bodyWriteSize bytes, until r's EOF. It returns the bytes
// written and the first read or write error (not io.EOF).
func (c bodyConn) ReadFrom(r io.Reader) (int64, error) {
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
