package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/testtools"
)

func TestCheckSourceVersion(t *testing.T) {
	tests := []struct {
		name, source, target string
		refused              bool
		mention              string
	}{
		{name: "3.7 into 3.7", source: "3.7.3", target: "3.7.3"},
		{name: "3.6 into 3.7", source: "3.6.16", target: "3.7.3"},
		{name: "newest 3.5", source: "3.5.35", target: "3.7.3"},
		{name: "first fixed 3.5", source: "3.5.26", target: "3.7.3"},
		{name: "older patch of the same minor", source: "3.7.0", target: "3.7.3"},
		{name: "3.5 with membership bugs", source: "3.5.25", target: "3.7.3", refused: true, mention: "snapshot route"},
		{name: "old 3.5", source: "3.5.0", target: "3.7.3", refused: true, mention: "upgrade the source to 3.5.26"},
		{name: "3.4", source: "3.4.34", target: "3.7.3", refused: true, mention: "older than 3.5"},
		{name: "downgrade", source: "3.8.0", target: "3.7.3", refused: true, mention: "downgrade"},
		{name: "garbage", source: "three", target: "3.7.3", refused: true, mention: "major.minor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSourceVersion(tc.source, tc.target)
			if (err != nil) != tc.refused {
				t.Fatalf("CheckSourceVersion(%s, %s) = %v, refused want %t", tc.source, tc.target, err, tc.refused)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrSourceVersion) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q: want ErrSourceVersion mentioning %q", err, tc.mention)
			}
		})
	}
}

// etcdServer is a source or target etcd for these tests.
type etcdServer struct {
	clientURL string
	cli       *clientv3.Client
}

