package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
	"github.com/vetcd/vetcd/internal/testtools/testregistry"
)

// TestSnapshotOCI drives `vetcd snapshot create/list/restore/delete`
// against a real OCI registry (distribution), with and without age
// encryption: both snapshots restore into the running local cluster with
// every key of the snapshot and none written after it.
func TestSnapshotOCI(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials from this machine
	reg := testregistry.Start(t, testregistry.Options{})
	repo := "oci://" + reg.Host + "/vetcd/snaps"
	url := func(tag string) string { return repo + ":" + tag + "?insecure=true" }

	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 1), 1)
	cli := c.client(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	put := func(prefix string, n int) {
		t.Helper()
		for i := 0; i < n; i += 100 {
			ops := make([]clientv3.Op, 0, 100)
			for j := i; j < i+100 && j < n; j++ {
				ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s/%04d", prefix, j), strings.Repeat("v", 100)))
			}
			if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(prefix string) int64 {
		t.Helper()
		cli := c.client(1)
		resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// plain holds a/ (1000 keys); secret, taken later, a/ and b/ (500).
	put("a", 1000)
	if out, err := vetcd(t, 2*time.Minute, "snapshot", "create", url("plain"), "--dir", dir); err != nil || !strings.Contains(out, "1000 keys") {
		t.Fatalf("snapshot create plain: %v\n%s", err, out)
	}
	put("b", 500)
	if out, err := vetcd(t, 2*time.Minute, "snapshot", "create", url("secret"), "--dir", dir, "--age-passphrase-file", pass); err != nil || !strings.Contains(out, "1500 keys") {
		t.Fatalf("snapshot create secret: %v\n%s", err, out)
	}
	put("late", 100)

	out, err := vetcd(t, time.Minute, "snapshot", "list", repo+"?insecure=true", "-o", "json")
	if err != nil {
		t.Fatalf("snapshot list: %v\n%s", err, out)
	}
	var entries []snapshot.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 2 {
		t.Fatalf("list: %v %s", err, out)
	}
	for _, e := range entries {
		want := map[string]int64{"plain": 1000, "secret": 1500}[e.Name]
		if e.Manifest.KeyCount != want || e.Stored <= 0 || (e.Name == "secret") != (e.Manifest.Encryption == "age") {
			t.Fatalf("entry %+v: want %d keys and encryption only on secret", e, want)
		}
	}
	if entries[0].Name != "secret" {
		t.Fatalf("list is not newest first: %s then %s", entries[0].Name, entries[1].Name)
	}
	if out, err := vetcd(t, time.Minute, "snapshot", "list", url("pl")); err != nil || !strings.Contains(out, "plain") || strings.Contains(out, "secret") {
		t.Fatalf("list with a tag prefix: %v\n%s", err, out)
	}

	// Bad input: named, exit 2, nothing stored in the registry.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := closed.Addr().String()
	closed.Close()
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"snapshot", "create", repo + "@sha256:" + strings.Repeat("ab", 32), "--dir", dir}, "digest reference"},
		{[]string{"snapshot", "create", repo + ":Bad:Tag?insecure=true", "--dir", dir}, "repository"},
		{[]string{"snapshot", "create", url("x") + "&region=eu", "--dir", dir}, `unknown option "region"`},
		{[]string{"snapshot", "create", "oci://" + gone + "/vetcd/snaps:x?insecure=true&timeout=3s", "--dir", dir}, "registry " + gone + " unreachable"},
		{[]string{"snapshot", "restore", url("missing"), "--dir", dir}, "not found"},
		{[]string{"snapshot", "restore", url("secret"), "--dir", dir}, "age"},
		{[]string{"snapshot", "delete", url("missing")}, "not found"},
	} {
		before := snapshotTree(t, reg.Dir)
		cmd := exec.Command(binary, bad.args...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		start := time.Now()
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(buf.String(), bad.want) {
			t.Errorf("%v: exit %v, output %q; want exit 2 naming %q", bad.args, err, buf.String(), bad.want)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("%v took %s", bad.args, took)
		}
		if snapshotTree(t, reg.Dir) != before {
			t.Errorf("%v changed the registry's storage", bad.args)
		}
	}
	if n := count("late"); n != 100 {
		t.Fatalf("a refused restore changed the cluster: %d late keys, want 100", n)
	}

	// Restore the encrypted one, then the plain one, into the running cluster.
	for _, tc := range []struct {
		tag  string
		args []string
		a, b int64
	}{
		{"secret", []string{"--age-passphrase-file", pass}, 1000, 500},
		{"plain", nil, 1000, 0},
	} {
		out, err := vetcd(t, 4*time.Minute, append([]string{"snapshot", "restore", url(tc.tag), "--dir", dir}, tc.args...)...)
		if err != nil {
			t.Fatalf("snapshot restore %s: %v\n%s", tc.tag, err, out)
		}
		c.requireSettled(1)
		if a, b, late := count("a"), count("b"), count("late"); a != tc.a || b != tc.b || late != 0 {
			t.Fatalf("after restoring %s: a/ %d b/ %d late/ %d keys; want %d, %d, 0", tc.tag, a, b, late, tc.a, tc.b)
		}
	}

	if out, err := vetcd(t, time.Minute, "snapshot", "delete", url("plain")); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	out, err = vetcd(t, time.Minute, "snapshot", "list", repo+"?insecure=true", "-o", "json")
	entries = nil
	if err != nil || json.Unmarshal([]byte(out), &entries) != nil || len(entries) != 1 || entries[0].Name != "secret" {
		t.Fatalf("list after delete: %v\n%s", err, out)
	}
}

// Scheduled snapshots to an OCI repository: the leader pushes one per
// tick, and retention deletes this cluster's oldest through the registry's
// delete API, never another cluster's.
func TestScheduledSnapshotsOCI(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	reg := testregistry.Start(t, testregistry.Options{})
	target := "oci://" + reg.Host + "/vetcd/sched:?insecure=true"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	loc, err := storage.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	b, err := storage.Open(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	// Another cluster's snapshot in the same repository.
	foreign := "vetcd-deadbeef-20200101T000000Z"
	fm := fmt.Sprintf(`{"formatVersion":1,"clusterID":"deadbeef","compression":"zstd","sha256":"%064x","size":1,"created":"2020-01-01T00:00:00Z"}`, 1)
	if err := b.Put(ctx, foreign, strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, foreign+snapshot.ManifestSuffix, strings.NewReader(fm), int64(len(fm))); err != nil {
		t.Fatal(err)
	}

	cfg := filepath.Join(t.TempDir(), "vetcd.yaml")
	conf := fmt.Sprintf("snapshots:\n  schedule: \"@every 2s\"\n  target: %q\n  retention: 2\n", target)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 1), 1, "--config", cfg)
	id := c.status(1).ClusterID
	ours := func() int {
		entries, err := snapshot.List(ctx, b, "vetcd-"+id+"-")
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		// A new snapshot is listed a moment before retention prunes the
		// oldest: 3 may show in passing, never more.
		if len(entries) > 3 {
			t.Fatalf("%d snapshots of this cluster kept, retention is 2", len(entries))
		}
		return len(entries)
	}
	// Four successful snapshots (each a new last-success time), none failed:
	// retention has had to delete at least two.
	seen := map[float64]bool{}
	waitFor(t, 90*time.Second, "four scheduled snapshots to oci://", func() bool {
		if f := c.metric(0, "vetcd_snapshot_failures_total"); f != 0 {
			out, _ := vetcd(t, 30*time.Second, "status", "--dir", dir)
			t.Fatalf("%v scheduled snapshots failed:\n%s", f, out)
		}
		if ts := c.metric(0, "vetcd_snapshot_last_success_timestamp_seconds"); ts > 0 {
			seen[ts] = true
		}
		ours()
		return len(seen) >= 4
	})
	waitFor(t, 10*time.Second, "retention keeps 2", func() bool { return ours() == 2 })
	if _, err := snapshot.ReadManifest(ctx, b, foreign); err != nil {
		t.Fatalf("retention deleted another cluster's snapshot: %v", err)
	}
}
