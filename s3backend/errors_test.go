package s3backend

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func responseError(status int, code string) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "X", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      &smithy.GenericAPIError{Code: code, Message: "m"},
		},
		RequestID: "req-1",
	}}
}

func TestToErrno(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   syscall.Errno
	}{
		{404, "NoSuchKey", syscall.ENOENT},
		{404, "", syscall.ENOENT},
		{403, "AccessDenied", syscall.EACCES},
		{403, "", syscall.EACCES},
		{412, "PreconditionFailed", syscall.ESTALE},
		{503, "SlowDown", syscall.EIO},
		{503, "", syscall.EIO},
		{500, "InternalError", syscall.EIO},
		{429, "", syscall.EIO},
		{400, "EntityTooLarge", syscall.EFBIG},
		{400, "InvalidArgument", syscall.EINVAL},
		{409, "", syscall.EEXIST},
	} {
		e := classify("GetObject", "b", "k", responseError(tc.status, tc.code))
		if got := ToErrno(e); got != tc.want {
			t.Errorf("HTTP %d %q → %v, want %v", tc.status, tc.code, got, tc.want)
		}
		if e.RequestID != "req-1" || e.Status != tc.status {
			t.Errorf("HTTP %d: request ID %q, status %d not kept", tc.status, e.RequestID, e.Status)
		}
	}
	if got := ToErrno(classify("GetObject", "b", "k", context.Canceled)); got != syscall.EINTR {
		t.Errorf("canceled → %v, want EINTR", got)
	}
	if got := ToErrno(classify("GetObject", "b", "k", errors.New("weird"))); got != syscall.EIO {
		t.Errorf("unknown → %v, want EIO", got)
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	if got := ToErrno(classify("GetObject", "b", "k", refused)); got != syscall.EIO {
		t.Errorf("connection refused → %v, want EIO", got)
	}
	if got := ToErrno(syscall.ENOTEMPTY); got != syscall.ENOTEMPTY {
		t.Errorf("an errno passed in → %v, want it unchanged", got)
	}
	if got := ToErrno(nil); got != 0 {
		t.Errorf("nil → %v", got)
	}
}

func TestErrorTextHasNoSecrets(t *testing.T) {
	e := classify("PutObject", "bkt", "a b+c", responseError(403, "SignatureDoesNotMatch"))
	want := "PutObject s3://bkt/a b+c: HTTP 403 SignatureDoesNotMatch request-id=req-1"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

func TestCopySourceEncodesEveryReservedByte(t *testing.T) {
	for key, want := range map[string]string{
		"a+b":          "bkt/a%2Bb",
		"100%":         "bkt/100%25",
		"dir/with sp":  "bkt/dir/with%20sp",
		"é":            "bkt/%C3%A9",
		"x?y#z&=":      "bkt/x%3Fy%23z%26%3D",
		"plain-_.~/ok": "bkt/plain-_.~/ok",
	} {
		if got := CopySource("bkt", key); got != want {
			t.Errorf("CopySource(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestStalledServerFailsWithEIO(t *testing.T) {
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(stall)
	old := requestTimeout
	requestTimeout = 300 * time.Millisecond
	defer func() { requestTimeout = old }()
	c, err := New(context.Background(), Config{Bucket: "bkt", EndpointURL: srv.URL, ForcePathStyle: true,
		Region: "us-east-1", AccessKeyID: "AK", SecretAccessKey: "SK"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Head(context.Background(), "k")
	if got := ToErrno(err); got != syscall.EIO {
		t.Errorf("HEAD to a server that never answers: %v (%v), want EIO", got, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("HEAD took %v to fail, want about the request timeout", d)
	}
}
