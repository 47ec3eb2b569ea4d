package replica

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zaptest"
)

// etcd's file purger calls lg.Fatal when the data dir is deleted under a
// running member. With vetcd's logger that ends only the purger's
// goroutine: the replica is told, the process lives on, and the member
// still stops and closes (nothing waits for the ended goroutine).
func TestPurgeFatalEndsOnlyThePurger(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out etcd's 30 s purge interval")
	}
	dir := filepath.Join(t.TempDir(), "data")
	lost := make(chan string, 1)
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(etcdLogger(zaptest.NewLogger(t), func(why string) { lost <- why }))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		closeUnready(e)
		t.Fatal("etcd not ready")
	}
	must(t, os.RemoveAll(dir))
	select {
	case why := <-lost:
		t.Logf("purger reported: %s", why)
	case <-time.After(45 * time.Second):
		e.Close()
		t.Fatal("etcd's purger did not report the deleted data dir within 45s")
	}
	closed := make(chan struct{})
	go func() {
		e.Server.Stop()
		e.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the member did not stop within 30s after its purger ended")
	}
}

// Any other Fatal of etcd still exits the process: it may come from a
// goroutine that holds locks, and etcd must not go on without it.
func TestOtherEtcdFatalExits(t *testing.T) {
	if os.Getenv("VETCD_TEST_FATAL") == "1" {
		etcdLogger(zaptest.NewLogger(t), func(string) { t.Error("dataLost called") }).Fatal("failed to save Raft hard state and entries")
		return // not reached
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOtherEtcdFatalExits$")
	cmd.Env = append(os.Environ(), "VETCD_TEST_FATAL=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit code 1, got %v\n%s", err, out)
	}
}

// etcd's panic on a removed member's IsLearner ends only the goroutine that
// asked (a client request); any other panic of etcd is still a panic.
func TestRemovedPanicEndsOnlyTheRequest(t *testing.T) {
	lg := etcdLogger(zaptest.NewLogger(t), func(string) {})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		lg.Panic("failed to find local ID in cluster members")
		t.Error("Panic returned")
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("goroutine did not end")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("another panic of etcd did not panic")
		}
	}()
	lg.Panic("failed to unmarshal")
}
