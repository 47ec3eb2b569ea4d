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

	"github.com/vetcd/vetcd/internal/local"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
	"github.com/vetcd/vetcd/internal/testtools"
	"github.com/vetcd/vetcd/internal/topology"
)

// TestRestoreFromConfig drives restore.from, the restore for places where
// no CLI reaches the disks (Kubernetes):
//
//  1. A restore requested in the cluster record while every replica runs
//     (as a pod rolled with the new config does it): every member stops,
//     the requester founds the cluster from the snapshot, the others
//     rejoin. Writes made after the snapshot are gone, the snapshot's keys
//     are there, the revision is bumped.
//  2. Every data dir lost, then `vetcd up --config` with restore.from: the
//     cluster comes back from the snapshot by itself.
//  3. A restart with the same config does not restore again.
//  4. A restore.from naming a missing snapshot changes nothing: the cluster
//     keeps serving its data, and the replicas say why.
func TestRestoreFromConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	base := freeBasePort(t, 3)
	backups := filepath.Join(t.TempDir(), "backups")
	c := startUp(t, dir, base, 3)
	c.requireSettled(3)
	cli := c.client(3)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	put := func(cli *clientv3.Client, prefix string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := cli.Put(ctx, fmt.Sprintf("%s/%04d", prefix, i), prefix); err != nil {
				t.Fatalf("put %s/%d: %v", prefix, i, err)
			}
		}
	}
	count := func(cli *clientv3.Client, prefix string) int64 {
		t.Helper()
		resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatalf("count %s: %v", prefix, err)
		}
		return resp.Count
	}
	snap := func(name string) (string, int64) {
		t.Helper()
		url := "file://" + backups + "/" + name
		if out, err := vetcd(t, 2*time.Minute, "snapshot", "create", url, "--dir", dir); err != nil {
			t.Fatalf("snapshot create: %v\n%s", err, out)
		}
		m, err := snapshot.ReadManifest(ctx, storage.NewFile(backups), name)
		if err != nil {
			t.Fatal(err)
		}
		return url, m.Revision
	}
	topo := local.Layout{Dir: dir}.TopologyPath()

	// 1. Requested while running.
	put(cli, "data", 500)
	url1, rev1 := snap("s1")
	put(cli, "late", 50)
	if err := topology.UpdateFile(topo, func(f *topology.File) error {
		rec, _, err := plan.ParseRecord(f.ClusterRecord)
		if err != nil {
			return err
		}
		rec.Claim = &plan.Claim{Kind: plan.ClaimRestore, Holder: 1, URL: url1, At: time.Now().UTC()}
		f.ClusterRecord = rec.Encode()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, topo, func(r string) bool { return restoredFrom(r) == url1 }, 2*time.Minute)
	st := c.requireSettled(3)
	cli = c.client(3)
	if got := count(cli, "data"); got != 500 {
		t.Errorf("%d of 500 snapshot keys after restore 1", got)
	}
	if got := count(cli, "late"); got != 0 {
		t.Errorf("%d writes made after the snapshot survived restore 1, want 0", got)
	}
	resp, err := cli.Get(ctx, "data/0000")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision < rev1+snapshot.RevisionBump {
		t.Errorf("revision %d after restore 1, want at least %d (bumped)", resp.Header.Revision, rev1+snapshot.RevisionBump)
	}
	t.Logf("restore 1: cluster %s", st.ClusterID)
	for i := 0; i < 3; i++ {
		aside, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("vetcd-%d", i), "data.*"))
		if i != 1 && len(aside) == 0 {
			t.Errorf("replica %d: no old data dir kept aside after it rejoined the restored cluster", i)
		}
	}
	if c.restarts(0)+c.restarts(1)+c.restarts(2) != 0 {
		t.Errorf("the supervisor restarted replicas during the restore: %d %d %d", c.restarts(0), c.restarts(1), c.restarts(2))
	}

	// 2. Every data dir lost; the config restores.
	put(cli, "second", 100)
	url2, rev2 := snap("s2")
	c.stop()
	for i := 0; i < 3; i++ {
		if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("vetcd-%d", i), "data")); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(t.TempDir(), "restore.yaml")
	if err := os.WriteFile(cfg, []byte("restore:\n  from: "+url2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := startUp(t, dir, base, 0, "--config", cfg)
	c2.requireSettled(3)
	cli2 := c2.client(3)
	if got, want := []int64{count(cli2, "data"), count(cli2, "second")}, []int64{500, 100}; got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("after restoring %s with every data dir lost: data %d second %d, want 500 and 100", url2, got[0], got[1])
	}
	if rec := readRecord(t, topo); restoredFrom(rec) != url2 {
		t.Fatalf("cluster record %q does not say restored from %s", rec, url2)
	}
	resp, err = cli2.Get(ctx, "second/0000")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision < rev2+snapshot.RevisionBump {
		t.Errorf("revision %d after restore 2, want at least %d", resp.Header.Revision, rev2+snapshot.RevisionBump)
	}

	// 3. The same config again: no second restore.
	put(cli2, "third", 10)
	c2.stop()
	c3 := startUp(t, dir, base, 0, "--config", cfg)
	c3.requireSettled(3)
	if got := count(c3.client(3), "third"); got != 10 {
		t.Fatalf("restarting with the same restore.from restored again: %d of 10 later keys left", got)
	}
	c3.stop()

	// 4. A missing snapshot changes nothing.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("restore:\n  from: file://"+backups+"/missing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := readRecord(t, topo)
	c4 := startUp(t, dir, base, 0, "--config", bad)
	c4.requireSettled(3)
	if got := count(c4.client(3), "third"); got != 10 {
		t.Fatalf("a restore.from naming a missing snapshot changed the data: %d of 10 keys", got)
	}
	// The leader raises MaxRevision on its own once a minute (plan.RaiseMaxRevision);
	// that watermark may only rise. Everything else must be exactly as before.
	after := readRecord(t, topo)
	b, a := parseRecord(t, before), parseRecord(t, after)
	if a.MaxRevision < b.MaxRevision {
		t.Fatalf("a restore.from naming a missing snapshot lowered MaxRevision: %d -> %d", b.MaxRevision, a.MaxRevision)
	}
	b.MaxRevision, b.MaxRevisionAt, a.MaxRevision, a.MaxRevisionAt = 0, time.Time{}, 0, time.Time{}
	if a.Encode() != b.Encode() {
		t.Fatalf("a restore.from naming a missing snapshot changed the cluster record: %q -> %q", before, after)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "vetcd-0", "serve.log"))
	if !strings.Contains(string(logs), "restore.from: the snapshot cannot be restored") || !strings.Contains(string(logs), "missing") {
		t.Fatalf("replica 0's log does not say why restore.from was not done")
	}
}

func parseRecord(t *testing.T, s string) plan.Record {
	t.Helper()
	rec, _, err := plan.ParseRecord(s)
	if err != nil {
		t.Fatalf("cluster record %q: %v", s, err)
	}
	return rec
}

func readRecord(t *testing.T, path string) string {
	t.Helper()
	f, err := topology.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f.ClusterRecord
}

func waitRecord(t *testing.T, path string, ok func(string) bool, timeout time.Duration) {
	t.Helper()
	testtools.WaitFor(t, timeout, "the cluster record", func(context.Context) error {
		if r := readRecord(t, path); !ok(r) {
			return fmt.Errorf("cluster record still %q", r)
		}
		return nil
	})
}

// restoredFrom is the snapshot URL the current generation was restored
// from, by the typed cluster record, or "".
func restoredFrom(raw string) string {
	rec, _, err := plan.ParseRecord(raw)
	if err != nil || rec.Made == nil || rec.Made.How != plan.OriginRestored {
		return ""
	}
	return rec.Made.URL
}
