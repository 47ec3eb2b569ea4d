package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/vetcd/vetcd/internal/testtools"
)

func TestParseS3(t *testing.T) {
	tests := []struct {
		in         string
		root, name string
		cfg        S3Config // checked when err == ""
		err        string
	}{
		{in: "s3://bucket/prefix/name", root: "bucket/prefix", name: "name"},
		{in: "s3://bucket/a/b/name", root: "bucket/a/b", name: "name"},
		{in: "s3://bucket/name", root: "bucket", name: "name"},
		{in: "s3://bucket/", root: "bucket", name: ""},
		{in: "s3://bucket", root: "bucket", name: ""},
		{in: "s3://bucket/prefix/", root: "bucket/prefix", name: ""},
		{in: "s3://bucket/prefix/nightly-?region=eu-west-1", root: "bucket/prefix", name: "nightly-",
			cfg: S3Config{Region: "eu-west-1"}},
		{in: "s3://b-1.x/p/n?endpoint=127.0.0.1:9000&insecure=true", root: "b-1.x/p", name: "n",
			cfg: S3Config{Endpoint: "127.0.0.1:9000", Insecure: true, PathStyle: true}},
		{in: "s3://bkt/n?endpoint=minio.local:9000&tls=false", root: "bkt", name: "n",
			cfg: S3Config{Endpoint: "minio.local:9000", Insecure: true, PathStyle: true}},
		{in: "s3://bkt/n?endpoint=http://minio.local:9000", root: "bkt", name: "n",
			cfg: S3Config{Endpoint: "minio.local:9000", Insecure: true, PathStyle: true}},
		{in: "s3://bkt/n?endpoint=https://minio.local/&ca=/etc/ca.pem", root: "bkt", name: "n",
			cfg: S3Config{Endpoint: "minio.local", CAFile: "/etc/ca.pem", PathStyle: true}},
		{in: "s3://bkt/n?endpoint=oss.example.com&path-style=false", root: "bkt", name: "n",
			cfg: S3Config{Endpoint: "oss.example.com"}},
		{in: "s3://bkt/n?insecure=false&tls=true", root: "bkt", name: "n"},

		{in: "s3:///name", err: "name a bucket"},
		{in: "s3:bucket/name", err: "name a bucket"},
		{in: "s3://minio:9000/b/name", err: "?endpoint=minio:9000"},
		{in: "s3://Bad_Bucket/name", err: `bucket "Bad_Bucket"`},
		{in: "s3://ab/name", err: `bucket "ab"`},
		{in: "s3://bucket//name", err: "path elements"},
		{in: "s3://bucket/a/../name", err: "path elements"},
		{in: "s3://bucket/./name", err: "path elements"},
		{in: "s3://bucket/name#frag", err: "fragment"},
		{in: "s3://bucket/name?endpont=x:1", err: `unknown option "endpont"`},
		{in: "s3://bucket/name?insecure=maybe", err: `insecure="maybe"`},
		{in: "s3://bucket/name?path-style=2", err: `path-style="2"`},
		{in: "s3://bucket/name?insecure=true&tls=true", err: "contradict"},
		{in: "s3://bucket/name?region=a&region=b", err: `"region" is given 2 times`},
		{in: "s3://bucket/name?endpoint=", err: "give host:port"},
		{in: "s3://bucket/name?endpoint=h:1/path", err: "give host:port"},
		{in: "s3://bucket/name?endpoint=h:99999", err: "bad port"},
		{in: "s3://bucket/name?endpoint=ftp://h:1", err: "give host:port"},
		{in: "s3://bucket/name?endpoint=http://h:1&tls=true", err: "asks for TLS"},
		{in: "s3://bucket/name?endpoint=https://h:1&insecure=true", err: "asks for plain http"},
		{in: "s3://bucket/name?insecure=true&ca=/x.pem", err: "ca is for https"},
		{in: "s3://bucket/name?ca=", err: "option ca is empty"},
		{in: "s3://AKIAXXX:wJalrSECRET@bucket/name", err: "credentials in the URL"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			loc, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Fatalf("error leaks the credential: %v", err)
				}
				return
			}
			if err != nil || loc.Scheme != "s3" || loc.Root != tc.root || loc.Name != tc.name {
				t.Fatalf("Parse = %+v, %v; want root %q name %q", loc, err, tc.root, tc.name)
			}
			cfg, err := s3ConfigFrom(loc.Query)
			if err != nil || cfg != tc.cfg {
				t.Fatalf("config = %+v, %v; want %+v", cfg, err, tc.cfg)
			}
		})
	}
}

