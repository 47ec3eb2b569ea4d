package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/local"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/testtools"
	"github.com/vetcd/vetcd/internal/topology"
)

// Safety finding 1 (issue 15): replicas dropped by a rebuild must never
// serve their data again. 5 replicas; ordinals 2, 3, 4 are frozen and then
// killed by a scale-down to 2, so ordinal 0 rebuilds the cluster alone and
// takes writes. Then the survivors freeze and the replica count goes back
// to 5: ordinals 2-4 start on their old data, which still holds 3 of the
// old 5 voters under the same cluster ID (ForceNewCluster keeps it). They
// must not elect a leader and acknowledge anything; once the survivors
// resume, they rejoin the rebuilt cluster and every write acknowledged by
// it is still there.
func TestDroppedReplicasNeverServeAfterRebuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	base := freeBasePort(t, 5)
	c := startUp(t, dir, base, 5)
	c.requireSettled(5)
	cli := c.client(2)
	w := startWriter(t, cli, "gen")
	w.waitAcked(100, 30*time.Second)
	c.waitLeader("vetcd-0", time.Minute)

	dropped := []int{2, 3, 4}
	for _, i := range dropped {
		if err := syscall.Kill(c.pid(i), syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP replica %d: %v", i, err)
		}
	}
	if out, err := vetcd(t, 30*time.Second, "scale", "2", "--dir", dir); err != nil {
		t.Fatalf("vetcd scale 2: %v\n%s", err, out)
	}
	for _, i := range dropped {
		if err := syscall.Kill(c.pid(i), syscall.SIGKILL); err != nil {
			t.Fatalf("kill replica %d: %v", i, err)
		}
	}
	c.requireSettled(2)
	w.waitAcked(w.count()+50, time.Minute)
	w.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, err := cli.Put(ctx, "gen/after-rebuild", "kept"); err != nil {
		cancel()
		t.Fatalf("write after the rebuild: %v", err)
	}
	cancel()

	// Freeze the rebuilt cluster, then bring the dropped replicas back.
	survivors := []int{0, 1}
	pids := map[int]int{}
	for _, i := range survivors {
		pids[i] = c.pid(i)
		if err := syscall.Kill(pids[i], syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP replica %d: %v", i, err)
		}
	}
	resumed := false
	resume := func() {
		if resumed {
			return
		}
		resumed = true
		for _, i := range survivors {
			_ = syscall.Kill(pids[i], syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	if out, err := vetcd(t, 30*time.Second, "scale", "5", "--dir", dir); err != nil {
		t.Fatalf("vetcd scale 5: %v\n%s", err, out)
	}

	// The dropped replicas start on their old data. Probe them with writes
	// until each has decided not to serve it (or one acknowledges a write:
	// the zombie cluster of the finding).
	zombie, err := clientv3.New(clientv3.Config{
		Endpoints: []string{c.endpoints(5)[2], c.endpoints(5)[3], c.endpoints(5)[4]},
		TLS:       c.tlsConfig(), DialTimeout: time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	probe := func(n int) {
		pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
		defer pcancel()
		if _, err := zombie.Put(pctx, fmt.Sprintf("gen/zombie-%d", n), "must not be acknowledged"); err == nil {
			t.Fatalf("a replica dropped by the rebuild acknowledged a write on its superseded data (probe %d)", n)
		}
		gctx, gcancel := context.WithTimeout(context.Background(), time.Second)
		defer gcancel()
		if resp, err := zombie.Get(gctx, "gen/after-rebuild"); err == nil && len(resp.Kvs) == 0 {
			t.Fatalf("a replica dropped by the rebuild answered a linearizable read without the rebuilt cluster's write (probe %d)", n)
		}
	}
	probes := 0
	testtools.WaitFor(t, 90*time.Second, "the dropped replicas decide how to treat their old data", func(context.Context) error {
		probe(probes)
		probes++
		if !refusedAll(t, dir, dropped) {
			return fmt.Errorf("replicas %v have not all logged the decision (%d probes refused)", dropped, probes)
		}
		return nil
	})
	// They have decided; they still must not serve for a few more probes.
	every := time.NewTicker(300 * time.Millisecond)
	defer every.Stop()
	for n := 0; n < 10; n++ {
		probe(1000 + n)
		<-every.C
	}

	resume()
	c.requireSettled(5)
	all := c.client(5)
	w.verify(all)
	gctx, gcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer gcancel()
	resp, err := all.Get(gctx, "gen/after-rebuild")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the write acknowledged after the rebuild is gone: %v %v", resp, err)
	}
	if resp, err := all.Get(gctx, "gen/zombie-", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Fatalf("zombie writes present in the cluster: %v %v", resp, err)
	}
	// The user sees the generation the rebuild started.
	if rec := c.statusJSON().Record; rec == nil || rec.Generation != 2 || rec.Made == nil || rec.Made.How != plan.OriginRebuilt || rec.Claim != nil {
		t.Fatalf("vetcd status shows record %+v, want generation 2 rebuilt, no claim", rec)
	}
	// The leader records the highest revision served (a restore moves the
	// revision above it even when every member's data is gone).
	if rec := c.statusJSON().Record; rec.MaxRevision <= 0 || rec.MaxRevision > resp.Header.Revision {
		t.Fatalf("record's highest revision served %d, want within (0, %d]", rec.MaxRevision, resp.Header.Revision)
	}
}

// refusedAll reports whether every listed replica has logged a decision
// that keeps it from serving its old data: waiting because its data is of
// a superseded generation, or rejoining.
func refusedAll(t *testing.T, dir string, ordinals []int) bool {
	t.Helper()
	for _, i := range ordinals {
		b, err := os.ReadFile(filepath.Join(dir, local.ReplicaName(i), "serve.log"))
		if err != nil {
			return false
		}
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			var e struct {
				Msg    string `json:"msg"`
				Reason string `json:"reason"`
			}
			if json.Unmarshal([]byte(line), &e) != nil {
				continue
			}
			if strings.Contains(e.Reason, "superseded") {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// The upgrade path of the typed record: a cluster whose record is in the
// prose format of vetcd before generations, and whose data carries no
// generation marker, starts under this vetcd on its own data (no member
// rejoins, nothing is moved aside), and its record is converted once.
func TestProseRecordConvertedOnUpgrade(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	base := freeBasePort(t, 3)
	c := startUp(t, dir, base, 3)
	st := c.requireSettled(3)
	w := startWriter(t, c.client(3), "prose")
	w.waitAcked(100, 30*time.Second)
	w.stop()
	ids := map[string]string{}
	for _, m := range st.Members {
		ids[m.Name] = m.ID
	}
	c.stop()

	topo := local.Layout{Dir: dir}.TopologyPath()
	prose := fmt.Sprintf("cluster %s founded by vetcd-0 at 2026-11-24T00:00:00Z", st.ClusterID)
	if err := topology.UpdateFile(topo, func(f *topology.File) error { f.ClusterRecord = prose; return nil }); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := os.Remove(filepath.Join(dir, local.ReplicaName(i), "generation.json")); err != nil {
			t.Fatal(err)
		}
	}

	c2 := startUp(t, dir, base, 0)
	st2 := c2.requireSettled(3)
	if st2.ClusterID != st.ClusterID {
		t.Fatalf("cluster %s after the upgrade, was %s", st2.ClusterID, st.ClusterID)
	}
	for _, m := range st2.Members {
		if ids[m.Name] != m.ID {
			t.Errorf("%s is member %s after the upgrade, was %s: it rejoined instead of restarting on its data", m.Name, m.ID, ids[m.Name])
		}
	}
	w.verify(c2.client(3))
	rec, _, err := plan.ParseRecord(readRecord(t, topo))
	if err != nil || rec.Generation != 1 || rec.Made == nil || rec.Made.How != plan.OriginConverted || rec.Made.Note != prose {
		t.Fatalf("record after the upgrade: %+v (%v); want the prose record converted to generation 1", rec, err)
	}
	waitFor(t, 30*time.Second, "every replica to mark its data with generation 1", func() bool {
		for i := 0; i < 3; i++ {
			b, err := os.ReadFile(filepath.Join(dir, local.ReplicaName(i), "generation.json"))
			if err != nil || !strings.Contains(string(b), `"generation":1`) {
				return false
			}
		}
		return true
	})
	for i := 0; i < 3; i++ {
		if aside, _ := filepath.Glob(filepath.Join(dir, local.ReplicaName(i), "data.*")); len(aside) != 0 {
			t.Errorf("replica %d moved data aside on the upgrade: %v", i, aside)
		}
	}
}
