package s3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/litefs-dev/litefs/replica"
)

// Config locates a replica in a bucket and says how to reach it.
type Config struct {
	// Bucket and Path come from s3://bucket/path (see ParseURL). Path must
	// not be empty: objects live under <Path>/.
	Bucket, Path string

	// Endpoint is a custom endpoint (MinIO, R2, Tigris, versitygw), e.g.
	// "http://127.0.0.1:7070"; "" means AWS. Without a scheme https is used.
	Endpoint string

	// Region defaults to "us-east-1" when Endpoint is set, else to the SDK's
	// environment and shared config (AWS_REGION, ~/.aws/config).
	Region string

	// ForcePathStyle addresses the bucket in the path instead of the host
	// name. It is implied when Endpoint's host is an IP address or localhost.
	ForcePathStyle bool

	// AccessKeyID and SecretAccessKey; "" means LITEFS_ACCESS_KEY_ID /
	// LITEFS_SECRET_ACCESS_KEY, then LITESTREAM_*, then the SDK default chain
	// (AWS_* environment, shared config, IRSA, instance roles).
	AccessKeyID, SecretAccessKey string

	// ConditionalWrites sends If-None-Match: * when creating objects and
	// enables the lease API. Off only for S3 clones that lack them: then
	// nothing fences a second writer.
	ConditionalWrites bool

	// ResponseHeaderTimeout bounds how long a request waits for the
	// response headers once it has been sent, so a hung server cannot hang a
	// request forever; 0 means 2 minutes. Whole-request deadlines belong to
	// the caller's context.
	ResponseHeaderTimeout time.Duration
}

// String describes the config without its secret.
func (c Config) String() string {
	return fmt.Sprintf("s3://%s/%s endpoint=%q region=%q path-style=%v access-key-id=%q secret=%s conditional-writes=%v",
		c.Bucket, c.Path, c.Endpoint, c.Region, c.ForcePathStyle, c.AccessKeyID, redact(c.SecretAccessKey), c.ConditionalWrites)
}

// LogValue keeps the secret out of slog output.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

func redact(s string) string {
	if s == "" {
		return `""`
	}
	return "<redacted>"
}

// Errors callers can test with errors.Is.
var (
	// ErrAccessDenied wraps 401/403 replies: bad credentials or a policy
	// that does not allow the request.
	ErrAccessDenied error = refusal("s3 access denied")

	// ErrNoSuchBucket wraps replies saying the bucket does not exist.
	ErrNoSuchBucket error = refusal("s3 bucket does not exist")
)

// refusal is an S3 answer that retrying will not change: it wraps
// replica.ErrRefused, so start-up fails on it instead of waiting it out.
type refusal string

func (r refusal) Error() string { return string(r) }
func (refusal) Unwrap() error   { return replica.ErrRefused }

const (
	defaultResponseHeaderTimeout = 2 * time.Minute
	defaultPartSize              = 16 << 20 // also the single-PUT threshold
	minPartSize                  = 5 << 20  // S3's minimum for all parts but the last
	deleteBatchSize              = 1000     // DeleteObjects' limit
	conflictRetries              = 5        // attempts on 409 ConditionalRequestConflict
)

// Client is a replica.ReplicaClient for S3 and S3-compatible stores. It is
// safe for concurrent use.
type Client struct {
	cfg      Config
	s3       *s3.Client
	partSize int64
	cache    detailsCache

	// partCRC follows the SDK's default flexible checksums on multipart
	// uploads (AWS): CRC32 declared at creation, sent with each part and
	// repeated in the completion. Off for custom endpoints.
	partCRC bool
}

var _ replica.ReplicaClient = (*Client)(nil)

// ParseURL checks an s3://bucket/path replica URL and splits it into its
// bucket and path, trimmed of slashes. It is the one place an s3 URL is
// checked: the config (through replica/backends) and NewClient both use it.
// Its messages say what to write instead; none repeats a credential.
func ParseURL(raw string) (bucket, path string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("cannot parse %q; write s3://bucket/path", raw)
	}
	switch {
	case u.Scheme != "s3":
		return "", "", fmt.Errorf("%q is not an s3 URL; want s3://bucket/path", raw)
	case u.User != nil:
		return "", "", fmt.Errorf("%q holds credentials; remove them and set access-key-id and secret-access-key, or use the environment", redactURL(u))
	case u.RawQuery != "" || u.Fragment != "":
		return "", "", fmt.Errorf("%q has query parameters; remove them and set endpoint, region and force-path-style as keys", raw)
	case u.Host == "":
		return "", "", fmt.Errorf("%q has no bucket; write s3://bucket/path", raw)
	case u.Port() != "":
		return "", "", fmt.Errorf("%q has a port: the host is the bucket name; set the server as endpoint = \"http://host:port\"", raw)
	}
	p := strings.Trim(u.Path, "/")
	if p == "" {
		return "", "", fmt.Errorf("%q has no path inside the bucket; write s3://bucket/path", raw)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", "", fmt.Errorf("%q has an empty, . or .. path segment; write s3://bucket/path", raw)
		}
	}
	return u.Host, p, nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

