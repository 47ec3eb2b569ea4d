package replica

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/migrate"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/testtools"
	"github.com/vetcd/vetcd/internal/topology"
)

// embedSource runs a deployed etcd 3.7 in this process.
func embedSource(t *testing.T) (string, *clientv3.Client) {
	e, cli := testtools.EmbeddedClient(t, t.TempDir())
	return e.Config().AdvertiseClientUrls[0].String(), cli
}

// TestFoundFromDeployedEtcd: a founding replica with
// migrateFromDeployedEtcd restores the deployed etcd's snapshot before it
// reports ready and follows its writes until cut-over; every acknowledged
// write, including those made during the migration, is in vetcd with the
// same mod revision. A write of vetcd's own cuts over, and a restart
// neither migrates nor follows again.
func TestFoundFromDeployedEtcd(t *testing.T) {
	sources := []struct {
		name  string
		start func(t *testing.T) (string, *clientv3.Client)
	}{
		{"etcd 3.7 embedded", embedSource},
		{"etcd 3.6.16 process", func(t *testing.T) (string, *clientv3.Client) {
			p := testtools.StartEtcdProcess(t, testtools.Path(t, "etcd36"), filepath.Join(t.TempDir(), "src"))
			return p.ClientURL, p.Client
		}},
		{"etcd 3.5.35 process", func(t *testing.T) (string, *clientv3.Client) {
			p := testtools.StartEtcdProcess(t, testtools.Path(t, "etcd35"), filepath.Join(t.TempDir(), "src"))
			return p.ClientURL, p.Client
		}},
	}
	for _, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			srcURL, src := s.start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			for i := range 1000 {
				if _, err := src.Put(ctx, fmt.Sprintf("/registry/pre/%04d", i), fmt.Sprint("p", i)); err != nil {
					t.Fatal(err)
				}
			}
			w := testtools.StartWriter(t, src, testtools.WriterOptions{Keys: 200, DeleteEvery: 9})
			dir := t.TempDir()
			tr := newTestReplica(t, dir, func(c *config.Config) {
				c.MigrateFromDeployedEtcd = true
				c.MigrateFrom.Endpoints = []string{srcURL}
			})
			tr.start(t)
			cli := tr.ready(t)
			// A lease with 300 keys expires while vetcd follows: one source
			// revision deleting them all, copied as one txn.
			events, err := src.Grant(ctx, 600)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 300 {
				if _, err := src.Put(ctx, fmt.Sprintf("/registry/events/e%03d", i), "e", clientv3.WithLease(events.ID)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := src.Revoke(ctx, events.ID); err != nil {
				t.Fatal(err)
			}
			w.WaitCount(t, w.Count()+300, time.Minute)
			w.Halt()
			final, err := src.Get(ctx, "/registry/", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			var got *clientv3.GetResponse
			testtools.WaitFor(t, time.Minute, "vetcd caught up to the source", func(context.Context) error {
				var err error
				got, err = cli.Get(ctx, "/registry/", clientv3.WithPrefix())
				if err != nil {
					return err
				}
				if got.Header.Revision != final.Header.Revision {
					return fmt.Errorf("vetcd at revision %d, source at %d", got.Header.Revision, final.Header.Revision)
				}
				return nil
			})
			if len(got.Kvs) != len(final.Kvs) {
				t.Fatalf("vetcd has %d keys, the source %d", len(got.Kvs), len(final.Kvs))
			}
			byKey := map[string]int{}
			for i, s := range final.Kvs {
				g := got.Kvs[i]
				if string(g.Key) != string(s.Key) || string(g.Value) != string(s.Value) || g.ModRevision != s.ModRevision ||
					g.CreateRevision != s.CreateRevision || g.Version != s.Version {
					t.Fatalf("key %s: vetcd %+v, source %+v", s.Key, g, s)
				}
				byKey[string(s.Key)] = i
			}
			for key, a := range w.Acks() {
				i, ok := byKey[key]
				switch {
				case a.Deleted && ok:
					t.Fatalf("acknowledged delete of %s at %d: present in vetcd", key, a.Revision)
				case !a.Deleted && (!ok || string(got.Kvs[i].Value) != a.Value || got.Kvs[i].ModRevision != a.Revision):
					t.Fatalf("acknowledged write %s=%s at %d not in vetcd as written", key, a.Value, a.Revision)
				}
			}
			st, ok, err := tr.r.markers.readFollow()
			if err != nil || !ok || st.Done || st.SnapshotRevision >= final.Header.Revision {
				t.Fatalf("follow state %+v ok %t err %v", st, ok, err)
			}
			t.Logf("snapshot at %d, caught up to %d, %d keys", st.SnapshotRevision, final.Header.Revision, len(got.Kvs))

			// Cut-over: vetcd's first write of its own.
			if _, err := cli.Put(ctx, "/registry/own", "x"); err != nil {
				t.Fatal(err)
			}
			if _, err := src.Put(ctx, "/registry/late", "x"); err != nil { // after cut-over: not copied
				t.Fatal(err)
			}
			testtools.WaitFor(t, 30*time.Second, "the cut-over recorded", func(context.Context) error {
				st, _, _ = tr.r.markers.readFollow()
				m, ok, err := migrate.ReadEtcdMarker(ctx, cli)
				if !st.Done || err != nil || !ok || m.State != migrate.StateDone {
					return fmt.Errorf("follow state %+v, marker %+v ok %t err %v", st, m, ok, err)
				}
				return nil
			})
			if r, err := cli.Get(ctx, "/registry/late"); err != nil || len(r.Kvs) != 0 {
				t.Fatalf("a source write after the cut-over was copied: %v %v", r, err)
			}

			// A restart runs on its data: no second migration, no following.
			_ = tr.r.Close()
			tr2 := newTestReplica(t, dir, nil)
			tr2.cfg = tr.cfg
			tr2.start(t)
			cli2 := tr2.ready(t)
			if _, err := src.Put(ctx, "/registry/later", "x"); err != nil {
				t.Fatal(err)
			}
			resp, err := cli2.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil || resp.Count != int64(len(got.Kvs))+1 {
				t.Fatalf("after restart: %d keys (%v), want %d", resp.Count, err, len(got.Kvs)+1)
			}
			tr2.waitDecision(t, plan.Keep, "running")
		})
	}
}

