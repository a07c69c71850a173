package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// STSConfig is what the test STS endpoint accepts and answers.
type STSConfig struct {
	// CallerAccessKey and CallerSecretKey are the only keys whose SigV4
	// signature is accepted.
	CallerAccessKey, CallerSecretKey string
	// RoleARN and ExternalID must match the request's RoleArn and
	// ExternalId exactly.
	RoleARN, ExternalID string
	// AccessKey and SecretKey are handed out as the role's credentials
	// (a versitygw user's, so SessionToken is empty: versitygw refuses a
	// token with long-term keys).
	AccessKey, SecretKey string
	// Lifetime is how far in the future each answer's Expiration lies.
	Lifetime time.Duration
}

// STSServer is a minimal STS on 127.0.0.1 speaking the AssumeRole query
// API: it checks the request's SigV4 signature (recomputed with the SDK's
// own signer), RoleArn and ExternalId, and answers AssumeRoleResponse XML,
// or 403 AccessDenied ErrorResponse XML on any mismatch.
type STSServer struct {
	URL string
	cfg STSConfig
	srv *http.Server

	mu       sync.Mutex
	calls    int      // guarded by mu; AssumeRole answered with credentials
	refused  []string // guarded by mu; why each refused request was refused
	sessions []string // guarded by mu; RoleSessionName of each call
}

// StartSTS starts the endpoint and stops it when the test ends.
func StartSTS(t testing.TB, cfg STSConfig) *STSServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &STSServer{URL: "http://" + l.Addr().String(), cfg: cfg}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// Calls is how many AssumeRole requests were answered with credentials.
func (s *STSServer) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Refused lists why each refused request was refused.
func (s *STSServer) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refused...)
}

// SessionNames lists the RoleSessionName of each answered call.
func (s *STSServer) SessionNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sessions...)
}

func (s *STSServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.refuse(w, 400, "InvalidRequest", "reading the body: "+err.Error())
		return
	}
	if err := VerifySigV4(r, body, s.cfg.CallerAccessKey, s.cfg.CallerSecretKey); err != nil {
		s.refuse(w, 403, "SignatureDoesNotMatch", err.Error())
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.refuse(w, 400, "InvalidRequest", "form: "+err.Error())
		return
	}
	switch {
	case form.Get("Action") != "AssumeRole":
		s.refuse(w, 400, "InvalidAction", "action "+form.Get("Action"))
		return
	case form.Get("RoleArn") != s.cfg.RoleARN:
		s.refuse(w, 403, "AccessDenied", "Not authorized to perform sts:AssumeRole (role ARN)")
		return
	case form.Get("ExternalId") != s.cfg.ExternalID:
		s.refuse(w, 403, "AccessDenied", "Not authorized to perform sts:AssumeRole (external ID)")
		return
	}
	s.mu.Lock()
	s.calls++
	s.sessions = append(s.sessions, form.Get("RoleSessionName"))
	s.mu.Unlock()
	exp := time.Now().Add(s.cfg.Lifetime).UTC().Format(time.RFC3339)
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>%s</AccessKeyId>
      <SecretAccessKey>%s</SecretAccessKey>
      <SessionToken></SessionToken>
      <Expiration>%s</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>%s/%s</Arn>
      <AssumedRoleId>AROATEST:%s</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>
</AssumeRoleResponse>`, xmlEscape(s.cfg.AccessKey), xmlEscape(s.cfg.SecretKey), exp,
		xmlEscape(strings.Replace(s.cfg.RoleARN, ":role/", ":assumed-role/", 1)),
		xmlEscape(form.Get("RoleSessionName")), xmlEscape(form.Get("RoleSessionName")), RandomHex(8))
}

func (s *STSServer) refuse(w http.ResponseWriter, status int, code, why string) {
	s.mu.Lock()
	s.refused = append(s.refused, code+": "+why)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>
  <RequestId>%s</RequestId>
</ErrorResponse>`, code, xmlEscape(why), RandomHex(8))
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// VerifySigV4 checks the AWS Signature Version 4 of a request whose body
// has been read: the Authorization header must name accessKey, and its
// signature must equal the one the SDK's v4 signer computes with secretKey
// over the same method, URL, signed headers, body, time, region and
// service.
func VerifySigV4(r *http.Request, body []byte, accessKey, secretKey string) error {
	auth := r.Header.Get("Authorization")
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(auth, algo) {
		return errors.New("no AWS4-HMAC-SHA256 Authorization header")
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(auth, algo), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return fmt.Errorf("malformed credential scope %q", fields["Credential"])
	}
	if scope[0] != accessKey {
		return fmt.Errorf("unknown access key %q", scope[0])
	}
	region, service := scope[2], scope[3]
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("X-Amz-Date: %v", err)
	}
	if d := time.Since(when); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("request time %s too far from now", when)
	}
	if scope[1] != when.Format("20060102") {
		return fmt.Errorf("credential date %s does not match X-Amz-Date", scope[1])
	}
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	re, err := http.NewRequest(r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	re.Host = r.Host
	re.ContentLength = int64(len(body))
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		switch h {
		case "host", "content-length":
		default:
			re.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secretKey},
		re, hex.EncodeToString(sum[:]), service, region, when)
	if err != nil {
		return err
	}
	want := ""
	for _, part := range strings.Split(re.Header.Get("Authorization"), ",") {
		if k, v, _ := strings.Cut(strings.TrimSpace(part), "="); k == "Signature" {
			want = v
		}
	}
	if want == "" || want != fields["Signature"] {
		return errors.New("the signature does not match")
	}
	return nil
}
