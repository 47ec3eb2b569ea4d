package testtools

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/vetcd/vetcd/internal/pki"
)

// MinIO is a real MinIO server started for one test on 127.0.0.1, with a
// temporary data dir and random root credentials. It is stopped when the
// test ends.
type MinIO struct {
	// Endpoint is host:port.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// CAFile is the PEM CA that signed the server certificate when the
	// server speaks TLS; empty for plain http.
	CAFile string
}

// MinIOOptions tunes StartMinIO.
type MinIOOptions struct {
	// TLS serves https with a certificate for 127.0.0.1 and localhost
	// signed by a fresh CA (MinIO.CAFile).
	TLS bool
}

// StartMinIO starts MinIO (installed by hack/tools/minio.sh) and waits,
// with a deadline, until /minio/health/live answers. A missing binary
// skips or fails the test as Path does.
func StartMinIO(t testing.TB, opts MinIOOptions) *MinIO {
	t.Helper()
	bin := Path(t, "minio")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port may be taken between probe and bind
		m, err := startMinIO(t, bin, opts)
		if err == nil {
			return m
		}
		lastErr = err
	}
	t.Fatalf("start minio: %v", lastErr)
	return nil
}

func startMinIO(t testing.TB, bin string, opts MinIOOptions) (*MinIO, error) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return nil, err
	}
	m := &MinIO{AccessKey: "test-" + randHex(t, 6), SecretKey: randHex(t, 20)}
	scheme := "http"
	var clientTLS *tls.Config
	if opts.TLS {
		ca, err := writeMinIOCerts(certs)
		if err != nil {
			return nil, err
		}
		m.CAFile = ca
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(ca)
		pool.AppendCertsFromPEM(pem)
		clientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	m.Endpoint = fmt.Sprintf("127.0.0.1:%d", ports[0])
	logf, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "server", filepath.Join(dir, "data"),
		"--address", m.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--certs-dir", certs, "--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}

	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS}}
	live := scheme + "://" + m.Endpoint + "/minio/health/live"
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get(live)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("%s: %s", live, resp.Status)
		}
		select {
		case werr := <-exited:
			exited <- werr
			out, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("minio exited (%v) before it was ready: %s", werr, tailLines(string(out), 20))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("minio not ready within 60s: %v", err)
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("minio log (tail):\n%s", tailLines(string(out), 30))
		}
	})
	return m, nil
}

// CreateBucket makes a bucket with the root credentials.
func (m *MinIO) CreateBucket(t testing.TB, name string) {
	t.Helper()
	c := m.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// Client is a minio-go client with the root credentials, for tests that
// look at the server behind a backend's back.
func (m *MinIO) Client(t testing.TB) *minio.Client {
	t.Helper()
	tr, err := minio.DefaultTransport(m.CAFile != "")
	if err != nil {
		t.Fatal(err)
	}
	if m.CAFile != "" {
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(m.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig.RootCAs = pool
	}
	c, err := minio.New(m.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		Secure:       m.CAFile != "",
		Transport:    tr,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// SetEnv points the standard AWS credential variables at this server for
// the rest of the test (and for processes it starts), and clears the
// ones that would compete with them.
func (m *MinIO) SetEnv(t testing.TB) {
	t.Helper()
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	// No shared files from the machine's user.
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "no-aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "no-aws-credentials"))
}

// URL is the s3:// URL of key in bucket on this server: key may end in
// "/" to name a prefix.
func (m *MinIO) URL(bucket, key string) string {
	q := url.Values{"endpoint": {m.Endpoint}}
	if m.CAFile != "" {
		q.Set("ca", m.CAFile)
	} else {
		q.Set("insecure", "true")
	}
	return "s3://" + bucket + "/" + key + "?" + q.Encode()
}

// writeMinIOCerts writes a CA and a server certificate for 127.0.0.1 into
// certs as MinIO expects (public.crt, private.key) and returns the CA's path.
func writeMinIOCerts(certs string) (string, error) {
	now := time.Now()
	caCert, caKey, err := pki.NewCA("vetcd test MinIO CA", 24*time.Hour, now)
	if err != nil {
		return "", err
	}
	crt, key, err := pki.NewLeaf(caCert, caKey, "127.0.0.1", true, false, pki.Options{
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Validity: 24 * time.Hour,
	}, now)
	if err != nil {
		return "", err
	}
	ca := filepath.Join(filepath.Dir(certs), "ca.pem")
	for name, data := range map[string][]byte{ca: caCert, filepath.Join(certs, "public.crt"): crt, filepath.Join(certs, "private.key"): key} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return "", err
		}
	}
	return ca, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
