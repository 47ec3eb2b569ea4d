package vetcd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd"
	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/topology"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestStartLibrary runs one replica in this process, the way a
// control-plane binary embeds vetcd, and talks to it over mTLS.
func TestStartLibrary(t *testing.T) {
	dir := t.TempDir()
	files, err := pki.Ensure(filepath.Join(dir, "pki"), pki.LocalOptions())
	if err != nil {
		t.Fatal(err)
	}
	url := func() string { return fmt.Sprintf("https://127.0.0.1:%d", freePort(t)) }
	self := topology.Replica{Name: "vetcd-0", Ordinal: 0, ClientURL: url(), PeerURL: url(), AgentURL: url()}
	topo := filepath.Join(dir, "topology.json")
	if err := topology.UpdateFile(topo, func(f *topology.File) error {
		f.Desired, f.Replicas = 1, []topology.Replica{self}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	cfg := vetcd.DefaultConfig()
	cfg.Name = self.Name
	cfg.DataDir = filepath.Join(dir, "vetcd-0", "data")
	cfg.ClientURL, cfg.PeerURL, cfg.AgentURL = self.ClientURL, self.PeerURL, self.AgentURL
	cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile = files.CA, files.MemberCert, files.MemberKey
	cfg.Topology.File = topo

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := vetcd.Start(ctx, cfg, vetcd.WithLogger(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Ready():
	case <-ctx.Done():
		t.Fatal("replica not ready within a minute")
	}
	tlsConfig, err := pki.ClientConfig(files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{r.ClientURL()}, TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	if resp, err := cli.Get(ctx, "k"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
	if err := r.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// A second Shutdown is harmless.
	if err := r.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}

func TestStartDisabled(t *testing.T) {
	cfg := vetcd.DefaultConfig()
	off := false
	cfg.Enabled = &off
	if _, err := vetcd.Start(context.Background(), cfg); !errors.Is(err, vetcd.ErrDisabled) {
		t.Fatalf("Start with enabled: false = %v, want ErrDisabled", err)
	}
}
