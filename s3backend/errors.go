package s3backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// The kinds of failure the rest of s3mount tells apart. Every error the
// Client returns wraps exactly one of them (errors.Is), or none for an
// unclassified failure (which maps to EIO).
var (
	// ErrNotFound: 404, NoSuchKey, NoSuchBucket, NoSuchUpload.
	ErrNotFound = errors.New("not found")
	// ErrDenied: 403, AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch.
	ErrDenied = errors.New("access denied")
	// ErrPrecondition: 412 PreconditionFailed (If-Match / If-None-Match lost).
	ErrPrecondition = errors.New("precondition failed")
	// ErrChanged: the object's ETag is not the one the caller expected.
	ErrChanged = errors.New("object changed")
	// ErrConflict: 409, e.g. a key that clashes with an existing one.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: 400 InvalidArgument, KeyTooLongError and the like.
	ErrInvalid = errors.New("invalid request")
	// ErrTooLarge: EntityTooLarge.
	ErrTooLarge = errors.New("entity too large")
	// ErrThrottled: 503 SlowDown / 429 after the SDK's retries.
	ErrThrottled = errors.New("throttled")
	// ErrNoCredentials: the AWS credential chain found no credentials.
	ErrNoCredentials = errors.New("no AWS credentials found")
	// ErrAssumeRole: STS AssumeRole failed (denied, wrong external ID,
	// unreachable STS endpoint), so no request can be signed.
	ErrAssumeRole = errors.New("assuming the IAM role failed")
	// ErrNotEmpty: BucketNotEmpty, deleting a bucket that holds objects.
	ErrNotEmpty = errors.New("not empty")
	// ErrUnavailable: the endpoint cannot be reached, or answers 5xx, after
	// the SDK's retries.
	ErrUnavailable = errors.New("service unavailable")
)

// Error is a failed S3 request: the operation (API name), the key, the
// HTTP status, the S3 error code and request ID, and the kind.
type Error struct {
	Op        string // API name, e.g. "GetObject"
	Bucket    string
	Key       string
	Status    int    // HTTP status, 0 when no response arrived
	Code      string // S3 error code, e.g. "NoSuchKey"
	RequestID string
	Kind      error // one of the Err* kinds, or nil
	Err       error // the SDK's error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s s3://%s/%s: ", e.Op, e.Bucket, e.Key)
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, "HTTP %d", e.Status)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
	case e.Kind != nil:
		b.WriteString(e.Kind.Error())
	}
	if e.Status == 0 && e.Err != nil {
		if e.Kind != nil {
			b.WriteString(" (")
		}
		fmt.Fprintf(&b, "%v", rootCause(e.Err))
		if e.Kind != nil {
			b.WriteString(")")
		}
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " request-id=%s", e.RequestID)
	}
	return b.String()
}

// Unwrap returns the kind and the SDK's error, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// classify turns an SDK error into an *Error with its kind.
func classify(op, bucket, key string, err error) *Error {
	e := &Error{Op: op, Bucket: bucket, Key: key, Err: err}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		e.Status = re.HTTPStatusCode()
		e.RequestID = re.ServiceRequestID()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		e.Code = ae.ErrorCode()
	}
	if strings.Contains(err.Error(), "failed to refresh cached credentials") {
		e.Kind = ErrNoCredentials
		// The S3 operation's error wraps the credential provider's,
		// which for an assumed role is the STS operation's.
		for u := err; u != nil; u = errors.Unwrap(u) {
			if oe, ok := u.(*smithy.OperationError); ok && oe.Service() == "STS" {
				e.Kind = ErrAssumeRole
			}
		}
		return e
	}
	switch {
	case errors.Is(err, context.Canceled):
		e.Kind = context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		e.Kind = ErrUnavailable
	}
	if e.Kind != nil {
		return e
	}
	switch e.Code {
	case "NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound":
		e.Kind = ErrNotFound
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "AllAccessDisabled",
		"XAdminUserNotFound": // Versity S3 Gateway's answer (404) to an unknown access key
		e.Kind = ErrDenied
	case "PreconditionFailed":
		e.Kind = ErrPrecondition
	case "BucketNotEmpty":
		e.Kind = ErrNotEmpty
	case "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests":
		e.Kind = ErrThrottled
	case "EntityTooLarge":
		e.Kind = ErrTooLarge
	case "KeyTooLongError", "InvalidArgument", "InvalidRequest", "InvalidObjectName":
		e.Kind = ErrInvalid
	}
	if e.Kind != nil {
		return e
	}
	switch {
	case e.Status == 404:
		e.Kind = ErrNotFound
	case e.Status == 403 || e.Status == 401:
		e.Kind = ErrDenied
	case e.Status == 412:
		e.Kind = ErrPrecondition
	case e.Status == 409:
		e.Kind = ErrConflict
	case e.Status == 429:
		e.Kind = ErrThrottled
	case e.Status >= 500:
		e.Kind = ErrUnavailable
	case e.Status == 400:
		e.Kind = ErrInvalid
	case e.Status == 0:
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &oe) || errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) {
			e.Kind = ErrUnavailable
		}
	}
	return e
}

// ToErrno maps an error from this package to the errno a FUSE operation
// returns. It is the one place where S3 failures become errnos:
//
//	ErrNotFound → ENOENT       ErrDenied, ErrNoCredentials → EACCES
//	ErrPrecondition, ErrChanged → ESTALE (another writer won; see gcsfuse)
//	ErrAssumeRole → EACCES     ErrNotEmpty → ENOTEMPTY (BucketNotEmpty)
//	ErrConflict → EEXIST       ErrInvalid → EINVAL    ErrTooLarge → EFBIG
//	context.Canceled → EINTR   everything else, throttling and 5xx
//	included → EIO (never ENOENT).
//
// A nil error maps to 0. An errno passed in is returned as it is.
func ToErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	// Only an errno passed in as it is counts: one buried in a network
	// error (ECONNREFUSED, ECONNRESET) is an unreachable endpoint, EIO.
	if en, ok := err.(syscall.Errno); ok {
		return en
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, ErrDenied), errors.Is(err, ErrNoCredentials), errors.Is(err, ErrAssumeRole):
		return syscall.EACCES
	case errors.Is(err, ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, ErrPrecondition), errors.Is(err, ErrChanged):
		return syscall.ESTALE
	case errors.Is(err, ErrConflict):
		return syscall.EEXIST
	case errors.Is(err, ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, ErrTooLarge):
		return syscall.EFBIG
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	return syscall.EIO
}

// logFailure writes the one log line of a failed request. Not-found answers
// to HEAD and to probes are routine and logged at debug level.
func logFailure(log *slog.Logger, e *Error) {
	lvl := slog.LevelWarn
	if errors.Is(e, ErrNotFound) || errors.Is(e, context.Canceled) {
		lvl = slog.LevelDebug
	}
	log.Log(context.Background(), lvl, "s3 request failed",
		"op", e.Op, "bucket", e.Bucket, "key", e.Key, "status", e.Status,
		"code", e.Code, "request_id", e.RequestID, "err", e.Err)
}