func cleanPath(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", errors.New("missing path: objects need a prefix (want s3://bucket/path)")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("path %q: empty, . or .. segment", p)
		}
	}
	return p, nil
}

// NewClient builds a client. It sends no request: call Check to find bad
// credentials or a missing bucket at start-up.
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: missing bucket")
	}
	p, err := cleanPath(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("s3: bucket %q: %w", cfg.Bucket, err)
	}
	cfg.Path = p
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = defaultResponseHeaderTimeout
	}

	var endpoint string
	if cfg.Endpoint != "" {
		endpoint = cfg.Endpoint
		if !strings.Contains(endpoint, "://") {
			endpoint = "https://" + endpoint
		}
		eu, err := url.Parse(endpoint)
		if err != nil || eu.Host == "" || (eu.Scheme != "http" && eu.Scheme != "https") {
			return nil, fmt.Errorf("s3: endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
		}
		if h := eu.Hostname(); h == "localhost" || net.ParseIP(h) != nil {
			cfg.ForcePathStyle = true // virtual-host style cannot address an IP
		}
		if cfg.Region == "" {
			cfg.Region = "us-east-1"
		}
	}

	// A *BuildableClient (not a plain *http.Client) keeps AWS_CA_BUNDLE
	// working: the SDK adds the bundle through WithTransportOptions.
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
		tr.IdleConnTimeout = 90 * time.Second
	})
	opts := []func(*config.LoadOptions) error{config.WithHTTPClient(hc)}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if endpoint != "" {
		// R2 and older MinIO reject the SDK's default CRC checksum headers.
		opts = append(opts,
			config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
			config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	}
	creds, err := staticCredentials(cfg)
	if err != nil {
		return nil, err
	}
	if creds != nil {
		opts = append(opts, config.WithCredentialsProvider(creds))
	}

	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		if ca := os.Getenv("AWS_CA_BUNDLE"); ca != "" && (strings.Contains(err.Error(), ca) || strings.Contains(strings.ToLower(err.Error()), "ca bundle")) {
			return nil, fmt.Errorf("s3: AWS_CA_BUNDLE=%s cannot be used (unset it or point it at a PEM file): %w", ca, err)
		}
		return nil, fmt.Errorf("s3: load AWS config (environment, ~/.aws/config): %w", err)
	}
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("s3: no region for bucket %q: set region in the replica config or AWS_REGION", cfg.Bucket)
	}
	if creds == nil && awsCfg.Credentials != nil {
		awsCfg.Credentials = credentialsHint{awsCfg.Credentials}
	}
	cfg.Region = awsCfg.Region

	cl := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.ForcePathStyle
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	return &Client{
		cfg: cfg, s3: cl, partSize: defaultPartSize,
		partCRC: awsCfg.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired,
	}, nil
}

// staticCredentials returns the explicit or LITEFS_/LITESTREAM_ credentials,
// or nil for the SDK's default chain.
func staticCredentials(cfg Config) (aws.CredentialsProvider, error) {
	type pair struct{ src, id, secret string }
	cands := []pair{
		{"config access-key-id/secret-access-key", cfg.AccessKeyID, cfg.SecretAccessKey},
		{"LITEFS_ACCESS_KEY_ID/LITEFS_SECRET_ACCESS_KEY", os.Getenv("LITEFS_ACCESS_KEY_ID"), os.Getenv("LITEFS_SECRET_ACCESS_KEY")},
		{"LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY", os.Getenv("LITESTREAM_ACCESS_KEY_ID"), os.Getenv("LITESTREAM_SECRET_ACCESS_KEY")},
	}
	for _, c := range cands {
		switch {
		case c.id == "" && c.secret == "":
			continue
		case c.id == "" || c.secret == "":
			return nil, fmt.Errorf("s3: %s: only one of the pair is set", c.src)
		}
		return credentials.NewStaticCredentialsProvider(c.id, c.secret, ""), nil
	}
	return nil, nil
}

// credentialsHint wraps the SDK's default chain: when it yields nothing,
// the error lists every place litefs and the SDK looked, so a missing
// credential is not a bare "no EC2 IMDS role found".
type credentialsHint struct{ aws.CredentialsProvider }

