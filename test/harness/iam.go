package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// IAMServer is versitygw's standalone IAM API server (`versitygw iam`),
// file-backed, that a gateway consults over a private unix socket
// (--iam-standalone-endpoint). Users, access keys and inline policies are
// managed through it with the AWS IAM API (service/iam), root keys signing.
type IAMServer struct {
	URL    string // e.g. http://127.0.0.1:7272, the IAM API
	Socket string // the private endpoint the gateway dials
	Dir    string

	rootAK, rootSK string
	cmd            *exec.Cmd
	exited         chan struct{}
	out            *syncBuffer
	closeOnce      sync.Once
}

// IAMGateway is a versitygw S3 gateway whose users live in an IAMServer.
type IAMGateway struct {
	*Server
	IAM *IAMServer
}

// StartIAMGateway starts an IAM server and a gateway using it, with random
// root keys and ports, and stops both when the test ends.
func StartIAMGateway(t testing.TB) *IAMGateway {
	t.Helper()
	g, err := LaunchIAMGateway()
	if err != nil {
		t.Fatalf("starting versitygw with standalone IAM: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// LaunchIAMGateway starts an IAM server, then a gateway that uses it.
func LaunchIAMGateway() (*IAMGateway, error) {
	ak, sk := "AK"+strings.ToUpper(RandomHex(9)), RandomHex(20)
	is, err := launchIAM(ak, sk)
	if err != nil {
		return nil, err
	}
	s, err := LaunchServer(ServerOptions{AccessKey: ak, SecretKey: sk,
		ExtraArgs: []string{"--iam-standalone-endpoint", is.Socket}})
	if err != nil {
		is.Close()
		return nil, err
	}
	return &IAMGateway{Server: s, IAM: is}, nil
}

// Close stops the gateway and the IAM server.
func (g *IAMGateway) Close() {
	_ = g.Server.Close()
	g.IAM.Close()
}

func launchIAM(ak, sk string) (*IAMServer, error) {
	bin, err := VersitygwPath()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "s3m-iam-")
	if err != nil {
		return nil, err
	}
	s := &IAMServer{Dir: dir, Socket: filepath.Join(dir, "private.sock"), rootAK: ak, rootSK: sk}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	var lastErr error
	for i := 0; i < 4; i++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		s.URL = "http://" + addr
		_ = os.Remove(s.Socket)
		cmd := exec.Command(bin, "-p", addr, "--health", "/healthz", "iam",
			"--dir", filepath.Join(dir, "db"), "--private-ports", s.Socket, "--quiet")
		cmd.Env = append(FilterEnv(os.Environ(), "ROOT_ACCESS_KEY", "ROOT_SECRET_KEY",
			"ROOT_ACCESS_KEY_ID", "ROOT_SECRET_ACCESS_KEY"),
			"ROOT_ACCESS_KEY="+ak, "ROOT_SECRET_KEY="+sk)
		s.out = &syncBuffer{}
		cmd.Stdout, cmd.Stderr = s.out, s.out
		if err := cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("starting %s iam: %w", bin, err)
		}
		s.cmd, s.exited = cmd, make(chan struct{})
		go func() { _ = cmd.Wait(); close(s.exited) }()
		lastErr = waitHealthy(s.URL+"/healthz", 30*time.Second, s.exited)
		if lastErr == nil {
			lastErr = waitSocket(s.Socket, 10*time.Second)
		}
		if lastErr == nil {
			return s, nil
		}
		s.stop()
		lastErr = fmt.Errorf("versitygw iam on %s did not become ready: %w; output: %s", addr, lastErr, s.out.Bytes())
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func waitSocket(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("private socket %s did not appear", path)
}

func (s *IAMServer) stop() { terminate(s.cmd, s.exited) }

// Close stops the IAM server and removes its directory.
func (s *IAMServer) Close() {
	s.closeOnce.Do(func() {
		s.stop()
		_ = os.RemoveAll(s.Dir)
	})
}

func (s *IAMServer) client(ctx context.Context) (*iam.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.rootAK, s.rootSK, "")))
	if err != nil {
		return nil, err
	}
	return iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = aws.String(s.URL) }), nil
}

// CreateUser makes an IAM user with one access key and, when policy is not
// empty, one inline policy (a JSON policy document), and returns the
// user's keys.
func (s *IAMServer) CreateUser(ctx context.Context, name, policy string) (accessKey, secretKey string, err error) {
	c, err := s.client(ctx)
	if err != nil {
		return "", "", err
	}
	if _, err := c.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		return "", "", fmt.Errorf("iam CreateUser %s: %w", name, err)
	}
	out, err := c.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		return "", "", fmt.Errorf("iam CreateAccessKey %s: %w", name, err)
	}
	if policy != "" {
		if _, err := c.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(name),
			PolicyName: aws.String(name + "-policy"), PolicyDocument: aws.String(policy)}); err != nil {
			return "", "", fmt.Errorf("iam PutUserPolicy %s: %w", name, err)
		}
	}
	return aws.ToString(out.AccessKey.AccessKeyId), aws.ToString(out.AccessKey.SecretAccessKey), nil
}

// UserEndpoint is the gateway's endpoint with a user's keys.
func (g *IAMGateway) UserEndpoint(accessKey, secretKey string) Endpoint {
	ep := g.Endpoint
	ep.AccessKey, ep.SecretKey = accessKey, secretKey
	return ep
}

// PrefixPolicy is the inline policy of a user limited to bucket/prefix:
// s3:ListBucket only with an s3:prefix under it, object actions only on
// keys under it. prefix ends in "/".
func PrefixPolicy(bucket, prefix string) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::%[1]s","Condition":{"StringLike":{"s3:prefix":["%[2]s*"]}}},
{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:AbortMultipartUpload","s3:ListMultipartUploadParts"],"Resource":"arn:aws:s3:::%[1]s/%[2]s*"}]}`,
		bucket, prefix)
}

// BucketPolicy is the inline policy of a user limited to one bucket: list
// it, find its region, and every object action in it.
func BucketPolicy(bucket string) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":"arn:aws:s3:::%[1]s"},
{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:AbortMultipartUpload","s3:ListMultipartUploadParts"],"Resource":"arn:aws:s3:::%[1]s/*"}]}`,
		bucket)
}

// CleanEnv is this process's environment without any AWS credential,
// profile, region or endpoint variable, and with IMDS disabled, so that a
// command sees only the credentials a test gives it.
func CleanEnv(extra ...string) []string {
	env := FilterEnv(os.Environ(),
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_EC2_METADATA_DISABLED", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
		"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS", "S3MOUNT_CONFIG")
	return append(append(env, "AWS_EC2_METADATA_DISABLED=true"), extra...)
}