func TestWithName(t *testing.T) {
	for _, tc := range []struct{ prefix, name, want string }{
		{"file:///backups/", "vetcd-1", "file:///backups/vetcd-1"},
		{"s3://bkt/p/", "n", "s3://bkt/p/n"},
		{"s3://bkt/p/?endpoint=h:9000&insecure=true", "n", "s3://bkt/p/n?endpoint=h:9000&insecure=true"},
	} {
		got := WithName(tc.prefix, tc.name)
		if got != tc.want {
			t.Errorf("WithName(%q, %q) = %q, want %q", tc.prefix, tc.name, got, tc.want)
		}
		if loc, err := Parse(got); err != nil || loc.Name != tc.name {
			t.Errorf("Parse(%q) = %+v, %v: does not name %q", got, loc, err, tc.name)
		}
	}
}

// s3Env starts MinIO with a bucket and sets the AWS credential variables
// to its root user.
func s3Env(t *testing.T, opts testtools.MinIOOptions) (*testtools.MinIO, string) {
	t.Helper()
	m := testtools.StartMinIO(t, opts)
	m.SetEnv(t)
	const bucket = "vetcd-test"
	m.CreateBucket(t, bucket)
	return m, bucket
}

func openURL(t *testing.T, raw string) (Backend, error) {
	t.Helper()
	loc, err := Parse(raw)
	if err != nil {
		t.Fatalf("Parse(%q): %v", raw, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return Open(ctx, loc)
}

// TestS3Backend runs the Backend contract against a real MinIO through
// Parse and Open, as the CLI does.
func TestS3Backend(t *testing.T) {
	m, bucket := s3Env(t, testtools.MinIOOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	root := m.Client(t)
	// An object outside the prefix must never be listed or touched.
	_, err := root.PutObject(ctx, bucket, "elsewhere/snap-x", strings.NewReader("x"), 1, minio.PutObjectOptions{})
	must(err)

	b, err := openURL(t, m.URL(bucket, "backups/"))
	must(err)
	if objs, err := b.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("List of an empty prefix = %v, %v", objs, err)
	}

	t.Run("round trip", func(t *testing.T) {
		before := time.Now().Add(-time.Minute)
		must(b.Put(ctx, "snap-a", strings.NewReader("aaa"), 3))
		must(b.Put(ctx, "snap-b", strings.NewReader("bbbb"), -1)) // unknown size
		must(b.Put(ctx, "other", strings.NewReader("o"), 1))
		must(b.Put(ctx, "nested/snap-c", strings.NewReader("cc"), 2))
		if _, err := root.StatObject(ctx, bucket, "backups/snap-a", minio.StatObjectOptions{}); err != nil {
			t.Fatalf("the object is not stored below the URL's prefix: %v", err)
		}
		rc, size, err := b.Get(ctx, "snap-b")
		must(err)
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != "bbbb" || size != 4 {
			t.Fatalf("Get = %q (%d), %v", got, size, err)
		}
		objs, err := b.List(ctx, "snap-")
		must(err)
		if len(objs) != 2 || objs[0].Name != "snap-a" || objs[0].Size != 3 || objs[1].Name != "snap-b" || objs[1].Size != 4 {
			t.Fatalf("List(snap-) = %+v", objs)
		}
		if objs[0].Modified.Before(before) || objs[0].Modified.After(time.Now().Add(time.Minute)) {
			t.Fatalf("Modified %v is not about now", objs[0].Modified)
		}
		all, err := b.List(ctx, "")
		must(err)
		var names []string
		for _, o := range all {
			names = append(names, o.Name)
		}
		if strings.Join(names, ",") != "nested/snap-c,other,snap-a,snap-b" {
			t.Fatalf("List() = %v", names)
		}
		must(b.Delete(ctx, "snap-a"))
		if _, _, err := b.Get(ctx, "snap-a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete: %v", err)
		}
		if err := b.Delete(ctx, "snap-a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Delete of a missing object: %v", err)
		}
		if _, _, err := b.Get(ctx, "never-was"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "backups/never-was") {
			t.Fatalf("Get of a missing object: %v", err)
		}
		if _, err := root.StatObject(ctx, bucket, "elsewhere/snap-x", minio.StatObjectOptions{}); err != nil {
			t.Fatalf("an object outside the prefix is gone: %v", err)
		}
	})

	t.Run("names that need escaping", func(t *testing.T) {
		const name = "odd/with space+plus=é&?#%"
		must(b.Put(ctx, name, strings.NewReader("odd"), 3))
		objs, err := b.List(ctx, "odd/")
		must(err)
		if len(objs) != 1 || objs[0].Name != name {
			t.Fatalf("List(odd/) = %+v", objs)
		}
		rc, _, err := b.Get(ctx, name)
		must(err)
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != "odd" {
			t.Fatalf("Get = %q", got)
		}
		must(b.Delete(ctx, name))
	})

	t.Run("listing past one page", func(t *testing.T) {
		// S3 answers at most 1000 keys per request: retention must see
		// every snapshot, not the first page.
		const n = 1005
		sem := make(chan struct{}, 8)
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				errs <- b.Put(ctx, fmt.Sprintf("many/%04d", i), strings.NewReader("x"), 1)
			}()
		}
		for i := 0; i < n; i++ {
			must(<-errs)
		}
		objs, err := b.List(ctx, "many/")
		must(err)
		if len(objs) != n || objs[0].Name != "many/0000" || objs[n-1].Name != fmt.Sprintf("many/%04d", n-1) {
			t.Fatalf("List(many/) = %d objects, want %d", len(objs), n)
		}
	})

	t.Run("bad names", func(t *testing.T) {
		for _, bad := range []string{"", "/abs", "../escape", "a//b", "dir/", "a/./b"} {
			if err := b.Put(ctx, bad, strings.NewReader("x"), 1); err == nil || !strings.Contains(err.Error(), "bad object name") {
				t.Errorf("Put(%q) = %v", bad, err)
			}
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		if err := b.Put(cctx, "cancelled", strings.NewReader("x"), -1); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put with a cancelled context: %v", err)
		}
	})
}

