package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
	"github.com/vetcd/vetcd/internal/testtools"
)

// TestSnapshotCreateListDelete drives `vetcd snapshot` against a running
// local cluster and a file:// location, with and without encryption, and
// checks the stored bytes decode to a db with every key.
func TestSnapshotCreateListDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 1), 1)
	cli := c.client(1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < 1000; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("snap/%04d", i), strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}
	backups := filepath.Join(t.TempDir(), "backups")
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"secret", []string{"--age-passphrase-file", pass}},
	} {
		out, err := vetcd(t, 2*time.Minute, append([]string{"snapshot", "create", "file://" + backups + "/" + tc.name, "--dir", dir}, tc.args...)...)
		if err != nil {
			t.Fatalf("snapshot create %s: %v\n%s", tc.name, err, out)
		}
		if !strings.Contains(out, "1000 keys") {
			t.Fatalf("summary does not count the 1000 keys: %s", out)
		}
		if fi, err := os.Stat(filepath.Join(backups, tc.name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("stored snapshot: %v %v", fi, err)
		}
	}
	out, err := vetcd(t, time.Minute, "snapshot", "list", "file://"+backups+"/", "-o", "json")
	if err != nil {
		t.Fatalf("snapshot list: %v\n%s", err, out)
	}
	var entries []snapshot.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 2 {
		t.Fatalf("list: %v %s", err, out)
	}
	for _, e := range entries {
		if e.Manifest.KeyCount != 1000 || (e.Name == "secret") != (e.Manifest.Encryption == "age") {
			t.Fatalf("entry %+v", e)
		}
	}

	// The stored bytes decode (with the key, for the encrypted one) to the
	// db, verified against the manifest.
	requireDecodes(ctx, t, storage.NewFile(backups), snapshot.Keys{PassphraseFile: pass}, "plain", "secret")

	// Bad input: named, exit 2, nothing written.
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"snapshot", "create", "ftp://host/x", "--dir", dir}, `unknown scheme "ftp"`},
		{[]string{"snapshot", "create", "file://" + backups + "/", "--dir", dir}, "names no snapshot"},
		{[]string{"snapshot", "create", "file://" + backups + "/x", "--dir", dir, "--age-passphrase-env", "VETCD_NO_SUCH_VAR"}, "VETCD_NO_SUCH_VAR"},
		{[]string{"snapshot", "delete", "file://" + backups + "/missing"}, "not found"},
	} {
		before := snapshotTree(t, backups)
		cmd := exec.Command(binary, bad.args...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(buf.String(), bad.want) {
			t.Errorf("%v: exit %v, output %q; want exit 2 naming %q", bad.args, err, buf.String(), bad.want)
		}
		if snapshotTree(t, backups) != before {
			t.Errorf("%v changed the backup dir", bad.args)
		}
	}

	if out, err := vetcd(t, time.Minute, "snapshot", "delete", "file://"+backups+"/plain"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if left, _ := os.ReadDir(backups); len(left) != 2 { // secret + its manifest
		t.Fatalf("after delete: %v", left)
	}
}

// Complete data loss: a 3-replica cluster with 10k keys takes a snapshot,
// gets 100 more writes, is stopped, and loses every replica's data dir.
// `vetcd snapshot restore` brings back all 10k keys, 3 healthy voters,
// and a revision above the snapshot's.
func TestRestoreAfterCompleteDataLoss(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	base := freeBasePort(t, 3)
	c := startUp(t, dir, base, 3)
	c.requireSettled(3)
	cli := c.client(3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 0; i < 10000; i += 100 {
		ops := make([]clientv3.Op, 0, 100)
		for j := i; j < i+100; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("data/%05d", j), strings.Repeat("x", 64)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	url := "file://" + filepath.Join(t.TempDir(), "backups") + "/full"
	if out, err := vetcd(t, 2*time.Minute, "snapshot", "create", url, "--dir", dir); err != nil {
		t.Fatalf("snapshot create: %v\n%s", err, out)
	}
	snapRev := func() int64 {
		loc, _ := storage.Parse(url)
		m, err := snapshot.ReadManifest(ctx, storage.NewFile(loc.Root), loc.Name)
		if err != nil {
			t.Fatal(err)
		}
		return m.Revision
	}()
	for i := 0; i < 100; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("late/%03d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	c.stop()
	for i := 0; i < 3; i++ {
		if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("vetcd-%d", i), "data")); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := vetcd(t, 2*time.Minute, "snapshot", "restore", url, "--dir", dir); err != nil {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	c2 := startUp(t, dir, base, 0)
	c2.requireSettled(3)
	cli2 := c2.client(3)
	resp, err := cli2.Get(ctx, "data/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 10000 {
		t.Fatalf("%d of 10000 keys after the restore", resp.Count)
	}
	if resp.Header.Revision <= snapRev {
		t.Fatalf("revision %d after the restore, not above the snapshot's %d", resp.Header.Revision, snapRev)
	}
	// Writes work, and a watch from before the restore's revision is told
	// the history is compacted (watchers relist).
	if _, err := cli2.Put(ctx, "after", "restore"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	wr := <-cli2.Watch(wctx, "data/", clientv3.WithPrefix(), clientv3.WithRev(snapRev))
	if wr.CompactRevision == 0 {
		t.Fatalf("a watch from the snapshot's revision was not told to relist: %+v", wr)
	}
}

// Restore while `vetcd up` runs: the supervisor stops the replicas, the
// cluster comes back under it, and the old data is removed once healthy.
func TestRestoreWhileRunning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 3), 3)
	c.requireSettled(3)
	cli := c.client(3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := cli.Put(ctx, "before", "snapshot"); err != nil {
		t.Fatal(err)
	}
	url := "file://" + filepath.Join(t.TempDir(), "backups") + "/s"
	if out, err := vetcd(t, 2*time.Minute, "snapshot", "create", url, "--dir", dir); err != nil {
		t.Fatalf("snapshot create: %v\n%s", err, out)
	}
	if _, err := cli.Put(ctx, "after", "snapshot"); err != nil {
		t.Fatal(err)
	}
	out, err := vetcd(t, 4*time.Minute, "snapshot", "restore", url, "--dir", dir)
	if err != nil {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	if !strings.Contains(out, "old data removed") {
		t.Fatalf("restore output: %s", out)
	}
	c.requireSettled(3)
	cli2 := c.client(3)
	if r, err := cli2.Get(ctx, "before"); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("key from before the snapshot: %v %v", r, err)
	}
	if r, err := cli2.Get(ctx, "after"); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("key written after the snapshot is back: %v %v", r, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "vetcd-*", "data.pre-restore-*")); len(m) != 0 {
		t.Fatalf("old data left after a successful restore: %v", m)
	}

	// Safety rule 7: restoring the same snapshot again must not move the
	// revision back to the first restore's, where watchers would wait
	// silently on revisions that are reused for other data.
	r, err := cli2.Put(ctx, "after-first-restore", "x")
	if err != nil {
		t.Fatal(err)
	}
	served := r.Header.Revision
	if out, err := vetcd(t, 4*time.Minute, "snapshot", "restore", url, "--dir", dir); err != nil {
		t.Fatalf("second snapshot restore: %v\n%s", err, out)
	}
	c.requireSettled(3)
	cli3 := c.client(3)
	r2, err := cli3.Get(ctx, "before")
	if err != nil {
		t.Fatal(err)
	}
	if r2.Header.Revision <= served {
		t.Fatalf("revision %d after restoring the same snapshot again, below the %d already served", r2.Header.Revision, served)
	}
	t.Logf("revision %d served before the second restore, %d after it", served, r2.Header.Revision)
}

// Scheduled snapshots fire on the leader, and retention deletes only this
// cluster's oldest snapshots: another cluster's in the same place stays.
func TestScheduledSnapshotsAndRetention(t *testing.T) {
	backups := filepath.Join(t.TempDir(), "backups")
	if err := os.MkdirAll(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	// Another cluster's snapshot, sharing the location.
	foreign := "vetcd-deadbeef-20200101T000000Z"
	fm := fmt.Sprintf(`{"formatVersion":1,"clusterID":"deadbeef","compression":"zstd","sha256":"%064x","size":1,"created":"2020-01-01T00:00:00Z"}`, 1)
	for name, body := range map[string]string{foreign: "x", foreign + snapshot.ManifestSuffix: fm} {
		if err := os.WriteFile(filepath.Join(backups, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(t.TempDir(), "vetcd.yaml")
	conf := fmt.Sprintf("snapshots:\n  schedule: \"@every 2s\"\n  target: file://%s/\n  retention: 2\n", backups)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 3), 3, "--config", cfg)
	c.requireSettled(3)
	id := c.status(3).ClusterID
	ours := func() []snapshot.Entry {
		entries, _ := snapshot.List(context.Background(), storage.NewFile(backups), "vetcd-"+id+"-")
		return entries
	}
	// At least four snapshots taken (the leader's metric), two kept.
	waitFor(t, 90*time.Second, "four scheduled snapshots", func() bool {
		return c.metric(c.leaderOrdinal(), "vetcd_snapshot_failures_total") == 0 &&
			c.metric(c.leaderOrdinal(), "vetcd_snapshot_last_success_timestamp_seconds") > 0 && len(ours()) >= 2 &&
			c.metric(c.leaderOrdinal(), "vetcd_snapshot_last_size_bytes") > 0
	})
	awaitMoreSnapshots(t, c, 2) // retention must keep the count at 2 after them
	// A new snapshot is listed a moment before retention prunes the
	// oldest, so a count of 3 is allowed in passing; it must settle at 2
	// and never exceed 3.
	waitFor(t, 5*time.Second, "retention keeps 2", func() bool {
		n := len(ours())
		if n > 3 {
			t.Fatalf("%d snapshots of this cluster kept, retention is 2", n)
		}
		return n == 2
	})
	if _, err := os.Stat(filepath.Join(backups, foreign)); err != nil {
		t.Fatalf("retention deleted another cluster's snapshot: %v", err)
	}
	out, err := vetcd(t, 30*time.Second, "status", "--dir", dir)
	if err != nil || !strings.Contains(out, "last snapshot: file://") {
		t.Fatalf("vetcd status does not show the last snapshot: %v\n%s", err, out)
	}
}

// requireDecodes reads each named snapshot from b and decodes it (with
// keys, for the encrypted ones) to the end: size and sha256 must match its
// manifest.
func requireDecodes(ctx context.Context, t *testing.T, b storage.Backend, keys snapshot.Keys, names ...string) {
	t.Helper()
	ids, err := keys.Identities()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		m, err := snapshot.ReadManifest(ctx, b, name)
		if err != nil {
			t.Fatal(err)
		}
		rc, _, err := b.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		d, err := snapshot.Decode(rc, m, snapshot.Decoding{Identities: ids})
		if err != nil {
			rc.Close()
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, d)
		d.Close()
		rc.Close()
		if err != nil || n != m.Size {
			t.Fatalf("decode %s: %d bytes (manifest %d), %v", name, n, m.Size, err)
		}
	}
}

// awaitMoreSnapshots waits until the leader took n more scheduled
// snapshots (its last-success time moved n times).
func awaitMoreSnapshots(t *testing.T, c *cluster, n int) {
	t.Helper()
	const metric = "vetcd_snapshot_last_success_timestamp_seconds"
	last, more := c.metric(c.leaderOrdinal(), metric), 0
	testtools.WaitFor(t, 30*time.Second, fmt.Sprintf("%d more scheduled snapshots", n), func(context.Context) error {
		if ts := c.metric(c.leaderOrdinal(), metric); ts > last {
			last, more = ts, more+1
		}
		if more < n {
			return fmt.Errorf("%d more taken, the last at %v", more, time.Unix(int64(last), 0).UTC())
		}
		return nil
	})
}