func (h credentialsHint) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := h.CredentialsProvider.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		return c, &noCredentialsError{err}
	}
	return c, err
}

// ProviderSources keeps the SDK's record of where credentials came from.
func (h credentialsHint) ProviderSources() []aws.CredentialSource {
	if s, ok := h.CredentialsProvider.(aws.CredentialProviderSource); ok {
		return s.ProviderSources()
	}
	return nil
}

// noCredentialsError is the default chain's failure, with where to look.
type noCredentialsError struct{ err error }

func (e *noCredentialsError) Unwrap() error { return e.err }

func (e *noCredentialsError) Error() string {
	half := ""
	if id, secret := os.Getenv("AWS_ACCESS_KEY_ID") != "", os.Getenv("AWS_SECRET_ACCESS_KEY") != ""; id != secret {
		half = " (only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set: the SDK ignores half a pair)"
	}
	return "no credentials: set access-key-id and secret-access-key under [dbs.replica], " +
		"or LITEFS_ACCESS_KEY_ID and LITEFS_SECRET_ACCESS_KEY, or LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY; " +
		"else the AWS SDK looks at AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" + half + ", " +
		"the shared files ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE, profile AWS_PROFILE or default), " +
		"web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, as IRSA sets them), the ECS container endpoint and the EC2 instance role; " +
		"none gave credentials (the SDK's last error: " + e.err.Error() + ")"
}

// Type returns "s3".
func (c *Client) Type() string { return "s3" }

// Config returns the client's config after defaults were applied.
func (c *Client) Config() Config { return c.cfg }

// URL returns s3://bucket/path.
func (c *Client) URL() string { return "s3://" + c.cfg.Bucket + "/" + c.cfg.Path }

// SDK returns the underlying SDK client (for tests and tools).
func (c *Client) SDK() *s3.Client { return c.s3 }

// Check lists at most one object under the path: it fails fast on bad
// credentials, a missing bucket or an unreachable endpoint.
func (c *Client) Check(ctx context.Context) error {
	_, err := c.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket:  aws.String(c.cfg.Bucket),
		Prefix:  aws.String(c.cfg.Path + "/"),
		MaxKeys: aws.Int32(1),
	})
	if err != nil {
		return c.wrap("check", c.cfg.Path+"/", err)
	}
	return nil
}

// wrap turns an SDK error into one that names the object and wraps
// replica.ErrNotFound, ErrNoSuchBucket or ErrAccessDenied where it applies.
func (c *Client) wrap(op, key string, err error) error {
	where := fmt.Sprintf("s3: %s s3://%s/%s", op, c.cfg.Bucket, key)
	var nc *noCredentialsError
	if errors.As(err, &nc) {
		return fmt.Errorf("%s: %w", where, nc) // the SDK's wrapping says nothing more
	}
	code, status := errInfo(err)
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%s: %w (endpoint %q): %w", where, ErrNoSuchBucket, c.cfg.Endpoint, err)
	case code == "NoSuchKey" || code == "NotFound" || (status == http.StatusNotFound && code == ""):
		return fmt.Errorf("%s: %w", where, replica.ErrNotFound)
	case status == http.StatusForbidden || status == http.StatusUnauthorized || isAuthCode(code):
		return fmt.Errorf("%s: %w (check the access key id and secret, or the bucket policy): %w", where, ErrAccessDenied, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

func isAuthCode(code string) bool {
	switch code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
		"InvalidToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed", "InvalidClientTokenId":
		return true
	}
	return false
}

// errInfo returns the S3 error code and HTTP status of err, if any.
func errInfo(err error) (code string, status int) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return code, status
}

func isPreconditionFailed(err error) bool {
	code, status := errInfo(err)
	return status == http.StatusPreconditionFailed || code == "PreconditionFailed"
}

// isConcurrentConflict reports a 409 on a conditional request: another
// conditional write to the key was in flight. AWS asks to retry.
func isConcurrentConflict(err error) bool {
	code, status := errInfo(err)
	return status == http.StatusConflict || code == "ConditionalRequestConflict"
}

func isNotFound(err error) bool {
	code, status := errInfo(err)
	if code == "NoSuchBucket" {
		return false
	}
	return code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound
}

// retryConflicts runs fn again after a backoff while it fails with 409.
func retryConflicts(ctx context.Context, fn func() error) error {
	delay := 50 * time.Millisecond
	for i := 1; ; i++ {
		err := fn()
		if err == nil || !isConcurrentConflict(err) || i == conflictRetries {
			return err
		}
		d := delay + rand.N(delay)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(d):
		}
		delay *= 2
	}
}
