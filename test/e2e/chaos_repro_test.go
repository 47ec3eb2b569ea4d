package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestCorruptDataBehindCompaction reproduces two findings of the chaos
// suite. A replica restarted on a corrupted db passes etcd's initial
// corruption check without any comparison when the peers cannot hash its
// data the way it does:
//
//   - seed 20250701, 7m into a 30m run: the peers have compacted past the
//     data's revision ("cannot fetch hash from remote peer; local member is
//     behind");
//   - seed 1, 9m into a 30m run: the peers compacted after the replica
//     stopped, but not past its revision ("found different compact revision
//     values from remote peer"), and the corrupted member went on to serve
//     and acknowledge writes under revisions of its own.
//
// In both cases it served the corrupted data, wrong values and its own
// revision numbering, until the periodic check (5m) or a restart caught it;
// clients saw non-linearizable answers. vetcd now looks before it restarts
// on such data: unless a peer hashes the data's revision over the same
// compaction, the replica rejoins with a fresh copy (plan.ReplicaNext,
// Cluster.Unverifiable).
func TestCorruptDataBehindCompaction(t *testing.T) {
	for _, tc := range []struct {
		name string
		// compactAt picks the revision the peers compact to while
		// vetcd-2 is down: stopped is its revision when it stopped, now
		// the cluster's after more writes.
		compactAt func(stopped, now int64) int64
	}{
		{"past its revision", func(_, now int64) int64 { return now }},
		// Below its revision with a margin: a kill -9 loses the backend's
		// last uncommitted batch (up to 100 ms of writes), so the db on
		// disk, which etcd's check hashes, is a little behind stopped.
		{"since it stopped, not past its revision", func(stopped, _ int64) int64 { return stopped - 100 }},
	} {
		t.Run(tc.name, func(t *testing.T) { corruptWhileCompacting(t, tc.compactAt) })
	}
}

func corruptWhileCompacting(t *testing.T, compactAt func(stopped, now int64) int64) {
	c, w := startRecoveryCluster(t, "")
	w.waitAcked(200, time.Minute)
	cli := c.client(2)
	// vetcd-2's own revision (serializable: what it has applied).
	only2 := clientv3.Config{Endpoints: c.endpoints(3)[2:], TLS: c.tlsConfig(), DialTimeout: 2 * time.Second}
	c2, err := clientv3.New(only2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	r2, err := c2.Get(sctx, "rec/", clientv3.WithSerializable(), clientv3.WithCountOnly())
	scancel()
	if err != nil {
		t.Fatal(err)
	}
	stopped := r2.Header.Revision
	c.stopReplica(2)
	db := filepath.Join(c.dir, "vetcd-2", "data", "member", "snap", "db")
	if err := corruptBBolt(db); err != nil {
		c.resumeSupervisor()
		t.Fatal(err)
	}
	// While vetcd-2 is down, the others write and compact.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rev int64
	for i := 0; i < 50; i++ {
		r, err := cli.Put(ctx, fmt.Sprintf("rec/extra/%d", i), "x")
		if err != nil {
			c.resumeSupervisor()
			t.Fatal(err)
		}
		rev = r.Header.Revision
	}
	if _, err := cli.Compact(ctx, compactAt(stopped, rev)); err != nil {
		c.resumeSupervisor()
		t.Fatal(err)
	}
	c.resumeSupervisor()
	// Wait until vetcd-2 answers, then compare what it serves with vetcd-0.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
		r2, err2 := c2.Get(rctx, "rec/", clientv3.WithPrefix(), clientv3.WithSerializable())
		rcancel()
		if err2 == nil && r2.Header.Revision >= rev {
			rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
			r0, err0 := c.client(1).Get(rctx, "rec/", clientv3.WithPrefix(), clientv3.WithRev(r2.Header.Revision))
			rcancel()
			if err0 != nil {
				continue
			}
			if len(r0.Kvs) != len(r2.Kvs) {
				b, _ := os.ReadFile(filepath.Join(c.dir, "vetcd-2", "serve.log"))
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, "corrupt.go") || strings.Contains(l, "replica decision") {
						t.Log(l)
					}
				}
				t.Fatalf("vetcd-2 serves %d keys under rec/ at revision %d, vetcd-0 %d: vetcd-2 runs on corrupt data (restarts %d)", len(r2.Kvs), r2.Header.Revision, len(r0.Kvs), c.restarts(2))
			}
			for i := range r0.Kvs {
				if string(r0.Kvs[i].Key) != string(r2.Kvs[i].Key) || string(r0.Kvs[i].Value) != string(r2.Kvs[i].Value) {
					t.Fatalf("vetcd-2 serves %s=%q, vetcd-0 %s=%q at revision %d: vetcd-2 runs on corrupt data", r2.Kvs[i].Key, r2.Kvs[i].Value, r0.Kvs[i].Key, r0.Kvs[i].Value, r2.Header.Revision)
				}
			}
			if m, _ := filepath.Glob(filepath.Join(c.dir, "vetcd-2", "data.aside-*")); len(m) > 0 {
				t.Logf("vetcd-2 rejoined with fresh data: %v", m)
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(c.dir, "vetcd-2", "serve.log"))
	t.Fatalf("vetcd-2 did not come back consistent within 60s\n%s", tail(string(b), 30))
}
