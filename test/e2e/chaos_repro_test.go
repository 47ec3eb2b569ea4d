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

// TestCorruptDataBehindCompaction reproduces a finding of the chaos suite
// (seed 20250701, 7m into a 30m run): a replica restarted on a corrupted db
// whose revision the peers have already compacted passes etcd's initial
// corruption check ("cannot fetch hash from remote peer; local member is
// behind" ... "initial corruption checking passed") and serves the
// corrupted data — wrong values and, since deletes of renamed keys make no
// revision, its own revision numbering — until the periodic check (5m) or
// a restart catches it. The clients see non-linearizable answers.
//
// vetcd now looks before it restarts on such data: when the live cluster
// has compacted past the data's revision, the replica rejoins with a fresh
// copy instead (plan.ReplicaNext, CompactedPastLocal).
func TestCorruptDataBehindCompaction(t *testing.T) {
	c, w := startRecoveryCluster(t, "")
	w.waitAcked(200, time.Minute)
	cli := c.client(2)
	c.stopReplica(2)
	db := filepath.Join(c.dir, "vetcd-2", "data", "member", "snap", "db")
	if err := corruptBBolt(db); err != nil {
		c.resumeSupervisor()
		t.Fatal(err)
	}
	// While vetcd-2 is down, the others write and compact past its revision.
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
	if _, err := cli.Compact(ctx, rev); err != nil {
		c.resumeSupervisor()
		t.Fatal(err)
	}
	c.resumeSupervisor()
	// Wait until vetcd-2 answers, then compare what it serves with vetcd-0.
	only2 := clientv3.Config{Endpoints: c.endpoints(3)[2:], TLS: c.tlsConfig(), DialTimeout: 2 * time.Second}
	c2, err := clientv3.New(only2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
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
