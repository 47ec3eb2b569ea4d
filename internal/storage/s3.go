package storage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/vetcd/vetcd/internal/storage/storageurl"
)

const (
	// DefaultS3Endpoint is AWS itself, used when the URL names no endpoint.
	DefaultS3Endpoint = storageurl.DefaultS3Endpoint
	// DefaultS3PartSize is the multipart part size. One part is held in
	// memory while it uploads, so it bounds Put's memory; 10,000 parts of
	// 16 MiB allow 160 GiB of unknown size.
	DefaultS3PartSize = 16 << 20
	// DefaultS3ProbeTimeout bounds Open's check of the bucket, so an
	// unreachable endpoint fails a command in seconds instead of hanging.
	DefaultS3ProbeTimeout = 15 * time.Second
	// s3DialTimeout bounds one TCP connect and a credential lookup.
	s3DialTimeout = 10 * time.Second
)

// S3Config says where an S3 backend stores its objects and how it reaches
// the endpoint. Credentials are never part of it: they come from the
// standard AWS chain (see NewS3), so they never appear in URLs, configs or
// logs.
type S3Config struct {
	// Endpoint is host[:port] of any S3-compatible service
	// (DefaultS3Endpoint when empty).
	Endpoint string
	// Insecure selects plain http instead of https.
	Insecure bool
	// Region is the bucket's region; empty asks the service (and honours
	// AWS_REGION / AWS_DEFAULT_REGION).
	Region string
	// PathStyle addresses buckets as endpoint/bucket/key instead of
	// bucket.endpoint/key; custom endpoints (MinIO, Ceph, …) want it.
	PathStyle bool
	// CAFile is a PEM bundle of extra CAs trusted for https, in addition
	// to the system's (AWS_CA_BUNDLE when empty).
	CAFile string
	// Bucket and Prefix locate the objects: a name N is the key Prefix/N.
	Bucket, Prefix string
	// PartSize is the multipart part size (DefaultS3PartSize when 0).
	PartSize uint64
	// ProbeTimeout bounds Check (DefaultS3ProbeTimeout when 0).
	ProbeTimeout time.Duration
}

// S3 stores objects in an S3 bucket below a key prefix. Objects of unknown
// or large size upload as multipart uploads, which S3 shows under the final
// name only once they complete; a failed upload is aborted, so a partial
// object is never visible. Safe for concurrent use.
type S3 struct {
	client   *minio.Client
	creds    *credentials.Credentials
	bucket   string
	prefix   string // "" or ending in "/"
	partSize uint64
	probe    time.Duration
	endpoint string // for error messages: scheme://host:port
}

var _ Backend = (*S3)(nil)

// s3ConfigFrom reads the URL options into a config (without bucket and
// prefix); storageurl.ParseS3Options checks them.
func s3ConfigFrom(q url.Values) (S3Config, error) {
	o, err := storageurl.ParseS3Options(q)
	if err != nil {
		return S3Config{}, err
	}
	return S3Config{Endpoint: o.Endpoint, Insecure: o.Insecure, Region: o.Region, PathStyle: o.PathStyle, CAFile: o.CAFile}, nil
}

// openS3 connects to the location's bucket and checks, within
// DefaultS3ProbeTimeout, that it exists and the credentials may list it.
func openS3(ctx context.Context, loc Location) (Backend, error) {
	c, err := s3ConfigFrom(loc.Query)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	c.Bucket, c.Prefix, _ = strings.Cut(loc.Root, "/")
	s, err := NewS3(c)
	if err != nil {
		return nil, err
	}
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// NewS3 returns a backend for c. Credentials come from, in order: the
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN), the shared AWS config and credentials files
// (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE), then IAM
// (web identity, ECS/EKS container credentials, EC2 instance profile).
// It does no I/O besides reading the CA file; Check reaches the endpoint.
func NewS3(c S3Config) (*S3, error) {
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		return nil, fmt.Errorf("storage: s3 bucket %q: %w", c.Bucket, err)
	}
	if c.Endpoint == "" {
		c.Endpoint = DefaultS3Endpoint
	}
	if c.Region == "" {
		c.Region = os.Getenv("AWS_REGION")
	}
	if c.Region == "" {
		c.Region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultS3PartSize
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultS3ProbeTimeout
	}
	if c.CAFile == "" && !c.Insecure {
		c.CAFile = os.Getenv("AWS_CA_BUNDLE")
	}
	tr, err := minio.DefaultTransport(!c.Insecure)
	if err != nil {
		return nil, fmt.Errorf("storage: s3 transport: %w", err)
	}
	// An endpoint that drops packets fails a dial in seconds, not the
	// kernel's minutes.
	tr.DialContext = (&net.Dialer{Timeout: s3DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	if c.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("storage: s3 CA bundle: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("storage: s3 CA bundle %s: no PEM certificates in it", c.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		// A machine without a metadata service must not stall here.
		&credentials.IAM{Client: &http.Client{Timeout: s3DialTimeout}},
	})
	lookup := minio.BucketLookupAuto
	if c.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(c.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       !c.Insecure,
		Transport:    tr,
		Region:       c.Region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("storage: s3 endpoint %q: %w", c.Endpoint, err)
	}
	prefix := strings.Trim(c.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	scheme := "https"
	if c.Insecure {
		scheme = "http"
	}
	return &S3{
		client: client, creds: creds, bucket: c.Bucket, prefix: prefix,
		partSize: c.PartSize, probe: c.ProbeTimeout,
		endpoint: scheme + "://" + c.Endpoint,
	}, nil
}

// where names the backend's location for messages: never credentials.
func (s *S3) where() string {
	return "s3://" + s.bucket + "/" + s.prefix + " at " + s.endpoint
}

// Check lists at most one key below the prefix, within the probe timeout,
// so a missing bucket, rejected credentials or an unreachable endpoint is
// reported at once with its cause rather than after a snapshot was taken.
func (s *S3) Check(ctx context.Context) (err error) {
	ctx, cancel := context.WithTimeout(ctx, s.probe)
	defer cancel()
	// The first answer settles it: an error, a key, or (closed) none.
	if obj, ok := <-s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, MaxKeys: 1}); ok {
		err = obj.Err
	}
	if err == nil {
		err = ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("storage: s3 check %s: no answer from the endpoint within %s (is it reachable?): %w", s.where(), s.probe, err)
	}
	if err != nil {
		return s.explain("check", "", err)
	}
	return nil
}

