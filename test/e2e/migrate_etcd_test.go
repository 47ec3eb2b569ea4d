package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

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
				mu.Lock()
				werr = err
				mu.Unlock()
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
	before := count()
	testtools.WaitFor(t, time.Minute, "200 more writes to the source", func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if werr != nil {
			t.Fatalf("writer: %v", werr)
		}
		if n < before+200 {
			return fmt.Errorf("%d more writes acknowledged", n-before)
		}
		return nil
	})
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

// TestMigrateFollowSurvivesStalledSource: vetcd follows a real etcd 3.6
// process holding a key on a 5 s lease that a client of the source keeps
// alive (kube-apiserver's master lease). The source stops answering for
// 12 s (SIGSTOP) and resumes. That is no cut-over: the source's next write
// reaches vetcd with its revision and the marker still says following.
// Then a client's write to vetcd is the cut-over.
func TestMigrateFollowSurvivesStalledSource(t *testing.T) {
	p := testtools.StartEtcdProcess(t, testtools.Path(t, "etcd36"), filepath.Join(t.TempDir(), "deployed"))
	src := p.Client
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := range 100 {
		if _, err := src.Put(ctx, fmt.Sprintf("/registry/pods/ns/p%04d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	keeper, err := clientv3.New(clientv3.Config{Endpoints: []string{p.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer keeper.Close()
	lease, err := keeper.Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keeper.Put(ctx, "/registry/masterleases/10.0.0.1", "ip", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	kctx, kcancel := context.WithCancel(ctx)
	kch, err := keeper.KeepAlive(kctx, lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	kdone := make(chan struct{})
	go func() {
		defer close(kdone)
		for range kch {
		}
	}()
	defer func() { kcancel(); <-kdone }()

	cfg := filepath.Join(t.TempDir(), "vetcd.yaml")
	if err := os.WriteFile(cfg, []byte("migrateFromDeployedEtcd: true\nmigrateFrom:\n  endpoints: ["+p.ClientURL+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startUp(t, filepath.Join(t.TempDir(), "c"), freeBasePort(t, 1), 1, "--config", cfg)
	c.requireSettled(1)
	cli := c.client(1)

	// copied waits until vetcd holds key as the source wrote it at rev.
	copied := func(key string, rev int64, timeout time.Duration) {
		t.Helper()
		testtools.WaitFor(t, timeout, fmt.Sprintf("source write %s at revision %d in vetcd", key, rev), func(cctx context.Context) error {
			r, err := cli.Get(cctx, key)
			if err == nil && len(r.Kvs) == 1 && r.Kvs[0].ModRevision == rev {
				return nil
			}
			m, ok, merr := migrate.ReadEtcdMarker(cctx, cli)
			return fmt.Errorf("vetcd has %v, err %v; marker %+v ok %t err %v", r, err, m, ok, merr)
		})
	}
	before, err := src.Put(ctx, "/registry/before", "b")
	if err != nil {
		t.Fatal(err)
	}
	copied("/registry/before", before.Header.Revision, time.Minute)

	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The stall is the fault: it must outlast the master lease's TTL, and
	// while the source is stopped there is no event to await.
	time.Sleep(12 * time.Second)
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var after *clientv3.PutResponse
	testtools.WaitFor(t, 30*time.Second, "the resumed source takes a write", func(pctx context.Context) error {
		var err error
		after, err = src.Put(pctx, "/registry/after", "a")
		return err
	})
	copied("/registry/after", after.Header.Revision, 30*time.Second)
	m, ok, err := migrate.ReadEtcdMarker(ctx, cli)
	if err != nil || !ok || m.State != migrate.StateFollowing {
		t.Fatalf("marker %+v ok %t err %v: want following", m, ok, err)
	}
	if v := c.metric(0, "vetcd_migrate_follow_broken"); v != 0 {
		t.Fatalf("vetcd_migrate_follow_broken = %v", v)
	}

	// A client's write to vetcd is the cut-over.
	if _, err := cli.Put(ctx, "/registry/own", "o"); err != nil {
		t.Fatal(err)
	}
	testtools.WaitFor(t, 30*time.Second, "the cut-over after a client's write to vetcd", func(context.Context) error {
		m, ok, err = migrate.ReadEtcdMarker(ctx, cli)
		if err != nil || !ok || m.State != migrate.StateDone {
			return fmt.Errorf("marker %+v ok %t err %v", m, ok, err)
		}
		return nil
	})
	t.Logf("followed through a 12 s source stall (source revision %d copied); cut over: %s", after.Header.Revision, m.Reason)
}
