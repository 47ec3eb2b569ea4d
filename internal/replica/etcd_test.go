package replica

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/pki"
)

// TestReleaseUnreadyFreesDataAndPorts: the publish restart (startEtcd's
// watchPublish) must be able to start etcd again on the same data dir and
// ports the moment releaseUnready returns, while embed's Close finishes in
// the background. Without the listeners closed the new start fails to
// bind; without the server stopped it blocks on the db's lock.
func TestReleaseUnreadyFreesDataAndPorts(t *testing.T) {
	tr := newTestReplica(t, t.TempDir(), nil)
	r, err := New(tr.cfg, Options{Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := func(spec startSpec) *embed.Etcd {
		t.Helper()
		type result struct {
			e   *embed.Etcd
			err error
		}
		done := make(chan result, 1)
		go func() {
			e, err := r.startEtcd(ctx, spec)
			done <- result{e, err}
		}()
		select {
		case res := <-done:
			if res.err != nil {
				t.Fatal(res.err)
			}
			return res.e
		case <-time.After(60 * time.Second):
			cancel()
			t.Fatal("etcd did not start within 60s")
			return nil
		}
	}
	tlsConfig, err := pki.ClientConfig(tr.tls.CA, tr.tls.ClientCert, tr.tls.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	client := func() *clientv3.Client {
		t.Helper()
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tr.cfg.ClientURL}, TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		return cli
	}

	e := start(startSpec{waitReady: true})
	cli := client()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	cli.Close()

	r.releaseUnready(e)
	e = start(startSpec{waitReady: true, skipInitialCorruptCheck: true})
	defer e.Close()
	cli = client()
	defer cli.Close()
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after the restart k = %v, want v", resp.Kvs)
	}

	closed := make(chan struct{})
	go func() { r.closing.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the released member's Close did not finish within 30s")
	}
}
