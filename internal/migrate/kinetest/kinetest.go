// Package kinetest runs a real kine (github.com/k3s-io/kine, as a library,
// on a SQLite file) for tests, and drives it with a Kubernetes-like
// workload through an etcd client. Only tests import it: kine links every
// storage driver and must never be part of the vetcd binary.
package kinetest

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/k3s-io/kine/pkg/drivers/generic"
	"github.com/k3s-io/kine/pkg/endpoint"
	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Want is a live key as kine serves it.
type Want struct {
	Value string
	// TTL is the lease TTL (kine's lease ID is its TTL); 0 without one.
	TTL int64
}

// Kine is a running kine.
type Kine struct {
	Client *clientv3.Client
	cancel context.CancelFunc
	wg     *sync.WaitGroup
	once   sync.Once
}

// config is kine's CLI defaults (pkg/app) for the intervals and sizes:
// zero values misbehave (a zero poll interval spins, a zero batch size
// reads nothing).
func config(dbPath, listen string) endpoint.Config {
	return endpoint.Config{
		Listener: listen,
		Endpoint: "sqlite://" + dbPath + "?_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate",
		ConnectionPoolConfig: generic.ConnectionPoolConfig{
			MaxIdle:     20,
			MaxIdleTime: 2 * time.Minute,
		},
		NotifyInterval:      5 * time.Second,
		EmulatedETCDVersion: "3.6.11",
		CompactInterval:     0, // kine's default: compaction only when asked
		CompactTimeout:      5 * time.Second,
		CompactMinRetain:    1000,
		CompactBatchSize:    1000,
		PollBatchSize:       500,
		PollInterval:        time.Second,
		LogFormat:           "plain",
	}
}

// Start runs kine on the SQLite file dbPath (created if missing) on a
// free 127.0.0.1 port; it is stopped when the test ends, or by Stop.
func Start(t testing.TB, dbPath string) *Kine {
	t.Helper()
	logrus.SetOutput(io.Discard)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := config(dbPath, addr)
	cfg.WaitGroup = &sync.WaitGroup{}
	etcd, err := endpoint.Listen(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start kine: %v", err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	k := &Kine{Client: cli, cancel: cancel, wg: cfg.WaitGroup}
	t.Cleanup(k.Stop)
	return k
}

// Stop stops kine and waits until it closed its database.
func (k *Kine) Stop() {
	k.once.Do(func() {
		k.Client.Close()
		k.cancel()
		done := make(chan struct{})
		go func() { k.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	})
}

func value(kind string, i, gen int) string {
	// Kubernetes stores protobuf with a "k8s\x00" prefix: binary bytes.
	return fmt.Sprintf("k8s\x00%s-%d-gen%d-", kind, i, gen) + strings.Repeat(string(rune('a'+i%26)), 64+i%300)
}

// Create stores key like the apiserver: a txn on mod revision 0.
func Create(ctx context.Context, cli *clientv3.Client, key, val string, lease clientv3.LeaseID) error {
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = append(opts, clientv3.WithLease(lease))
	}
	r, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).Then(clientv3.OpPut(key, val, opts...)).Commit()
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	if !r.Succeeded {
		return fmt.Errorf("create %s: exists", key)
	}
	return nil
}

// Update replaces key like the apiserver: a txn guarded by the mod
// revision read before; it reports whether the guard held.
func Update(ctx context.Context, cli *clientv3.Client, key, val string, modRev int64) (bool, error) {
	r, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
		Then(clientv3.OpPut(key, val)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return false, fmt.Errorf("update %s: %w", key, err)
	}
	return r.Succeeded, nil
}

// Delete deletes key like the apiserver: a txn guarded by mod revision.
func Delete(ctx context.Context, cli *clientv3.Client, key string, modRev int64) (bool, error) {
	r, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
		Then(clientv3.OpDelete(key)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	return r.Succeeded, nil
}

// Workload drives kine like a Kubernetes apiserver: creates, guarded
// updates (one with a stale revision that must fail), guarded deletes,
// TTL keys on leases (Events), and a compaction past kine's retention. It
// returns kine's live set under /registry/ as the workload expects it.
func Workload(t testing.TB, cli *clientv3.Client) map[string]Want {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	want := map[string]Want{}
	const n = 600
	for i := range n {
		k := fmt.Sprintf("/registry/configmaps/ns%d/cm-%04d", i%5, i)
		v := value("cm", i, 0)
		if err := Create(ctx, cli, k, v, 0); err != nil {
			t.Fatal(err)
		}
		want[k] = Want{Value: v}
	}
	// Two rounds of guarded updates on most keys: kine's rows pile up.
	for gen := 1; gen <= 2; gen++ {
		for i := 0; i < n; i += 1 + gen%2 {
			k := fmt.Sprintf("/registry/configmaps/ns%d/cm-%04d", i%5, i)
			g, err := cli.Get(ctx, k)
			if err != nil || len(g.Kvs) != 1 {
				t.Fatalf("get %s: %v %v", k, err, g)
			}
			v := value("cm", i, gen)
			ok, err := Update(ctx, cli, k, v, g.Kvs[0].ModRevision)
			if err != nil || !ok {
				t.Fatalf("update %s: %v %v", k, ok, err)
			}
			want[k] = Want{Value: v}
			if i == 10 {
				// A stale guard must fail, as in etcd.
				if ok, err := Update(ctx, cli, k, "stale", g.Kvs[0].ModRevision); err != nil || ok {
					t.Fatalf("stale update of %s succeeded (%v) or failed oddly: %v", k, ok, err)
				}
			}
		}
	}
	for i := 0; i < n; i += 7 {
		k := fmt.Sprintf("/registry/configmaps/ns%d/cm-%04d", i%5, i)
		g, err := cli.Get(ctx, k)
		if err != nil || len(g.Kvs) != 1 {
			t.Fatalf("get %s: %v", k, err)
		}
		if ok, err := Delete(ctx, cli, k, g.Kvs[0].ModRevision); err != nil || !ok {
			t.Fatalf("delete %s: %v %v", k, ok, err)
		}
		delete(want, k)
	}
	// Events on leases, as the apiserver writes them (TTL 1h), and a few
	// with another TTL.
	for _, ttl := range []int64{3600, 7200} {
		l, err := cli.Grant(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 40 {
			k := fmt.Sprintf("/registry/events/ns%d/ev-%d-%03d", i%3, ttl, i)
			v := value("ev", i, 0)
			if err := Create(ctx, cli, k, v, l.ID); err != nil {
				t.Fatal(err)
			}
			want[k] = Want{Value: v, TTL: ttl}
		}
	}
	// Compaction: the apiserver's compact txn, then a Compact below
	// kine's retention window, which deletes superseded rows.
	g, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	rev := g.Header.Revision
	if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("compact_rev_key"), "=", 0)).
		Then(clientv3.OpPut("compact_rev_key", fmt.Sprint(rev))).Else(clientv3.OpGet("compact_rev_key")).Commit(); err != nil {
		t.Fatalf("apiserver compact txn: %v", err)
	}
	if _, err := cli.Compact(ctx, rev-5); err != nil {
		t.Fatalf("compact: %v", err)
	}
	return want
}

// Live reads kine's live keys under /registry/ with their lease TTLs.
func Live(t testing.TB, cli *clientv3.Client) (map[string]Want, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]Want{}
	for _, kv := range r.Kvs {
		live[string(kv.Key)] = Want{Value: string(kv.Value), TTL: kv.Lease}
	}
	return live, r.Header.Revision
}