// TestS3Multipart stores 40 MiB in 16 MiB parts, of unknown and of known
// size, and reads back the same bytes; a stream that fails after more than
// one part leaves neither an object nor an open upload.
func TestS3Multipart(t *testing.T) {
	m, bucket := s3Env(t, testtools.MinIOOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	loc, err := Parse(m.URL(bucket, "mp/"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s3ConfigFrom(loc.Query)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Bucket, cfg.Prefix, cfg.PartSize = bucket, "mp", 16<<20
	b, err := NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 40<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	root := m.Client(t)

	for _, tc := range []struct {
		name string
		size int64
	}{{"unknown-size", -1}, {"known-size", int64(len(data))}} {
		t.Run(tc.name, func(t *testing.T) {
			// onlyReader hides bytes.Reader's Seek/ReadAt: a snapshot
			// arrives through a pipe.
			if err := b.Put(ctx, tc.name, onlyReader{bytes.NewReader(data)}, tc.size); err != nil {
				t.Fatal(err)
			}
			info, err := root.StatObject(ctx, bucket, "mp/"+tc.name, minio.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(strings.Trim(info.ETag, `"`), "-3") {
				t.Fatalf("ETag %s: want a 3-part multipart upload", info.ETag)
			}
			rc, size, err := b.Get(ctx, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, rc)
			rc.Close()
			if err != nil || n != int64(len(data)) || size != int64(len(data)) {
				t.Fatalf("read back %d bytes (size %d), %v; want %d", n, size, err, len(data))
			}
			if !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatal("the bytes read back differ from the bytes stored")
			}
		})
	}

	t.Run("failed stream", func(t *testing.T) {
		r := io.MultiReader(bytes.NewReader(data[:20<<20]), failing{})
		err := b.Put(ctx, "broken", r, -1)
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("Put of a failing stream = %v", err)
		}
		if _, _, err := b.Get(ctx, "broken"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a partial object is visible: %v", err)
		}
		for u := range root.ListIncompleteUploads(ctx, bucket, "mp/", true) {
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			t.Fatalf("upload %s of %s left open", u.UploadID, u.Key)
		}
	})
}

func writeFile(name, body string) error { return os.WriteFile(name, []byte(body), 0o600) }

type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// TestS3Errors: each failure names its cause, fast, without secrets.
func TestS3Errors(t *testing.T) {
	m, bucket := s3Env(t, testtools.MinIOOptions{})
	secret := m.SecretKey
	within := func(t *testing.T, limit time.Duration, f func() error) error {
		t.Helper()
		start := time.Now()
		err := f()
		if took := time.Since(start); took > limit {
			t.Fatalf("took %s, want under %s (%v)", took, limit, err)
		}
		return err
	}
	check := func(t *testing.T, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		t.Logf("error: %v", err)
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "wrong-secret-value") {
			t.Errorf("error leaks a secret: %v", err)
		}
	}

	t.Run("missing bucket", func(t *testing.T) {
		_, err := openURL(t, m.URL("no-such-bucket", "x/"))
		check(t, err, `bucket "no-such-bucket" does not exist`, m.Endpoint)
	})
	t.Run("wrong secret", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
		_, err := openURL(t, m.URL(bucket, "x/"))
		check(t, err, "credentials were rejected", "SignatureDoesNotMatch")
	})
	t.Run("unknown access key", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "nobody")
		_, err := openURL(t, m.URL(bucket, "x/"))
		check(t, err, "credentials were rejected", "InvalidAccessKeyId")
	})
	t.Run("shared credentials file", func(t *testing.T) {
		// AWS_PROFILE selects a profile in the shared credentials file.
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		f := t.TempDir() + "/credentials"
		body := fmt.Sprintf("[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong-secret-value\n\n[minio]\naws_access_key_id = %s\naws_secret_access_key = %s\n", m.AccessKey, m.SecretKey)
		if err := writeFile(f, body); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", f)
		t.Setenv("AWS_PROFILE", "minio")
		b, err := openURL(t, m.URL(bucket, "profile/"))
		if err != nil {
			t.Fatalf("open with AWS_PROFILE=minio: %v", err)
		}
		if err := b.Put(context.Background(), "x", strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_PROFILE", "default")
		_, err = openURL(t, m.URL(bucket, "profile/"))
		check(t, err, "credentials were rejected")
	})
	t.Run("endpoint refuses connections", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		err = within(t, 30*time.Second, func() error {
			_, err := openURL(t, "s3://"+bucket+"/x/?insecure=true&endpoint="+url.QueryEscape(addr))
			return err
		})
		check(t, err, "cannot reach the endpoint", addr, "connection refused")
	})
	t.Run("endpoint never answers", func(t *testing.T) {
		// Accepts connections and says nothing: only the probe's
		// deadline ends the wait.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for {
				c, err := ln.Accept()
				if err != nil {
					return // the listener was closed
				}
				conns = append(conns, c)
			}
		}()
		s, err := NewS3(S3Config{Endpoint: ln.Addr().String(), Insecure: true, PathStyle: true, Bucket: bucket, ProbeTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = within(t, 10*time.Second, func() error { return s.Check(context.Background()) })
		check(t, err, "no answer from the endpoint within 2s", ln.Addr().String())
	})
	t.Run("plain http to a name that does not resolve", func(t *testing.T) {
		err := within(t, 30*time.Second, func() error {
			_, err := openURL(t, "s3://"+bucket+"/x/?insecure=true&endpoint=no-such-host.invalid:9000")
			return err
		})
		check(t, err, "cannot reach the endpoint", "no-such-host.invalid")
	})
	t.Run("missing CA file", func(t *testing.T) {
		_, err := openURL(t, "s3://"+bucket+"/x/?endpoint=127.0.0.1:1&ca=/no/such/ca.pem")
		check(t, err, "CA bundle", "/no/such/ca.pem")
	})
}

