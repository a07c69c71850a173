package harness

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestHarnessIAM checks what the connection tests rely on in versitygw's
// standalone IAM: a user limited to a prefix may list and use keys under
// it and nothing else; HeadBucket, GetBucketLocation and ListBuckets are
// denied to it; DeleteBucket of a non-empty bucket is BucketNotEmpty.
func TestHarnessIAM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g := StartIAMGateway(t)
	root, err := NewClient(ctx, g.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	bucket := BucketName(t.Name())
	if err := root.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"home/alice/a.txt", "home/bob/b.txt"} {
		if err := root.PutObject(ctx, bucket, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	ak, sk, err := g.IAM.CreateUser(ctx, "alice", PrefixPolicy(bucket, "home/alice/"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ctx, g.UserEndpoint(ak, sk))
	if err != nil {
		t.Fatal(err)
	}
	denied := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "StatusCode: 403") {
			t.Errorf("%s as alice: %v, want 403", what, err)
		}
	}
	allowed := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s as alice: %v", what, err)
		}
	}
	_, err = c.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String("home/alice/"), Delimiter: aws.String("/")})
	allowed("list home/alice/", err)
	_, err = c.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String("home/bob/")})
	denied("list home/bob/", err)
	_, err = c.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
	denied("unprefixed list", err)
	_, err = c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
	denied("HeadBucket", err)
	_, err = c.S3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: &bucket})
	denied("GetBucketLocation", err)
	_, err = c.S3.ListBuckets(ctx, &s3.ListBucketsInput{})
	denied("ListBuckets", err)
	_, err = c.GetObject(ctx, bucket, "home/alice/a.txt")
	allowed("get home/alice/a.txt", err)
	_, err = c.GetObject(ctx, bucket, "home/bob/b.txt")
	denied("get home/bob/b.txt", err)
	allowed("put home/alice/new", c.PutObject(ctx, bucket, "home/alice/new", []byte("x")))
	denied("put home/bob/new", c.PutObject(ctx, bucket, "home/bob/new", []byte("x")))

	loc, err := root.S3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: &bucket})
	if err != nil || loc.LocationConstraint != "" {
		t.Errorf("GetBucketLocation as root = %v, %v; want \"\" (us-east-1)", loc, err)
	}
	_, err = root.S3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket})
	if err == nil || !strings.Contains(err.Error(), "BucketNotEmpty") {
		t.Errorf("DeleteBucket of a non-empty bucket: %v, want BucketNotEmpty", err)
	}
}