// startEmbedEtcd starts a real etcd 3.7 member in this process (plain
// http), stopped when the test ends. A target gets vetcd's limits for a
// following cluster, as a replica with migrateFromDeployedEtcd has.
func startEmbedEtcd(t *testing.T, dir, name, peerURL string, target bool) etcdServer {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	cu, _ := url.Parse(testURL(t))
	pu, _ := url.Parse(peerURL)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = name + "=" + peerURL
	cfg.ListenMetricsUrls = nil
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	if target {
		RaiseTargetLimits(cfg)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		e.Close()
		t.Fatal("etcd not ready")
	}
	cli := newTestClient(t, cu.String())
	if target {
		cli.Close()
		if cli, err = DialTarget([]string{cu.String()}, nil, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { cli.Close(); e.Close() })
	return etcdServer{clientURL: cu.String(), cli: cli}
}

func newTestClient(t *testing.T, ep string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, Logger: zap.NewNop(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// preload writes n keys with some history before the migration.
func preload(t *testing.T, cli *clientv3.Client, n int) {
	t.Helper()
	for i := range n {
		if _, err := cli.Put(t.Context(), fmt.Sprintf("/registry/pre/%05d", i), strings.Repeat("x", 100)+fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 10 {
		if _, err := cli.Put(t.Context(), fmt.Sprintf("/registry/pre/%05d", i), "again"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(t.Context(), "/registry/pre/00001"); err != nil {
		t.Fatal(err)
	}
}

// migrateWhileWriting is the whole route against a source: version check,
// snapshot, restore into a fresh data dir, a target etcd started on it,
// Follow while a writer keeps writing to the source; then it checks every
// key, revision and acknowledged write.
func migrateWhileWriting(t *testing.T, src etcdServer) {
	lg := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	preload(t, src.cli, 2000)
	w := testtools.StartWriter(t, src.cli, testtools.WriterOptions{Keys: 300, DeleteEvery: 7, LeaseEvery: 11})

	st, err := CheckSource(ctx, src.cli, version.Version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("source %s at revision %d", st[0].Version, st[0].Revision)
	w.WaitCount(t, 50, time.Minute) // the snapshot starts while writes flow
	db := filepath.Join(t.TempDir(), "source.db")
	snapRev, err := SaveSnapshot(ctx, lg, src.cli, db)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	peer := testURL(t)
	if err := Restore(lg, db, RestoreTarget{Name: "vetcd-0", PeerURL: peer, DataDir: dataDir, Token: "t"}); err != nil {
		t.Fatal(err)
	}
	dst := startEmbedEtcd(t, dataDir, "vetcd-0", peer, true)
	resp, err := dst.cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != snapRev {
		t.Fatalf("restored target at revision %d, snapshot at %d: restore must keep revisions", resp.Header.Revision, snapRev)
	}

	// Two followers at once (a replica's and `vetcd migrate`'s): each
	// revision is copied once, whichever wins.
	var mu sync.Mutex
	var applied int64
	fctx, fcancel := context.WithCancel(ctx)
	const followers = 2
	followDone := make(chan error, followers)
	for range followers {
		go func() {
			_, err := Follow(fctx, FollowOptions{Source: src.cli, Target: dst.cli, SourceName: src.clientURL, SnapshotRevision: snapRev,
				From: snapRev, Logger: lg, OnApplied: func(rev int64) { mu.Lock(); applied = max(applied, rev); mu.Unlock() }})
			followDone <- err
		}()
	}
	var stopped bool
	t.Cleanup(func() {
		fcancel()
		for range followers {
			if !stopped {
				<-followDone
			}
		}
	})
	before := w.Count()
	// A lease with 1000 keys revoked while vetcd follows: one source
	// revision deleting them all, as when a lease of Kubernetes Events
	// expires.
	events, err := src.cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if _, err := src.cli.Put(ctx, fmt.Sprintf("/registry/events/ns/e%04d", i), strings.Repeat("e", 500), clientv3.WithLease(events.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.cli.Revoke(ctx, events.ID); err != nil {
		t.Fatal(err)
	}
	w.WaitCount(t, before+300, time.Minute) // writes keep flowing while vetcd follows
	w.Halt()
	final, err := src.cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	srcRev := final.Header.Revision
	if srcRev <= snapRev {
		t.Fatalf("no writes after the snapshot (snapshot %d, source %d)", snapRev, srcRev)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		a := applied
		mu.Unlock()
		if a == srcRev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("target caught up to %d of %d", a, srcRev)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fcancel()
	for range followers {
		if err := <-followDone; !errors.Is(err, context.Canceled) {
			t.Fatalf("Follow: %v", err)
		}
	}
	stopped = true

	got, err := dst.cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Revision != srcRev {
		t.Fatalf("target revision %d, source %d", got.Header.Revision, srcRev)
	}
	if len(got.Kvs) != len(final.Kvs) {
		t.Fatalf("target has %d keys, source %d", len(got.Kvs), len(final.Kvs))
	}
	byKey := map[string]int{}
	for i, kv := range got.Kvs {
		byKey[string(kv.Key)] = i
	}
	for _, s := range final.Kvs {
		i, ok := byKey[string(s.Key)]
		if !ok {
			t.Fatalf("key %s missing on the target", s.Key)
		}
		d := got.Kvs[i]
		if string(d.Value) != string(s.Value) || d.ModRevision != s.ModRevision || d.CreateRevision != s.CreateRevision ||
			d.Version != s.Version || d.Lease != s.Lease {
			t.Fatalf("key %s: target %+v, source %+v", s.Key, d, s)
		}
	}
	afterSnap := 0
	for key, a := range w.Acks() {
		if a.Revision > snapRev {
			afterSnap++
		}
		i, ok := byKey[key]
		switch {
		case a.Deleted && ok:
			t.Fatalf("acknowledged delete of %s at %d: key present on the target", key, a.Revision)
		case a.Deleted:
		case !ok:
			t.Fatalf("acknowledged write %s=%s at %d missing on the target", key, a.Value, a.Revision)
		case string(got.Kvs[i].Value) != a.Value || got.Kvs[i].ModRevision != a.Revision:
			t.Fatalf("acknowledged write %s=%s at %d: target has %s at %d", key, a.Value, a.Revision, got.Kvs[i].Value, got.Kvs[i].ModRevision)
		}
	}
	if afterSnap == 0 {
		t.Fatal("no acknowledged write landed after the snapshot: the catch-up was not exercised")
	}
	m, ok, err := ReadEtcdMarker(ctx, dst.cli)
	if err != nil || !ok || m.State != StateFollowing || m.Revision != srcRev {
		t.Fatalf("marker %+v ok %t err %v, want following at %d", m, ok, err, srcRev)
	}
	t.Logf("snapshot at %d, %d keys copied, caught up to %d (%d acknowledged writes, %d of their keys last written after the snapshot)",
		snapRev, len(got.Kvs), srcRev, w.Count(), afterSnap)

	// A write of the target's own is the cut-over: following stops with
	// ErrDiverged instead of copying source revisions at the wrong place.
	if _, err := dst.cli.Put(ctx, "/registry/own", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.cli.Put(ctx, "/registry/late", "x"); err != nil {
		t.Fatal(err)
	}
	last, err := Follow(ctx, FollowOptions{Source: src.cli, Target: dst.cli, From: srcRev, Logger: lg})
	if !errors.Is(err, ErrDiverged) || last != srcRev {
		t.Fatalf("Follow after a target write = %d, %v; want %d, ErrDiverged", last, err, srcRev)
	}
	if _, err := CutOver(ctx, dst.cli, srcRev+5, "test"); err == nil || !strings.Contains(err.Error(), "not") {
		t.Fatalf("CutOver before the target holds the revision = %v", err)
	}
	if m, err := CutOver(ctx, dst.cli, srcRev, "test"); err != nil || m.State != StateDone {
		t.Fatalf("CutOver = %+v, %v", m, err)
	}
	if _, err := CutOver(ctx, dst.cli, 0, "again"); !errors.Is(err, ErrCutOver) {
		t.Fatalf("second CutOver = %v; want ErrCutOver", err)
	}
	if _, err := Follow(ctx, FollowOptions{Source: src.cli, Target: dst.cli, From: srcRev, Logger: lg}); !errors.Is(err, ErrCutOver) {
		t.Fatalf("Follow after the cut-over = %v; want ErrCutOver", err)
	}
}

func TestMigrateFromEtcd37WhileWriting(t *testing.T) {
	src := startEmbedEtcd(t, t.TempDir(), "src", testURL(t), false)
	migrateWhileWriting(t, src)
}

func TestMigrateFromEtcd36WhileWriting(t *testing.T) {
	p := testtools.StartEtcdProcess(t, testtools.Path(t, "etcd36"), filepath.Join(t.TempDir(), "src"))
	src := etcdServer{clientURL: p.ClientURL, cli: p.Client}
	st, err := src.cli.Status(t.Context(), src.clientURL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.Version, "3.6.") {
		t.Fatalf("etcd36 reports version %s", st.Version)
	}
	migrateWhileWriting(t, src)
}

// TestUnreachableSource: a source that does not answer is a clear error
// before anything is written.
func TestUnreachableSource(t *testing.T) {
	lg := zaptest.NewLogger(t)
	src := EtcdSource{Endpoints: []string{testURL(t)}} // nothing listens
	cli, err := src.Dial(lg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = CheckSource(ctx, cli, version.Version)
	if !errors.Is(err, ErrSourceUnreachable) || !strings.Contains(err.Error(), src.Endpoints[0]) {
		t.Fatalf("CheckSource = %v; want ErrSourceUnreachable naming %s", err, src.Endpoints[0])
	}
}

// TestRestoreRefusesNonEmptyDir: Restore never writes into existing data.
func TestRestoreRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Restore(zaptest.NewLogger(t), filepath.Join(t.TempDir(), "missing.db"), RestoreTarget{Name: "n", PeerURL: "http://127.0.0.1:1", DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Restore into a non-empty dir = %v", err)
	}
	if _, err := os.Stat(dir + ".restoring"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("restore left %s.restoring behind", dir)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("dir changed: %v", entries)
	}
}
