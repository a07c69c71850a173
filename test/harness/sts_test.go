package harness

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// TestSTSServer checks the tests' own STS endpoint with the SDK's STS
// client: a correctly signed AssumeRole with the right role and external
// ID gets the configured keys; a wrong secret, role or external ID gets 403.
func TestSTSServer(t *testing.T) {
	cfg := STSConfig{CallerAccessKey: "AKCALLER", CallerSecretKey: "callersecret",
		RoleARN: "arn:aws:iam::123456789012:role/reader", ExternalID: "ext-1",
		AccessKey: "AKROLE", SecretKey: "rolesecret", Lifetime: time.Hour}
	s := StartSTS(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	assume := func(secret, role, ext string) (*sts.AssumeRoleOutput, error) {
		awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("eu-west-1"),
			config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.CallerAccessKey, secret, "")))
		if err != nil {
			t.Fatal(err)
		}
		c := sts.NewFromConfig(awsCfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(s.URL) })
		return c.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(role), RoleSessionName: aws.String("t"),
			ExternalId: aws.String(ext)})
	}
	out, err := assume(cfg.CallerSecretKey, cfg.RoleARN, cfg.ExternalID)
	if err != nil {
		t.Fatalf("AssumeRole: %v (refused: %q)", err, s.Refused())
	}
	if aws.ToString(out.Credentials.AccessKeyId) != "AKROLE" || aws.ToString(out.Credentials.SessionToken) != "" {
		t.Errorf("credentials %+v", out.Credentials)
	}
	for _, tc := range []struct{ secret, role, ext, why string }{
		{"wrong", cfg.RoleARN, cfg.ExternalID, "SignatureDoesNotMatch"},
		{cfg.CallerSecretKey, "arn:aws:iam::123456789012:role/other", cfg.ExternalID, "role ARN"},
		{cfg.CallerSecretKey, cfg.RoleARN, "ext-2", "external ID"},
	} {
		if _, err := assume(tc.secret, tc.role, tc.ext); err == nil || !strings.Contains(err.Error(), "StatusCode: 403") {
			t.Errorf("%s: AssumeRole = %v, want 403", tc.why, err)
		}
	}
	if got := s.Refused(); len(got) != 3 || !strings.Contains(got[0], "signature") || !strings.Contains(got[2], "external ID") {
		t.Errorf("refusals %q", got)
	}
	if s.Calls() != 1 {
		t.Errorf("calls = %d, want 1", s.Calls())
	}
}
