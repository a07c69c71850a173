package s3backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Role makes the session assume an IAM role with STS AssumeRole. The
// caller is Config's access key when set, else the AWS credential chain.
type Role struct {
	// ARN of the role, e.g. arn:aws:iam::123456789012:role/reader. Empty:
	// no role is assumed.
	ARN string
	// ExternalID is sent when not empty (the role's trust policy checks it).
	ExternalID string
	// SessionName names the role session. Default "s3mount".
	SessionName string
	// Duration asked for the session. 0: the SDK's default (15 minutes).
	Duration time.Duration
	// STSEndpointURL overrides the STS endpoint; empty: the SDK's standard
	// settings (AWS_ENDPOINT_URL_STS, the profile, AWS).
	STSEndpointURL string
	// ExpiryWindow is how long before expiry the credentials are renewed,
	// while the old ones still work. Default 5 minutes.
	ExpiryWindow time.Duration
}

// DefaultExpiryWindow is how long before their expiry assumed-role
// credentials are renewed. Requests during the renewal wait for it (one
// AssumeRole for all of them) and are signed with the new credentials; the
// old ones are still valid then, so no request fails at the switch.
const DefaultExpiryWindow = 5 * time.Minute

// Session is one set of credentials and one HTTP connection pool, from
// which a Client per bucket is made, each in its bucket's region. It also
// answers what an all-buckets mount asks beyond one bucket (Buckets).
type Session struct {
	cfg    Config
	aws    aws.Config // Region is the session's default region
	log    *slog.Logger
	region string

	mu      sync.Mutex
	regions map[string]string // bucket → region; guarded by mu
	clients map[string]*S3    // bucket → client; guarded by mu
}

// NewSession loads the AWS configuration and credentials. It makes no
// request: an assumed role's first AssumeRole happens with the first S3
// request (see Probe).
//
// Settings that matter (../shared/FIELD-NOTES.md): response checksum
// validation and request checksum calculation "when required" (the default
// CRC64 costs 2-3x on reads), UNSIGNED-PAYLOAD for part and object bodies
// (SigV4 hashing of every body halves upload speed), and the SDK's own
// BuildableClient (required when AWS_CA_BUNDLE is set) with more idle
// connections per host.
func NewSession(ctx context.Context, cfg Config) (*Session, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 64
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 5
	}
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = cfg.MaxConns * 2
		t.MaxIdleConnsPerHost = cfg.MaxConns
		t.IdleConnTimeout = 90 * time.Second
		// net/http's 4 KiB buffers make a part upload thousands of
		// small writes; 256 KiB ones keep syscalls per byte low.
		t.WriteBufferSize = 256 << 10
		t.ReadBufferSize = 256 << 10
		// Bodies go out in 1 MiB writes, not 32 KiB ones (conn.go).
		if t.DialContext != nil {
			t.DialContext = wrapDial(t.DialContext)
		}
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = 5 * time.Second
				// The client-side retry quota fails requests outright
				// after a burst of errors; a filesystem wants each
				// request retried on its own.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		if cfg.SecretAccessKey == "" {
			return nil, errors.New("an access key ID was given without its secret access key (set AWS_SECRET_ACCESS_KEY or --secret-access-key-file)")
		}
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	if r := cfg.Role; r.ARN != "" {
		// The caller's credentials are awsCfg's (the access key or the
		// chain); the S3 clients get the role's, cached and renewed
		// ExpiryWindow before they expire.
		stsClient := sts.NewFromConfig(awsCfg, func(o *sts.Options) {
			if r.STSEndpointURL != "" {
				o.BaseEndpoint = aws.String(r.STSEndpointURL)
			}
		})
		provider := stscreds.NewAssumeRoleProvider(stsClient, r.ARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = r.SessionName
			if o.RoleSessionName == "" {
				o.RoleSessionName = "s3mount"
			}
			if r.ExternalID != "" {
				o.ExternalID = aws.String(r.ExternalID)
			}
			if r.Duration > 0 {
				o.Duration = r.Duration
			}
		})
		window := r.ExpiryWindow
		if window <= 0 {
			window = DefaultExpiryWindow
		}
		awsCfg.Credentials = aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = window
		})
	}
	return &Session{cfg: cfg, aws: awsCfg, log: cfg.Logger, region: awsCfg.Region,
		regions: map[string]string{}, clients: map[string]*S3{}}, nil
}

// Region is the session's region: Config.Region, else the SDK's chain,
// else us-east-1. New buckets are made there.
func (s *Session) Region() string { return s.region }

// ForBucket returns the Client of bucket in region ("" for the session's).
func (s *Session) ForBucket(bucket, region string) *S3 {
	return &S3{api: s.api(region), bucket: bucket, log: s.log}
}

