package s3backend

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// lostResponseServer is an S3 endpoint that stores a conditional write and
// then answers it 500 the first time (a response lost after the server
// stored the object), as a fault between client and server can; the SDK's
// retry then gets 412. HEAD answers the stored ETag.
type lostResponseServer struct {
	mu    sync.Mutex
	etags map[string]string // key → quoted ETag
	lost  map[string]bool   // keys whose first write's response was lost
}

func (s *lostResponseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.TrimPrefix(r.URL.Path, "/bkt/")
	body, _ := io.ReadAll(r.Body)
	fail := func(status int, code string) {
		w.WriteHeader(status)
		fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s</Message></Error>", code, code)
	}
	switch {
	case r.Method == http.MethodHead:
		etag, ok := s.etags[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Length", "1")
	case r.Method == http.MethodPut || r.Method == http.MethodPost:
		if _, ok := s.etags[key]; ok && r.Header.Get("If-None-Match") == "*" {
			fail(http.StatusPreconditionFailed, "PreconditionFailed")
			return
		}
		var etag string
		if r.Method == http.MethodPut {
			sum := md5.Sum(body)
			etag = `"` + hex.EncodeToString(sum[:]) + `"`
		} else { // CompleteMultipartUpload of testParts
			etag = multipartETag(testParts)
		}
		s.etags[key] = etag
		if !s.lost[key] {
			s.lost[key] = true
			fail(http.StatusInternalServerError, "InternalError")
			return
		}
		w.Header().Set("ETag", etag)
	default:
		fail(http.StatusNotImplemented, "NotImplemented")
	}
}

// testParts are two parts as UploadPart answered them (MD5 ETags).
var testParts = []Part{
	{Number: 1, ETag: `"` + strings.Repeat("a", 32) + `"`},
	{Number: 2, ETag: `"` + strings.Repeat("b", 32) + `"`},
}

// A conditional PutObject or CompleteMultipartUpload whose first response
// is lost succeeds when the object in S3 is its own (the retry's 412 is
// against it), and fails with ErrPrecondition when another client's object
// is there.
func TestConditionalWriteSurvivesALostResponse(t *testing.T) {
	srv := &lostResponseServer{etags: map[string]string{}, lost: map[string]bool{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, err := New(context.Background(), Config{Bucket: "bkt", EndpointURL: ts.URL, ForcePathStyle: true,
		Region: "us-east-1", AccessKeyID: "AK", SecretAccessKey: "SK"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	body := []byte("the bytes of a new file")
	etag, err := c.Put(ctx, "new", body, PutOptions{IfNoneMatch: "*"})
	if err != nil {
		t.Fatalf("PutObject whose response was lost: %v, want success", err)
	}
	if etag != putETag(body) {
		t.Errorf("ETag %s, want %s", etag, putETag(body))
	}
	if _, err := c.CompleteMultipart(ctx, "big", "up1", testParts, PutOptions{IfNoneMatch: "*"}); err != nil {
		t.Fatalf("CompleteMultipartUpload whose response was lost: %v, want success", err)
	}

	// Another client's object: the 412 stands.
	srv.mu.Lock()
	srv.etags["taken"], srv.lost["taken"] = `"`+strings.Repeat("c", 32)+`"`, true
	srv.mu.Unlock()
	if _, err := c.Put(ctx, "taken", body, PutOptions{IfNoneMatch: "*"}); !errors.Is(err, ErrPrecondition) {
		t.Errorf("PutObject over another client's object: %v, want ErrPrecondition", err)
	}
	if _, err := c.CompleteMultipart(ctx, "taken", "up2", testParts, PutOptions{IfNoneMatch: "*"}); !errors.Is(err, ErrPrecondition) {
		t.Errorf("CompleteMultipartUpload over another client's object: %v, want ErrPrecondition", err)
	}
}
