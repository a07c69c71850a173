package harness

import (
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// StartFakeS3 starts an in-process gofakes3 (memory backend) on 127.0.0.1
// and stops it when the test ends. Unlike versitygw's posix backend it
// stores any key shape (a//b, x/./y, x/../y, 300-byte segments, a file and a
// "directory" of the same name). It checks no signatures; the returned keys
// are random anyway.
func StartFakeS3(t testing.TB) Endpoint {
	t.Helper()
	faker := gofakes3.New(s3mem.New())
	srv := httptest.NewServer(faker.Server())
	t.Cleanup(srv.Close)
	return Endpoint{
		URL:       srv.URL,
		AccessKey: "AKFAKE" + RandomHex(6),
		SecretKey: RandomHex(20),
		Region:    "us-east-1",
	}
}
