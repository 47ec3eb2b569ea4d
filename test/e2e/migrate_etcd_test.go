package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vetcd/vetcd/internal/migrate"
	"github.com/vetcd/vetcd/internal/testtools"
)

// TestMigrateFromDeployedEtcd: `vetcd up --config` with
// migrateFromDeployedEtcd founds a 3-replica cluster from a real etcd
// 3.6.16 process while a writer keeps writing to it; the other replicas
// join as learners; `vetcd migrate --from etcd://…` catches up and cuts
// over. Every key and every acknowledged write is in vetcd with the
// source's mod revision.
func TestMigrateFromDeployedEtcd(t *testing.T) {
	p := testtools.StartEtcdProcess(t, testtools.Path(t, "etcd36"), filepath.Join(t.TempDir(), "deployed"))
	src := p.Client
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := range 2000 {
		if _, err := src.Put(ctx, fmt.Sprintf("/registry/pods/ns/p%04d", i), strings.Repeat("v", 200)); err != nil {
			t.Fatal(err)
		}
	}

	// A writer on the source for the whole migration.
	type ack struct {
		val string
		rev int64
	}
	var mu sync.Mutex
	acks := map[string]ack{}
	n := 0
	var werr error
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key, val := fmt.Sprintf("/registry/leases/l%03d", i%100), fmt.Sprint("v", i)
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := src.Put(wctx, key, val)
			wcancel()
			if err != nil {
				werr = err
				return
			}
			mu.Lock()
			acks[key] = ack{val, resp.Header.Revision}
			n++
			mu.Unlock()
		}
	}()
	halt := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}
	t.Cleanup(halt)
	count := func() int { mu.Lock(); defer mu.Unlock(); return n }

	cfg := filepath.Join(t.TempDir(), "vetcd.yaml")
	if err := os.WriteFile(cfg, []byte("migrateFromDeployedEtcd: true\nmigrateFrom:\n  endpoints: ["+p.ClientURL+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 3), 3, "--config", cfg)
	c.requireSettled(3)
	for before := count(); count() < before+200; {
		time.Sleep(10 * time.Millisecond)
	}
	halt()
	if werr != nil {
		t.Fatalf("writer: %v", werr)
	}

	out, err := vetcd(t, 2*time.Minute, "migrate", "--from", "etcd://"+strings.TrimPrefix(p.ClientURL, "http://"), "--dir", dir)
	if err != nil || !strings.Contains(out, "cut over at source revision") {
		t.Fatalf("vetcd migrate (cut-over): %v\n%s", err, out)
	}
	final, err := src.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	cli := c.client(3)
	got, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != len(final.Kvs) {
		t.Fatalf("vetcd has %d keys, the source %d", len(got.Kvs), len(final.Kvs))
	}
	byKey := map[string]int{}
	for i, s := range final.Kvs {
		g := got.Kvs[i]
		if string(g.Key) != string(s.Key) || string(g.Value) != string(s.Value) || g.ModRevision != s.ModRevision || g.CreateRevision != s.CreateRevision {
			t.Fatalf("key %s: vetcd %+v, source %+v", s.Key, g, s)
		}
		byKey[string(s.Key)] = i
	}
	mu.Lock()
	for key, a := range acks {
		i, ok := byKey[key]
		if !ok || string(got.Kvs[i].Value) != a.val || got.Kvs[i].ModRevision != a.rev {
			t.Fatalf("acknowledged write %s=%s at %d not in vetcd as written", key, a.val, a.rev)
		}
	}
	t.Logf("%d keys, %d acknowledged writes during the migration, source revision %d", len(got.Kvs), n, final.Header.Revision)
	mu.Unlock()
	m, ok, err := migrate.ReadEtcdMarker(ctx, cli)
	if err != nil || !ok || m.State != migrate.StateDone || m.Revision != final.Header.Revision {
		t.Fatalf("marker %+v ok %t err %v", m, ok, err)
	}

	// A second cut-over is refused and changes nothing.
	out, err = vetcd(t, time.Minute, "migrate", "--from", "etcd://"+strings.TrimPrefix(p.ClientURL, "http://"), "--dir", dir)
	if exitCode(err) != 2 || !strings.Contains(out, "cut over already") {
		t.Fatalf("second cut-over: %v\n%s", err, out)
	}
}

// TestMigrateFromUnreachableEtcd: a source that does not answer is a clear
// error with exit code 2, and the cluster is unchanged.
func TestMigrateFromUnreachableEtcd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 1), 1)
	cli := c.client(1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	out, err := vetcd(t, time.Minute, "migrate", "--from", "etcd://"+dead, "--dir", dir)
	if exitCode(err) != 2 || !strings.Contains(out, "unreachable") || !strings.Contains(out, dead) || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("unreachable source: %v\n%s", err, out)
	}
	after, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil || after.Header.Revision != before.Header.Revision || after.Count != before.Count {
		t.Fatalf("cluster changed: revision %d -> %d, keys %d -> %d (%v)", before.Header.Revision, after.Header.Revision, before.Count, after.Count, err)
	}
}
