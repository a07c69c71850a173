package s3backend

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The errors of an all-buckets mount and of an assumed role map as
// SEMANTICS.md says: BucketNotEmpty → ENOTEMPTY, an existing bucket →
// EEXIST, a failed AssumeRole → EACCES with a one-line reason.
func TestToErrnoBucketsAndRoles(t *testing.T) {
	if got := ToErrno(classify("DeleteBucket", "b", "", responseError(409, "BucketNotEmpty"))); got != syscall.ENOTEMPTY {
		t.Errorf("BucketNotEmpty → %v, want ENOTEMPTY", got)
	}
	for _, code := range []string{"BucketAlreadyOwnedByYou", "BucketAlreadyExists"} {
		if got := ToErrno(classify("CreateBucket", "b", "", responseError(409, code))); got != syscall.EEXIST {
			t.Errorf("%s → %v, want EEXIST", code, got)
		}
	}
	stsErr := &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 403}},
			Err:      &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized (external ID)"},
		}}}
	// What the SDK returns when the credentials cache cannot refresh.
	err := &smithy.OperationError{ServiceID: "S3", OperationName: "ListObjectsV2",
		Err: fmt.Errorf("failed to refresh cached credentials, %w", stsErr)}
	e := classify("ListObjectsV2", "b", "", err)
	if ToErrno(e) != syscall.EACCES || e.Kind != ErrAssumeRole {
		t.Errorf("failed AssumeRole → kind %v errno %v, want ErrAssumeRole, EACCES", e.Kind, ToErrno(e))
	}
	msg := AssumeRoleError(e).Error()
	if !strings.Contains(msg, "STS AssumeRole failed (AccessDenied: not authorized (external ID))") || strings.Contains(msg, "\n") {
		t.Errorf("AssumeRoleError = %q", msg)
	}
	// Without STS in the chain it is the plain "no credentials".
	plain := classify("ListObjectsV2", "b", "", fmt.Errorf("failed to refresh cached credentials, no EC2 IMDS role found"))
	if plain.Kind != ErrNoCredentials {
		t.Errorf("kind %v, want ErrNoCredentials", plain.Kind)
	}
}

func TestRegionHeader(t *testing.T) {
	h := http.Header{}
	h.Set("X-Amz-Bucket-Region", "eu-central-1")
	err := &smithy.OperationError{ServiceID: "S3", OperationName: "GetBucketLocation", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 301, Header: h}},
			Err:      &smithy.GenericAPIError{Code: "PermanentRedirect"},
		}}}
	if got := regionHeader(err); got != "eu-central-1" {
		t.Errorf("regionHeader of a 301 = %q, want eu-central-1", got)
	}
	if got := regionHeader(nil); got != "" {
		t.Errorf("regionHeader(nil) = %q", got)
	}
}

// TestBucketRegion: GetBucketLocation's answer ("" is us-east-1, "EU" is
// eu-west-1), a 301 PermanentRedirect followed through its
// x-amz-bucket-region header, each asked once per bucket; and, when
// GetBucketLocation is denied, DetectRegion takes the header of the
// prefix listing, else the session's region, never failing.
func TestBucketRegion(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bucket := strings.Trim(r.URL.Path, "/")
		_, isLocation := r.URL.Query()["location"]
		mu.Lock()
		calls[bucket+map[bool]string{true: "?location", false: "?list"}[isLocation]]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/xml")
		switch {
		case isLocation && bucket == "in-east":
			fmt.Fprint(w, `<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></LocationConstraint>`)
		case isLocation && bucket == "in-eu":
			fmt.Fprint(w, `<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">EU</LocationConstraint>`)
		case isLocation && bucket == "moved":
			w.Header().Set("X-Amz-Bucket-Region", "ap-south-1")
			w.WriteHeader(301)
			fmt.Fprint(w, `<Error><Code>PermanentRedirect</Code><Message>use the right endpoint</Message></Error>`)
		case isLocation:
			w.WriteHeader(403)
			fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>no</Message></Error>`)
		case bucket == "restricted-with-header":
			w.Header().Set("X-Amz-Bucket-Region", "sa-east-1")
			fmt.Fprint(w, `<ListBucketResult><Name>restricted-with-header</Name><IsTruncated>false</IsTruncated></ListBucketResult>`)
		default:
			fmt.Fprint(w, `<ListBucketResult><Name>x</Name><IsTruncated>false</IsTruncated></ListBucketResult>`)
		}
	}))
	defer srv.Close()
	count := func(k string) int {
		mu.Lock()
		defer mu.Unlock()
		return calls[k]
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	s, err := NewSession(context.Background(), Config{Region: "eu-north-1", EndpointURL: srv.URL, ForcePathStyle: true,
		AccessKeyID: "AK", SecretAccessKey: "SK", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for bucket, want := range map[string]string{"in-east": "us-east-1", "in-eu": "eu-west-1", "moved": "ap-south-1"} {
		for i := 0; i < 2; i++ {
			if got, err := s.BucketRegion(ctx, bucket); err != nil || got != want {
				t.Errorf("BucketRegion(%s) = %q, %v; want %q", bucket, got, err, want)
			}
		}
		if n := count(bucket + "?location"); n != 1 {
			t.Errorf("GetBucketLocation of %s sent %d times, want once", bucket, n)
		}
	}
	if _, err := s.BucketRegion(ctx, "denied"); ToErrno(err) != syscall.EACCES {
		t.Errorf("BucketRegion of a denied bucket: %v", err)
	}
	if r, how := s.DetectRegion(ctx, "restricted-with-header", "home/"); r != "sa-east-1" || how != "x-amz-bucket-region" {
		t.Errorf("DetectRegion with the header = %q, %q", r, how)
	}
	if r, how := s.DetectRegion(ctx, "restricted", "home/"); r != "eu-north-1" || how != "default" {
		t.Errorf("DetectRegion without anything = %q, %q", r, how)
	}
	if c, err := s.Client(ctx, "moved"); err != nil || c.Bucket() != "moved" {
		t.Errorf("Client(moved) = %v, %v", c, err)
	}
	if count("moved?location") != 1 {
		t.Errorf("Client asked GetBucketLocation again")
	}
}
