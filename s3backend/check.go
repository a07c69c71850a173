package s3backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The permissions that `s3mount check` probes, in the order it prints them.
const (
	PermListBuckets    = "list all buckets"
	PermListFiles      = "list files"
	PermDownload       = "download"
	PermUpload         = "upload"
	PermDelete         = "delete"
	PermBucketLocation = "get bucket location"
	PermCreateBucket   = "create bucket"
)

// Outcome of one probe.
type Outcome int

const (
	NotTried Outcome = iota // the probe was not sent; Note says why
	Granted                 // the request succeeded
	Denied                  // 403 or an access-denied code
	Failed                  // another error (missing bucket, unreachable, ...)
)

func (o Outcome) String() string {
	return [...]string{"not tried", "granted", "denied", "failed"}[o]
}

// CheckResult is one row of `s3mount check`.
type CheckResult struct {
	Permission string
	Outcome    Outcome
	Code       string // the S3 error code (or HTTP status) of a Denied or Failed probe
	Note       string // why it was not tried, or what was probed
	// Needed is true when the mount cannot work without this permission.
	Needed bool
}

// CheckOptions says what Check may do.
type CheckOptions struct {
	Bucket string // "" for an all-buckets connection
	Prefix string // the path restriction ("" or ending in "/")
	// WriteProbes allows an upload and a delete of one small object under
	// Prefix (and, without a Bucket, creating and deleting a bucket), all
	// removed afterwards.
	WriteProbes bool
}

// Check probes, without mounting, each permission that the mount's
// features need, and reports them in the order of the Perm* constants.
// Nothing is written unless opt.WriteProbes; what is written is removed.
// It returns an error only when the credentials themselves failed (STS
// AssumeRole, none found): then nothing else can be said.
func (s *Session) Check(ctx context.Context, opt CheckOptions) ([]CheckResult, error) {
	res := map[string]*CheckResult{}
	order := []string{PermListBuckets, PermListFiles, PermDownload, PermUpload, PermDelete,
		PermBucketLocation, PermCreateBucket}
	for _, p := range order {
		res[p] = &CheckResult{Permission: p}
	}
	set := func(p string, err error, note string) error {
		r := res[p]
		r.Note = note
		if err == nil {
			r.Outcome = Granted
			return nil
		}
		var e *Error
		if errors.As(err, &e) {
			r.Code = e.Code
			if r.Code == "" && e.Status != 0 {
				r.Code = fmt.Sprintf("HTTP %d", e.Status)
			}
		}
		if errors.Is(err, ErrAssumeRole) {
			return AssumeRoleError(err)
		}
		if errors.Is(err, ErrNoCredentials) {
			return errors.New("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the connection's access_key_id")
		}
		r.Outcome = Failed
		if errors.Is(err, ErrDenied) {
			r.Outcome = Denied
		}
		if r.Code == "" {
			r.Code = rootCause(err).Error()
		}
		return nil
	}
	notTried := func(p, why string) { res[p].Outcome, res[p].Note = NotTried, why }
	rows := func() []CheckResult {
		out := make([]CheckResult, len(order))
		for i, p := range order {
			out[i] = *res[p]
		}
		return out
	}

	buckets, err := s.ListBuckets(ctx)
	if err := set(PermListBuckets, err, ""); err != nil {
		return rows(), err
	}
	bucket := opt.Bucket
	res[PermListBuckets].Needed = bucket == ""
	res[PermListFiles].Needed = bucket != ""
	if bucket == "" {
		if len(buckets) == 0 {
			for _, p := range []string{PermListFiles, PermDownload, PermUpload, PermDelete, PermBucketLocation} {
				notTried(p, "no bucket to try it on")
			}
			res[PermListFiles].Needed = false
		} else {
			bucket = buckets[0].Name
		}
	}
	if bucket != "" {
		region, err := s.BucketRegion(ctx, bucket)
		if err := set(PermBucketLocation, err, "s3://"+bucket); err != nil {
			return rows(), err
		}
		if err != nil {
			region, _ = s.DetectRegion(ctx, bucket, opt.Prefix)
		}
		c := s.ForBucket(bucket, region)
		where := "s3://" + bucket + "/" + opt.Prefix
		// The mount's own probe: the prefix, delimited, max-keys 1.
		_, err = c.List(ctx, opt.Prefix, "/", "", 1)
		if err := set(PermListFiles, err, where); err != nil {
			return rows(), err
		}
		key := ""
		if err == nil {
			if all, lerr := c.List(ctx, opt.Prefix, "", "", 10); lerr == nil {
				for _, o := range all.Objects {
					if !strings.HasSuffix(o.Key, "/") {
						key = o.Key
						break
					}
				}
			}
		}
		probeKey := ""
		if opt.WriteProbes {
			probeKey = opt.Prefix + ".s3mount-check-" + randomHex(8)
			_, err := c.Put(ctx, probeKey, []byte("s3mount check\n"), PutOptions{})
			if err := set(PermUpload, err, "s3://"+bucket+"/"+probeKey); err != nil {
				return rows(), err
			}
			if err == nil && key == "" {
				key = probeKey
			}
		} else {
			notTried(PermUpload, "needs --write-probes")
			notTried(PermDelete, "needs --write-probes")
		}
		if key != "" {
			out, err := c.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
				Range: aws.String("bytes=0-0")})
			if err == nil {
				out.Body.Close()
			} else if e := classify("GetObject", bucket, key, err); e.Code == "InvalidRange" {
				err = nil // an empty object: reading it was allowed
			} else {
				err = e
			}
			if err := set(PermDownload, err, "s3://"+bucket+"/"+key); err != nil {
				return rows(), err
			}
		} else if res[PermListFiles].Outcome == Granted {
			notTried(PermDownload, "no file under the path to read (--write-probes uploads one)")
		} else {
			notTried(PermDownload, "no file could be listed")
		}
		if opt.WriteProbes && res[PermUpload].Outcome == Granted {
			err := c.Delete(ctx, probeKey)
			if err := set(PermDelete, err, "s3://"+bucket+"/"+probeKey); err != nil {
				return rows(), err
			}
		} else if opt.WriteProbes {
			// Deleting a key that was never written proves nothing on S3
			// (204 either way), so try it only on the probe object.
			notTried(PermDelete, "the upload probe failed")
		}
	}
	if opt.Bucket != "" {
		notTried(PermCreateBucket, "not used by a mount restricted to a bucket")
	} else if !opt.WriteProbes {
		notTried(PermCreateBucket, "needs --write-probes")
	} else {
		name := "s3mount-check-" + randomHex(8)
		err := s.CreateBucket(ctx, name)
		if err := set(PermCreateBucket, err, name+" in "+s.region); err != nil {
			return rows(), err
		}
		if err == nil {
			if derr := s.DeleteBucket(ctx, name); derr != nil {
				res[PermCreateBucket].Note += fmt.Sprintf("; deleting it failed (%v): remove it by hand", derr)
			}
		}
	}
	return rows(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
