package e2e

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vetcd/vetcd/internal/migrate"
	"github.com/vetcd/vetcd/internal/migrate/kinetest"
)

// kineFile runs a real kine with a Kubernetes-like workload on a fresh
// SQLite file, stops it, and returns the file, kine's live set and its
// revision.
func kineFile(t *testing.T) (string, map[string]kinetest.Want, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kine", "state.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	k := kinetest.Start(t, path)
	kinetest.Workload(t, k.Client)
	live, rev := kinetest.Live(t, k.Client)
	k.Stop()
	return path, live, rev
}

// requireKineData checks the cluster holds exactly kine's live set, TTL
// keys on leases with their TTL, and a revision above kine's.
func requireKineData(t *testing.T, cli *clientv3.Client, live map[string]kinetest.Want, kineRev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	n, ttls := 0, 0
	for _, kv := range r.Kvs {
		if strings.HasPrefix(string(kv.Key), migrate.MarkerPrefix) {
			continue
		}
		n++
		w, ok := live[string(kv.Key)]
		if !ok || w.Value != string(kv.Value) {
			t.Errorf("key %s: etcd has a value kine does not serve", kv.Key)
			continue
		}
		if (kv.Lease != 0) != (w.TTL > 0) {
			t.Errorf("key %s: lease %x, kine TTL %d", kv.Key, kv.Lease, w.TTL)
		}
		if kv.Lease != 0 {
			l, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
			if err != nil || l.GrantedTTL != w.TTL || l.TTL <= 0 {
				t.Errorf("key %s: lease %+v %v, want TTL %d", kv.Key, l, err, w.TTL)
			}
			ttls++
		}
	}
	if n != len(live) || ttls == 0 {
		t.Errorf("etcd holds %d keys (%d with TTL), kine %d", n, ttls, len(live))
	}
	if r.Header.Revision <= kineRev {
		t.Errorf("revision %d not above kine's %d", r.Header.Revision, kineRev)
	}
}

// TestMigrateSQLiteAtFirstStart: `vetcd up --config` with
// migrateFrom.sqlite founds the cluster from kine's file before it is
// ready, and renames the source.
func TestMigrateSQLiteAtFirstStart(t *testing.T) {
	src, live, kineRev := kineFile(t)
	cfg := filepath.Join(t.TempDir(), "vetcd.yaml")
	if err := os.WriteFile(cfg, []byte("migrateFrom:\n  sqlite: "+src+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 1), 1, "--config", cfg)
	requireKineData(t, c.client(1), live, kineRev)
	if _, err := os.Stat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("source not renamed: %v", err)
	}
	if _, err := os.Stat(src + migrate.MigratedSuffix); err != nil {
		t.Errorf("renamed source: %v", err)
	}
}

// TestMigrateCommand: `vetcd migrate` into a running local cluster; bad
// sources and a second run are refused with exit code 2 and change
// nothing.
func TestMigrateCommand(t *testing.T) {
	src, live, kineRev := kineFile(t)
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 1), 1)

	bad := filepath.Join(t.TempDir(), "notes.db")
	if err := os.WriteFile(bad, []byte("not sqlite"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := vetcd(t, time.Minute, "migrate", "--from", "sqlite://"+bad, "--dir", dir)
	if exitCode(err) != 2 || !strings.Contains(out, "not an SQLite database") {
		t.Fatalf("bad source: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(bad); string(b) != "not sqlite" {
		t.Fatal("the refused source was changed")
	}

	out, err = vetcd(t, 5*time.Minute, "migrate", "--from", "sqlite://"+src, "--dir", dir)
	if err != nil {
		t.Fatalf("vetcd migrate: %v\n%s", err, out)
	}
	if !strings.Contains(out, "migrated "+src) {
		t.Errorf("no summary: %s", out)
	}
	requireKineData(t, c.client(1), live, kineRev)

	if err := os.Rename(src+migrate.MigratedSuffix, src); err != nil {
		t.Fatal(err)
	}
	out, err = vetcd(t, time.Minute, "migrate", "--from", "sqlite://"+src, "--dir", dir)
	if exitCode(err) != 2 || !strings.Contains(out, "already holds a finished migration") {
		t.Fatalf("second migration: %v\n%s", err, out)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
