// Package testregistry runs a real OCI registry (distribution's
// `registry`, installed by hack/tools/registry.sh) for the oci:// storage
// tests: one process per test on a free 127.0.0.1 port, with its own
// storage directory and deletes enabled, stopped when the test ends. The
// unit tests of internal/storage and the end-to-end tests share it.
package testregistry

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/vetcd/vetcd/internal/testtools"
)

// Options configure a registry.
type Options struct {
	// Username and Password, when set, protect the registry with htpasswd
	// (basic auth), to test the credentials path.
	Username, Password string
	// NoDelete leaves deletes disabled, as many registries ship.
	NoDelete bool
	// TLSCertFile and TLSKeyFile, when set, serve https with this
	// certificate (PEM files) instead of plain HTTP.
	TLSCertFile, TLSKeyFile string
}

// Registry is a running registry.
type Registry struct {
	// Host is "127.0.0.1:PORT", as an oci:// URL names it.
	Host string
	// Dir is the registry's storage root.
	Dir string
}

// Start starts a registry and registers its stop with t.Cleanup. It skips
// (or fails under VETCD_REQUIRE_TOOLS=1) when the registry is not
// installed.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	bin := testtools.Path(t, "registry")
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between probe and bind
		r, err := start(t, bin, dir, opts)
		if err == nil {
			return r
		}
		lastErr = err
	}
	t.Fatalf("start registry: %v", lastErr)
	return nil
}

func start(t testing.TB, bin, dir string, opts Options) (*Registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	authConf := ""
	if opts.Username != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(opts.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, err
		}
		authConf = fmt.Sprintf("auth:\n  htpasswd:\n    realm: vetcd-test\n    path: %s\n", htpasswd)
	}
	tlsConf, scheme := "", "http"
	if opts.TLSCertFile != "" {
		tlsConf, scheme = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", opts.TLSCertFile, opts.TLSKeyFile), "https"
	}
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: %t
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: vetcd-test-secret
%s%s`, data, !opts.NoDelete, host, tlsConf, authConf)
	confPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}

	var out lockedBuffer
	cmd := exec.Command(bin, "serve", confPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	// No tracing exporter: distribution v3 would try to reach a collector.
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none", "OTEL_SDK_DISABLED=true")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := waitReady(ctx, scheme+"://"+host, exited); err != nil {
		stop()
		return nil, fmt.Errorf("registry on %s: %w\n%s", host, err, out.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("registry %s output:\n%s", host, out.String())
		}
	})
	return &Registry{Host: host, Dir: data}, nil
}

// waitReady polls GET /v2/ until the registry answers (200, or 401 when
// it wants credentials), the process exits, or ctx ends.
func waitReady(ctx context.Context, base string, exited <-chan struct{}) error {
	// Only a readiness probe: whether the certificate verifies is what the
	// tests check, with their own clients.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		last = err
		select {
		case <-exited:
			return errors.New("the registry exited")
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