// TestFoundFromUnreachableEtcd: a source that does not answer keeps the
// founding replica unready with a clear error, and nothing is written:
// no data dir, no founded cluster record.
func TestFoundFromUnreachableEtcd(t *testing.T) {
	dir := t.TempDir()
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	tr := newTestReplica(t, dir, func(c *config.Config) {
		c.MigrateFromDeployedEtcd = true
		c.MigrateFrom.Endpoints = []string{dead}
	})
	core, logs := observer.New(zapcore.WarnLevel)
	r, err := New(tr.cfg, Options{Logger: zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)).Core()))})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	testtools.WaitFor(t, 45*time.Second, "the unreachable source logged", func(context.Context) error {
		var msg string
		for _, e := range logs.All() {
			if err, ok := e.ContextMap()["error"].(string); ok && strings.Contains(err, "source etcd unreachable") {
				msg = err
			}
		}
		if msg == "" {
			r.mu.Lock()
			defer r.mu.Unlock()
			return fmt.Errorf("no unreachable-source error logged; decision %+v", r.last)
		}
		if !strings.Contains(msg, dead) || !strings.Contains(msg, "nothing was changed") {
			t.Fatalf("error %q: want the endpoint and that nothing was changed", msg)
		}
		return nil
	})
	select {
	case <-r.Ready():
		t.Fatal("replica ready without its source")
	default:
	}
	_ = r.Close()
	if entries, err := os.ReadDir(tr.cfg.DataDir); err == nil && len(entries) > 0 {
		t.Fatalf("data dir written: %v", entries)
	}
	record, err := topology.NewStatic(tr.topo, topology.Replica{}).ClusterRecord(t.Context())
	if rec, _, perr := plan.ParseRecord(record); err != nil || perr != nil || rec.Founded() {
		t.Fatalf("cluster record %q (%v): a cluster was founded without its data", record, err)
	}
}