// TestS3TemporaryCredentials: a session token from the environment, and
// credentials from a container credentials endpoint (the IAM step of the
// chain), both minted by MinIO's own STS AssumeRole; with no credentials
// at all the error says so.
func TestS3TemporaryCredentials(t *testing.T) {
	m, bucket := s3Env(t, testtools.MinIOOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sts, err := credentials.NewSTSAssumeRole("http://"+m.Endpoint, credentials.STSAssumeRoleOptions{
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, DurationSeconds: 900,
	})
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := sts.GetWithContext(&credentials.CredContext{Client: &http.Client{Timeout: 10 * time.Second}})
	if err != nil || tmp.SessionToken == "" {
		t.Fatalf("AssumeRole: %+v, %v", tmp.SessionToken != "", err)
	}
	put := func(t *testing.T, name string) error {
		t.Helper()
		b, err := openURL(t, m.URL(bucket, "tmp/"))
		if err != nil {
			return err
		}
		return b.Put(ctx, name, strings.NewReader(name), -1)
	}

	t.Run("session token from the environment", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", tmp.AccessKeyID)
		t.Setenv("AWS_SECRET_ACCESS_KEY", tmp.SecretAccessKey)
		t.Setenv("AWS_SESSION_TOKEN", tmp.SessionToken)
		if err := put(t, "env"); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_SESSION_TOKEN", "")
		err := put(t, "env-no-token")
		if err == nil || !strings.Contains(err.Error(), "credentials were rejected") {
			t.Fatalf("temporary credentials without their token: %v", err)
		}
		if strings.Contains(err.Error(), tmp.SecretAccessKey) || strings.Contains(err.Error(), tmp.SessionToken) {
			t.Fatalf("error leaks a secret: %v", err)
		}
	})

	t.Run("container credentials endpoint", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "let-me-in" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{
				"AccessKeyId": tmp.AccessKeyID, "SecretAccessKey": tmp.SecretAccessKey,
				"Token": tmp.SessionToken, "Expiration": time.Now().Add(10 * time.Minute).UTC(),
			})
		}))
		t.Cleanup(srv.Close)
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", srv.URL+"/creds")
		t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "let-me-in")
		if err := put(t, "iam"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close()
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		// The IAM step asks a closed local port instead of a metadata
		// service that may or may not answer on this machine.
		t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://"+closed+"/creds")
		err = put(t, "anonymous")
		if err == nil || !strings.Contains(err.Error(), "no credentials were found") {
			t.Fatalf("without credentials: %v", err)
		}
		t.Logf("error: %v", err)
	})

	for _, name := range []string{"env", "iam"} {
		if _, err := m.Client(t).StatObject(ctx, bucket, "tmp/"+name, minio.StatObjectOptions{}); err != nil {
			t.Errorf("object %s: %v", name, err)
		}
	}
}

