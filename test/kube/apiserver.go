// Package kube runs a real kube-apiserver for tests: the topology source
// reads a StatefulSet from it, and it runs on top of a vetcd cluster as its
// storage. The binary is built by hack/tools/kube-apiserver.sh (found with
// testtools.Path). A kube-apiserver alone has no controllers: tests create
// and delete pod objects themselves, acting as the StatefulSet controller
// and the kubelet.
package kube

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/vetcd/vetcd/internal/testtools"
)

// Options configure a kube-apiserver.
type Options struct {
	// EtcdServers are the storage endpoints; empty starts an in-process
	// etcd (plain http on 127.0.0.1) for the test.
	EtcdServers []string
	// EtcdCAFile, EtcdCertFile and EtcdKeyFile are the client TLS files
	// for https EtcdServers.
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	// RBAC turns on the RBAC authorizer (default: AlwaysAllow). The test's
	// admin user is in system:masters either way.
	RBAC bool
	// Users maps extra bearer tokens to user names, e.g.
	// "system:serviceaccount:ns:vetcd" to act as a service account that
	// RBAC role bindings name; see KubeconfigFor.
	Users map[string]string
}

// APIServer is a running kube-apiserver, stopped when the test ends.
type APIServer struct {
	// URL is https://127.0.0.1:<port>.
	URL string
	// Kubeconfig is a kubeconfig file for it (bearer token, its serving
	// certificate as CA).
	Kubeconfig string
	// Config is the client config of Kubeconfig.
	Config *rest.Config
	// Client is a clientset for it.
	Client kubernetes.Interface
	// Log is the kube-apiserver's output file.
	Log string

	cmd     *exec.Cmd
	done    chan struct{}
	certDir string
}

// token is the bearer token of the test's admin user.
const token = "vetcd-test-token"

// Start runs a kube-apiserver and waits until /readyz answers ok.
func Start(t testing.TB, opts Options) *APIServer {
	t.Helper()
	bin := testtools.Path(t, "kube-apiserver")
	dir := t.TempDir()
	if len(opts.EtcdServers) == 0 {
		opts.EtcdServers = []string{startEtcd(t, filepath.Join(dir, "etcd"))}
	}
	saKey := filepath.Join(dir, "sa.key")
	saPub := filepath.Join(dir, "sa.pub")
	writeServiceAccountKey(t, saKey, saPub)
	tokens := filepath.Join(dir, "tokens.csv")
	lines := token + `,vetcd-test,vetcd-test,"system:masters"` + "\n"
	for tok, user := range opts.Users {
		lines += tok + "," + user + "," + user + "\n"
	}
	if err := os.WriteFile(tokens, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	authz := "AlwaysAllow"
	if opts.RBAC {
		authz = "RBAC"
	}
	certDir := filepath.Join(dir, "certs")
	port := freePort(t)
	args := []string{
		"--etcd-servers=" + strings.Join(opts.EtcdServers, ","),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--authorization-mode=" + authz,
		"--token-auth-file=" + tokens,
		"--secure-port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The "kubernetes" Service's endpoints may not be loopback; no
		// test needs them.
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + certDir,
		"--service-cluster-ip-range=10.96.0.0/16",
		// No controller-manager creates the "default" service accounts
		// the ServiceAccount admission plugin wants for every pod.
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		// Reconnect to storage quickly after a member goes away.
		"--etcd-healthcheck-timeout=2s",
		"--etcd-readycheck-timeout=2s",
	}
	if opts.EtcdCAFile != "" {
		args = append(args, "--etcd-cafile="+opts.EtcdCAFile, "--etcd-certfile="+opts.EtcdCertFile, "--etcd-keyfile="+opts.EtcdKeyFile)
	}
	logPath := filepath.Join(dir, "kube-apiserver.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	s := &APIServer{URL: "https://127.0.0.1:" + strconv.Itoa(port), Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("kube-apiserver log (last lines):\n%s", tailFile(logPath, 40))
		}
	})
	s.waitReady(t, certDir, 90*time.Second)
	s.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*s.kubeconfig(t, certDir), s.Kubeconfig); err != nil {
		t.Fatal(err)
	}
	s.Config, err = clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	s.Client, err = kubernetes.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	s.certDir = certDir
	return s
}

// KubeconfigFor writes a kubeconfig that authenticates with tok (one of
// Options.Users) and returns its path.
func (s *APIServer) KubeconfigFor(t testing.TB, tok string) string {
	t.Helper()
	cfg := s.kubeconfig(t, s.certDir)
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: tok}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// stop sends SIGTERM and kills after 15s.
func (s *APIServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Exited reports whether the process has exited.
func (s *APIServer) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// waitReady polls /readyz until it answers 200.
func (s *APIServer) waitReady(t testing.TB, certDir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if s.Exited() {
			t.Fatalf("kube-apiserver exited before it was ready; log:\n%s", tailFile(s.Log, 40))
		}
		code, body, err := s.Get("/readyz")
		if err == nil && code == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s %v", code, body, err)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("kube-apiserver not ready within %s: %s; log:\n%s", timeout, last, tailFile(s.Log, 40))
}

// Get requests path with the admin token (certificate not verified: it
// is for probes only) and returns the status code and body.
func (s *APIServer) Get(path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a probe of a test server
	}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return resp.StatusCode, b.String(), nil
}

// kubeconfig builds a kubeconfig trusting the self-signed serving
// certificate the apiserver wrote to certDir.
func (s *APIServer) kubeconfig(t testing.TB, certDir string) *clientcmdapi.Config {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		t.Fatalf("kube-apiserver serving certificate: %v", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: s.URL, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	return cfg
}

// startEtcd runs an in-process etcd for the apiserver and returns its
// client URL.
func startEtcd(t testing.TB, dir string) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(freePort(t)))
	pu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(freePort(t)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd for kube-apiserver: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd for kube-apiserver not ready within 30s")
	}
	return cu.String()
}

// writeServiceAccountKey writes an ECDSA key pair for service account
// tokens.
func writeServiceAccountKey(t testing.TB, keyPath, pubPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor is testtools.WaitFor, kept so that tests of this package and
// its users wait one way: it fails the test with what, the timeout and
// cond's last error.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	testtools.WaitFor(t, timeout, what, cond)
}
