package testtools

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdProcess is a stock etcd server (etcd35, etcd36 from hack/tools) run
// as a separate process on 127.0.0.1 with plain http: the deployed etcd
// of the migration tests, or the writer of an old data dir.
type EtcdProcess struct {
	ClientURL string
	Client    *clientv3.Client
	cmd       *exec.Cmd
	done      chan struct{}
	logPath   string
}

func freeURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

// StartEtcdProcess starts the etcd binary bin (find it with Path) as a
// one-member cluster on dataDir and waits until it answers. It is stopped
// with SIGTERM when the test ends, or earlier with Stop.
func StartEtcdProcess(t testing.TB, bin, dataDir string) *EtcdProcess {
	t.Helper()
	cu, pu := freeURL(t), freeURL(t)
	p := &EtcdProcess{ClientURL: cu, done: make(chan struct{}), logPath: filepath.Join(t.TempDir(), "etcd.log")}
	p.cmd = exec.Command(bin, "--name", "deployed", "--data-dir", dataDir,
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "deployed="+pu, "--log-level", "warn")
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() { p.Stop(t) })
	p.Client, err = clientv3.New(clientv3.Config{Endpoints: []string{cu}, Logger: zap.NewNop(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := p.Client.Status(ctx, cu)
		cancel()
		if err == nil {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before answering:\n%s", bin, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering after a minute: %v\n%s", bin, err, p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends the process with SIGTERM (SIGKILL after 20 s) and waits for
// it. It may be called more than once.
func (p *EtcdProcess) Stop(t testing.TB) {
	if p.Client != nil {
		p.Client.Close()
		p.Client = nil
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("etcd did not stop on SIGTERM within 20s; killed")
	}
}

// Log returns what the process wrote.
func (p *EtcdProcess) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprint(err)
	}
	return string(b)
}

// Signal sends sig to the etcd process: SIGSTOP and SIGCONT freeze and
// resume it, a deployed etcd that stops answering without closing its
// connections.
func (p *EtcdProcess) Signal(sig os.Signal) error {
	return p.cmd.Process.Signal(sig)
}