func (s *S3) key(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
		return "", fmt.Errorf("storage: bad object name %q", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("storage: bad object name %q", name)
		}
	}
	k := s.prefix + name
	if err := s3utils.CheckValidObjectName(k); err != nil {
		return "", fmt.Errorf("storage: bad object name %q: %w", name, err)
	}
	return k, nil
}

// Put implements Backend. size may be -1 (unknown): the object then
// uploads in parts of PartSize, holding one part in memory.
func (s *S3) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	k, err := s.key(name)
	if err != nil {
		return err
	}
	_, err = s.client.PutObject(ctx, s.bucket, k, r, size, minio.PutObjectOptions{
		PartSize:    s.partSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return s.explain("put", k, err)
	}
	return nil
}

// Get implements Backend: the body and its size, or ErrNotFound.
func (s *S3) Get(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	k, err := s.key(name)
	if err != nil {
		return nil, 0, err
	}
	body, info, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, k, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, s.explain("get", k, err)
	}
	return body, info.Size, nil
}

// List implements Backend: the objects whose names start with prefix,
// sorted by name, with names relative to the URL's prefix.
func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, s.explain("list", s.prefix+prefix, obj.Err)
		}
		name := strings.TrimPrefix(obj.Key, s.prefix)
		if name == "" || strings.HasSuffix(name, "/") { // folder markers
			continue
		}
		out = append(out, Object{Name: name, Size: obj.Size, Modified: obj.LastModified})
	}
	if err := ctx.Err(); err != nil { // a cancelled listing just ends
		return nil, s.explain("list", s.prefix+prefix, err)
	}
	slices.SortFunc(out, func(a, b Object) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete implements Backend. S3 deletes of missing keys succeed, so Delete
// looks first and returns ErrNotFound for a missing object, as the file
// backend does.
func (s *S3) Delete(ctx context.Context, name string) error {
	k, err := s.key(name)
	if err != nil {
		return err
	}
	if _, err := s.client.StatObject(ctx, s.bucket, k, minio.StatObjectOptions{}); err != nil {
		return s.explain("delete", k, err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{}); err != nil {
		return s.explain("delete", k, err)
	}
	return nil
}

// explain turns a client error into one that names the problem: a missing
// key (ErrNotFound), a missing bucket, rejected credentials, a TLS or
// network failure. The original error stays wrapped. Credentials are
// never part of the text.
func (s *S3) explain(op, key string, err error) error {
	obj := s.where()
	if key != "" {
		obj = "s3://" + s.bucket + "/" + key + " at " + s.endpoint
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case minio.NoSuchKey:
			return fmt.Errorf("%w: %s", ErrNotFound, obj)
		case minio.NoSuchBucket:
			return fmt.Errorf("storage: s3 %s %s: bucket %q does not exist: %w", op, obj, s.bucket, err)
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "InvalidTokenId", "ExpiredToken", "InvalidClientTokenId":
			return fmt.Errorf("storage: s3 %s %s: the credentials were rejected (%s); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the IAM role: %w", op, obj, resp.Code, err)
		case minio.AccessDenied:
			if s.anonymous() {
				return fmt.Errorf("storage: s3 %s %s: access denied and no credentials were found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an IAM role): %w", op, obj, err)
			}
			return fmt.Errorf("storage: s3 %s %s: access denied; the credentials need s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on it: %w", op, obj, err)
		}
		return fmt.Errorf("storage: s3 %s %s: %s: %w", op, obj, resp.Code, err)
	}
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) {
		return fmt.Errorf("storage: s3 %s %s: the endpoint's TLS certificate is not trusted (for a private CA use ?ca=/path/ca.pem or AWS_CA_BUNDLE): %w", op, obj, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("storage: s3 %s %s: no answer from the endpoint in time (is it reachable?): %w", op, obj, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return fmt.Errorf("storage: s3 %s %s: cannot reach the endpoint: %w", op, obj, err)
	}
	return fmt.Errorf("storage: s3 %s %s: %w", op, obj, err)
}

// anonymous reports whether the credential chain found nothing, so
// requests go unsigned.
func (s *S3) anonymous() bool {
	v, err := s.creds.GetWithContext(&credentials.CredContext{Client: &http.Client{Timeout: s3DialTimeout}})
	return err == nil && v.SignerType.IsAnonymous()
}
