package testtools

import (
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// StartEmbedded runs a one-member etcd in dir with plain http on free
// ports, and returns it with its client URL. It is closed when the test
// ends.
func StartEmbedded(t testing.TB, dir string) (*embed.Etcd, string) {
	t.Helper()
	e, url, _ := StartEmbeddedStop(t, dir)
	return e, url
}

// StartEmbeddedStop is StartEmbedded with a stop function, for a test that
// stops the member before it ends (to restart on the same data); stopping
// twice, or again when the test ends, is harmless.
func StartEmbeddedStop(t testing.TB, dir string) (*embed.Etcd, string, func()) {
	t.Helper()
	free := func() url.URL {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return url.URL{Scheme: "http", Host: ln.Addr().String()}
	}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cu, pu := free(), free()
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ListenMetricsUrls = nil
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(e.Close) }
	t.Cleanup(stop)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("embedded etcd not ready within 30s")
	}
	return e, cu.String(), stop
}

// EmbeddedClient is StartEmbedded with a client of the member, closed when
// the test ends.
func EmbeddedClient(t testing.TB, dir string) (*embed.Etcd, *clientv3.Client) {
	t.Helper()
	e, url := StartEmbedded(t, dir)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return e, cli
}