// TestS3TLS: an https endpoint with a private CA is refused without the
// CA, and works with ?ca= or AWS_CA_BUNDLE.
func TestS3TLS(t *testing.T) {
	m, bucket := s3Env(t, testtools.MinIOOptions{TLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	noCA := "s3://" + bucket + "/tls/?endpoint=" + m.Endpoint
	_, err := openURL(t, noCA)
	if err == nil || !strings.Contains(err.Error(), "TLS certificate is not trusted") {
		t.Fatalf("open without the CA: %v", err)
	}
	t.Logf("error: %v", err)
	b, err := openURL(t, m.URL(bucket, "tls/"))
	if err != nil {
		t.Fatalf("open with ?ca=: %v", err)
	}
	if err := b.Put(ctx, "x", strings.NewReader("over tls"), -1); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", m.CAFile)
	b, err = openURL(t, noCA)
	if err != nil {
		t.Fatalf("open with AWS_CA_BUNDLE: %v", err)
	}
	rc, _, err := b.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "over tls" {
		t.Fatalf("Get = %q", got)
	}
}

// BenchmarkS3Put measures upload throughput to a local MinIO: a 256 MiB
// stream of unknown size (as snapshot create sends it) in 16 MiB parts.
//
//	go test -run '^$' -bench BenchmarkS3Put -benchtime 5x ./internal/storage/
func BenchmarkS3Put(b *testing.B) {
	m := testtools.StartMinIO(b, testtools.MinIOOptions{})
	const bucket = "vetcd-bench"
	m.CreateBucket(b, bucket)
	s, err := NewS3(S3Config{Endpoint: m.Endpoint, Insecure: true, PathStyle: true, Bucket: bucket, Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	b.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	b.Setenv("AWS_SESSION_TOKEN", "")
	data := make([]byte, 256<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		if err := s.Put(ctx, fmt.Sprintf("obj-%d", i), onlyReader{bytes.NewReader(data)}, -1); err != nil {
			b.Fatal(err)
		}
	}
}