// followBrokenValue reads vetcd_migrate_follow_broken from the replica's
// metrics (-1: not registered).
func followBrokenValue(t *testing.T, r *Replica) float64 {
	t.Helper()
	mfs, err := r.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == followBrokenMetric && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestFollowSelfDivergedIsNoCutOver: a revision of vetcd's own that no
// client's write explains (a copied lease revoked on vetcd: only deletes
// of leased keys) stops the copying loudly, with the metric, and is not
// recorded as a cut-over; a client's write afterwards is.
func TestFollowSelfDivergedIsNoCutOver(t *testing.T) {
	srcURL, src := embedSource(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for i := range 50 {
		if _, err := src.Put(ctx, fmt.Sprintf("/registry/pre/%04d", i), "p"); err != nil {
			t.Fatal(err)
		}
	}
	tr := newTestReplica(t, t.TempDir(), func(c *config.Config) {
		c.MigrateFromDeployedEtcd = true
		c.MigrateFrom.Endpoints = []string{srcURL}
	})
	tr.start(t)
	cli := tr.ready(t)
	l, err := src.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	put, err := src.Put(ctx, "/registry/events/e1", "e", clientv3.WithLease(l.ID))
	if err != nil {
		t.Fatal(err)
	}
	testtools.WaitFor(t, time.Minute, fmt.Sprintf("source revision %d copied", put.Header.Revision), func(context.Context) error {
		m, ok, err := migrate.ReadEtcdMarker(ctx, cli)
		if err != nil || !ok || m.Revision < put.Header.Revision {
			return fmt.Errorf("marker %+v ok %t err %v", m, ok, err)
		}
		return nil
	})
	if v := followBrokenValue(t, tr.r); v != 0 {
		t.Fatalf("%s = %v while following", followBrokenMetric, v)
	}
	if _, err := cli.Revoke(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Put(ctx, "/registry/next", "n"); err != nil {
		t.Fatal(err)
	}
	testtools.WaitFor(t, 30*time.Second, followBrokenMetric+" = 1 after vetcd's revision moved on its own", func(context.Context) error {
		if v := followBrokenValue(t, tr.r); v != 1 {
			return fmt.Errorf("%s = %v", followBrokenMetric, v)
		}
		return nil
	})
	st, _, err := tr.r.markers.readFollow()
	m, ok, merr := migrate.ReadEtcdMarker(ctx, cli)
	if err != nil || st.Done || merr != nil || !ok || m.State != migrate.StateFollowing {
		t.Fatalf("recorded as a cut-over: follow state %+v (%v), marker %+v (%v)", st, err, m, merr)
	}
	if r, err := cli.Get(ctx, "/registry/next"); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("a source revision was copied after vetcd's own revision: %v %v", r, err)
	}

	// A client's write is the cut-over, even now.
	if _, err := cli.Put(ctx, "/registry/own", "x"); err != nil {
		t.Fatal(err)
	}
	testtools.WaitFor(t, time.Minute, "the cut-over after a client's write", func(context.Context) error {
		st, _, _ := tr.r.markers.readFollow()
		m, ok, err := migrate.ReadEtcdMarker(ctx, cli)
		if !st.Done || err != nil || !ok || m.State != migrate.StateDone {
			return fmt.Errorf("follow state %+v, marker %+v ok %t err %v", st, m, ok, err)
		}
		return nil
	})
	if v := followBrokenValue(t, tr.r); v != 0 {
		t.Fatalf("%s = %v after the cut-over", followBrokenMetric, v)
	}
}