// api makes an *s3.Client in region ("" for the session's).
func (s *Session) api(region string) *s3.Client {
	return s3.NewFromConfig(s.aws, func(o *s3.Options) {
		if region != "" {
			o.Region = region
		}
		if s.cfg.EndpointURL != "" {
			o.BaseEndpoint = aws.String(s.cfg.EndpointURL)
		}
		o.UsePathStyle = s.cfg.ForcePathStyle
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
}

func (s *Session) fail(op, bucket string, err error) error {
	e := classify(op, bucket, "", err)
	logFailure(s.log, e)
	return e
}

// BucketInfo describes one bucket of ListBuckets.
type BucketInfo struct {
	Name    string
	Created time.Time
}

// Buckets is what an all-buckets mount asks of S3 beyond one bucket.
// Every method takes the FUSE request's context and returns an *Error on
// failure, like Client.
type Buckets interface {
	// ListBuckets returns every bucket the credentials may list
	// (ListBuckets, all pages).
	ListBuckets(ctx context.Context) ([]BucketInfo, error)
	// CreateBucket makes a bucket in the session's region (with a
	// LocationConstraint unless that is us-east-1).
	CreateBucket(ctx context.Context, name string) error
	// DeleteBucket removes an empty bucket; ErrNotEmpty otherwise.
	DeleteBucket(ctx context.Context, name string) error
	// Client returns the Client of one bucket, served in the bucket's
	// region (GetBucketLocation once per bucket, then cached).
	Client(ctx context.Context, bucket string) (Client, error)
}

var _ Buckets = (*Session)(nil)

// ListBuckets implements Buckets.
func (s *Session) ListBuckets(ctx context.Context) ([]BucketInfo, error) {
	api := s.api("")
	var out []BucketInfo
	var token *string
	for {
		page, err := api.ListBuckets(ctx, &s3.ListBucketsInput{ContinuationToken: token})
		if err != nil {
			return nil, s.fail("ListBuckets", "", err)
		}
		for _, b := range page.Buckets {
			out = append(out, BucketInfo{Name: aws.ToString(b.Name), Created: aws.ToTime(b.CreationDate)})
		}
		if aws.ToString(page.ContinuationToken) == "" {
			return out, nil
		}
		token = page.ContinuationToken
	}
}

// CreateBucket implements Buckets.
func (s *Session) CreateBucket(ctx context.Context, name string) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if s.region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(s.region)}
	}
	if _, err := s.api("").CreateBucket(ctx, in); err != nil {
		return s.fail("CreateBucket", name, err)
	}
	s.mu.Lock()
	s.regions[name] = s.region
	s.mu.Unlock()
	return nil
}

// DeleteBucket implements Buckets.
func (s *Session) DeleteBucket(ctx context.Context, name string) error {
	region, err := s.BucketRegion(ctx, name)
	if err != nil {
		return err
	}
	if _, err := s.api(region).DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)}); err != nil {
		return s.fail("DeleteBucket", name, err)
	}
	s.mu.Lock()
	delete(s.regions, name)
	delete(s.clients, name)
	s.mu.Unlock()
	return nil
}

// Client implements Buckets: one client per bucket, in its region.
func (s *Session) Client(ctx context.Context, bucket string) (Client, error) {
	s.mu.Lock()
	c, ok := s.clients[bucket]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	region, err := s.BucketRegion(ctx, bucket)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[bucket]; ok {
		return c, nil
	}
	c = s.ForBucket(bucket, region)
	s.clients[bucket] = c
	return c, nil
}

// BucketRegion finds a bucket's region with GetBucketLocation (an empty
// LocationConstraint is us-east-1, "EU" is eu-west-1), once per bucket. A
// 301 PermanentRedirect answer is followed: its x-amz-bucket-region header
// is the region. A server that does not implement GetBucketLocation
// (NotImplemented) is taken to serve every bucket in the session's region.
func (s *Session) BucketRegion(ctx context.Context, bucket string) (string, error) {
	s.mu.Lock()
	r, ok := s.regions[bucket]
	s.mu.Unlock()
	if ok {
		return r, nil
	}
	out, err := s.api("").GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucket)})
	switch {
	case err == nil:
		r = string(out.LocationConstraint)
		switch r {
		case "":
			r = "us-east-1"
		case "EU":
			r = "eu-west-1"
		}
	default:
		e := classify("GetBucketLocation", bucket, "", err)
		if h := regionHeader(err); h != "" {
			r = h
		} else if e.Code == "NotImplemented" || e.Status == http.StatusNotImplemented {
			r = s.region
		} else {
			logFailure(s.log, e)
			return "", e
		}
	}
	s.mu.Lock()
	s.regions[bucket] = r
	s.mu.Unlock()
	return r, nil
}

// DetectRegion finds the region of a mount's bucket without ever failing
// the mount for it: GetBucketLocation; when that is denied (a user limited
// to a path may lack it), the x-amz-bucket-region header of a ListObjectsV2
// of the mount's prefix; else the session's region. how says which.
func (s *Session) DetectRegion(ctx context.Context, bucket, prefix string) (region, how string) {
	if r, err := s.BucketRegion(ctx, bucket); err == nil {
		return r, "GetBucketLocation"
	}
	out, err := s.api("").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket),
		Prefix: aws.String(prefix), MaxKeys: aws.Int32(1)})
	h := regionHeader(err)
	if err == nil {
		if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
			h = raw.Header.Get("X-Amz-Bucket-Region")
		}
	}
	if h != "" {
		s.mu.Lock()
		s.regions[bucket] = h
		s.mu.Unlock()
		return h, "x-amz-bucket-region"
	}
	return s.region, "default"
}

// regionHeader is the x-amz-bucket-region header of a failed request's
// response (S3 sends it with 301 PermanentRedirect and with 400
// AuthorizationHeaderMalformed for a wrong region).
func regionHeader(err error) string {
	var re *awshttp.ResponseError
	if err != nil && errors.As(err, &re) && re.Response != nil {
		return re.Response.Header.Get("X-Amz-Bucket-Region")
	}
	return ""
}

// ProbeBuckets checks, before an all-buckets mount, that the credentials
// may list the buckets (ListBuckets), and says in one line why not.
func ProbeBuckets(ctx context.Context, b Buckets, endpoint string) error {
	_, err := b.ListBuckets(ctx)
	if err == nil {
		return nil
	}
	f := describe(err, endpoint)
	switch {
	case f.common != nil:
		return f.common
	case errors.Is(err, ErrDenied):
		return fmt.Errorf("access denied listing the buckets (%s): mounting every bucket needs s3:ListAllMyBuckets; name a bucket to mount only it", f.code)
	}
	return fmt.Errorf("listing the buckets: %w", err)
}
