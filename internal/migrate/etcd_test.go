package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
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
	testtools.WaitFor(t, time.Minute, "the target caught up to the source", func(context.Context) error {
		mu.Lock()
		a := applied
		mu.Unlock()
		if a != srcRev {
			return fmt.Errorf("target caught up to %d of %d", a, srcRev)
		}
		return nil
	})
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

// restoreTarget snapshots src and restores it into a fresh target etcd,
// as a founding replica does; it returns the target and the snapshot
// revision.
func restoreTarget(t *testing.T, lg *zap.Logger, src etcdServer) (etcdServer, int64) {
	t.Helper()
	db := filepath.Join(t.TempDir(), "source.db")
	snapRev, err := SaveSnapshot(t.Context(), lg, src.cli, db)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	peer := testURL(t)
	if err := Restore(lg, db, RestoreTarget{Name: "vetcd-0", PeerURL: peer, DataDir: dataDir, Token: "t"}); err != nil {
		t.Fatal(err)
	}
	return startEmbedEtcd(t, dataDir, "vetcd-0", peer, true), snapRev
}

// following is a Follow running in the background of a test.
type following struct {
	mu      sync.Mutex
	applied int64
	done    chan struct{}
	last    int64
	err     error
}

// startFollow runs Follow from the snapshot revision until the test ends.
func startFollow(t *testing.T, lg *zap.Logger, src, dst etcdServer, snapRev int64) *following {
	t.Helper()
	f := &following{applied: snapRev, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer close(f.done)
		last, err := Follow(ctx, FollowOptions{Source: src.cli, Target: dst.cli, SourceName: src.clientURL, SnapshotRevision: snapRev,
			From: snapRev, Logger: lg, OnApplied: func(rev int64) { f.mu.Lock(); f.applied = rev; f.mu.Unlock() }})
		f.mu.Lock()
		f.last, f.err = last, err
		f.mu.Unlock()
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

// ended reports whether Follow returned, and with what.
func (f *following) ended() (bool, int64, error) {
	select {
	case <-f.done:
		f.mu.Lock()
		defer f.mu.Unlock()
		return true, f.last, f.err
	default:
		return false, 0, nil
	}
}

// waitApplied waits until Follow copied source revision rev.
func (f *following) waitApplied(t *testing.T, rev int64, timeout time.Duration) {
	t.Helper()
	testtools.WaitFor(t, timeout, fmt.Sprintf("source revision %d copied", rev), func(context.Context) error {
		f.mu.Lock()
		a := f.applied
		f.mu.Unlock()
		if a >= rev {
			return nil
		}
		if done, last, err := f.ended(); done {
			t.Fatalf("Follow ended at source revision %d with %v; source revision %d was never copied", last, err, rev)
		}
		return fmt.Errorf("copied up to %d", a)
	})
}

// keepAlive keeps lease id alive from cli until the test ends, as
// kube-apiserver keeps its master lease alive.
func keepAlive(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := cli.KeepAlive(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range ch {
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestFollowSurvivesStalledSource: a deployed etcd that stops answering
// for longer than the TTL of a lease its client keeps alive (SIGSTOP
// 12 s, a 5 s lease, as kube-apiserver keeps its master lease) must not
// end the following: the lease must not expire on the target, and the
// source's writes after it resumes are copied with their revisions.
func TestFollowSurvivesStalledSource(t *testing.T) {
	p := testtools.StartEtcdProcess(t, testtools.Path(t, "etcd36"), filepath.Join(t.TempDir(), "src"))
	src := etcdServer{clientURL: p.ClientURL, cli: p.Client}
	lg := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	preload(t, src.cli, 100)
	keeper := newTestClient(t, src.clientURL)
	defer keeper.Close()
	// One lease in the snapshot, one granted after it (copied by Follow).
	grant := func(key string) {
		l, err := keeper.Grant(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keeper.Put(ctx, key, "10.0.0.1", clientv3.WithLease(l.ID)); err != nil {
			t.Fatal(err)
		}
		keepAlive(t, keeper, l.ID)
	}
	grant("/registry/masterleases/10.0.0.1")
	dst, snapRev := restoreTarget(t, lg, src)
	f := startFollow(t, lg, src, dst, snapRev)
	grant("/registry/masterleases/10.0.0.2")
	resp, err := src.cli.Put(ctx, "/registry/before", "x")
	if err != nil {
		t.Fatal(err)
	}
	f.waitApplied(t, resp.Header.Revision, 30*time.Second)

	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The stall is the fault: it must outlast the lease's TTL, and while
	// the source is stopped there is no event to await.
	time.Sleep(12 * time.Second)
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var after *clientv3.PutResponse
	testtools.WaitFor(t, 30*time.Second, "the resumed source takes a write", func(pctx context.Context) error {
		var err error
		after, err = src.cli.Put(pctx, "/registry/after", "y")
		return err
	})
	f.waitApplied(t, after.Header.Revision, 30*time.Second)

	// The resumed source may still end leases of its own (their deletes
	// are copied too): compare once the target holds its last revision.
	var final *clientv3.GetResponse
	testtools.WaitFor(t, 30*time.Second, "the target at the source's last revision", func(context.Context) error {
		var err error
		final, err = src.cli.Get(ctx, "/registry/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		m, ok, err := ReadEtcdMarker(ctx, dst.cli)
		if err == nil && ok && m.Revision == final.Header.Revision {
			return nil
		}
		if done, last, err := f.ended(); done {
			t.Fatalf("Follow ended at %d with %v after the source resumed", last, err)
		}
		return fmt.Errorf("marker %+v (%v), source at %d", m, err, final.Header.Revision)
	})
	got, err := dst.cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Revision != final.Header.Revision || len(got.Kvs) != len(final.Kvs) {
		t.Fatalf("target has %d keys at revision %d, source %d at %d", len(got.Kvs), got.Header.Revision, len(final.Kvs), final.Header.Revision)
	}
	for i, s := range final.Kvs {
		d := got.Kvs[i]
		if string(d.Key) != string(s.Key) || string(d.Value) != string(s.Value) || d.ModRevision != s.ModRevision || d.Lease != s.Lease {
			t.Fatalf("key %s: target %+v, source %+v", s.Key, d, s)
		}
	}
	if done, last, err := f.ended(); done {
		t.Fatalf("Follow ended at %d with %v after the source resumed", last, err)
	}
	// Leases the source ended are revoked on the target too, once their
	// deletes are copied; the ones it holds are still there.
	testtools.WaitFor(t, 20*time.Second, "the target holds the source's leases", func(context.Context) error {
		sl, err1 := src.cli.Leases(ctx)
		dl, err2 := dst.cli.Leases(ctx)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if fmt.Sprint(leaseIDs(sl)) != fmt.Sprint(leaseIDs(dl)) {
			return fmt.Errorf("target leases %x, source leases %x", leaseIDs(dl), leaseIDs(sl))
		}
		return nil
	})
	if r, err := dst.cli.Get(ctx, "x"); err != nil || r.Header.Revision != final.Header.Revision {
		t.Fatalf("revoking the ended leases on the target moved its revision: %v %v, source at %d", r, err, final.Header.Revision)
	}
	masters, err := src.cli.Get(ctx, "/registry/masterleases/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("source revision %d copied after a 12 s stall; target at %d; %d of 2 master lease keys left on the source",
		after.Header.Revision, final.Header.Revision, masters.Count)
}

// leaseIDs lists the lease IDs of a Leases answer, sorted.
func leaseIDs(r *clientv3.LeaseLeasesResponse) []int64 {
	var ids []int64
	for _, l := range r.Leases {
		ids = append(ids, int64(l.ID))
	}
	slices.Sort(ids)
	return ids
}

// TestFollowCutOverWhileSourceDown: clients moved over and wrote to the
// target while the source does not answer (stopped after the move): the
// write is the cut-over, seen without waiting for another source
// revision, so that copied leases stop being kept alive and expire.
func TestFollowCutOverWhileSourceDown(t *testing.T) {
	p := testtools.StartEtcdProcess(t, testtools.Path(t, "etcd36"), filepath.Join(t.TempDir(), "src"))
	src := etcdServer{clientURL: p.ClientURL, cli: p.Client}
	lg := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	preload(t, src.cli, 100)
	dst, snapRev := restoreTarget(t, lg, src)
	f := startFollow(t, lg, src, dst, snapRev)
	resp, err := src.cli.Put(ctx, "/registry/before", "x")
	if err != nil {
		t.Fatal(err)
	}
	f.waitApplied(t, resp.Header.Revision, 30*time.Second)
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) })
	own, err := dst.cli.Put(ctx, "/registry/own", "z")
	if err != nil {
		t.Fatal(err)
	}
	testtools.WaitFor(t, 20*time.Second, "the target's own write seen as the cut-over while the source is down", func(context.Context) error {
		done, last, err := f.ended()
		if !done {
			return fmt.Errorf("Follow still runs; the target's own write is at %d", own.Header.Revision)
		}
		if !errors.Is(err, ErrDiverged) || last != resp.Header.Revision {
			t.Fatalf("Follow = %d, %v; want %d, ErrDiverged (clients moved over)", last, err, resp.Header.Revision)
		}
		return nil
	})
}

// TestFollowStopsOnSelfDivergence: a target revision that no client's
// write explains (the deletes of a copied lease ending on the target)
// is not a cut-over: Follow stops with ErrSelfDiverged, loudly, and the
// marker stays following.
func TestFollowStopsOnSelfDivergence(t *testing.T) {
	p := testtools.StartEtcdProcess(t, testtools.Path(t, "etcd36"), filepath.Join(t.TempDir(), "src"))
	src := etcdServer{clientURL: p.ClientURL, cli: p.Client}
	lg := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	preload(t, src.cli, 100)
	dst, snapRev := restoreTarget(t, lg, src)
	f := startFollow(t, lg, src, dst, snapRev)
	l, err := src.cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := src.cli.Put(ctx, "/registry/events/e1", "e", clientv3.WithLease(l.ID))
	if err != nil {
		t.Fatal(err)
	}
	f.waitApplied(t, resp.Header.Revision, 30*time.Second)
	// The copied lease ends on the target alone.
	if _, err := dst.cli.Revoke(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := src.cli.Put(ctx, "/registry/next", "n"); err != nil {
		t.Fatal(err)
	}
	testtools.WaitFor(t, 20*time.Second, "Follow stops after the target's revision moved on its own", func(context.Context) error {
		done, last, err := f.ended()
		if !done {
			return fmt.Errorf("Follow still runs (it copied source revision %d; the target then revoked the lease alone)", resp.Header.Revision)
		}
		if !errors.Is(err, ErrSelfDiverged) || errors.Is(err, ErrDiverged) || last != resp.Header.Revision {
			t.Fatalf("Follow = %d, %v; want %d, ErrSelfDiverged (not a cut-over)", last, err, resp.Header.Revision)
		}
		return nil
	})
	m, ok, err := ReadEtcdMarker(ctx, dst.cli)
	if err != nil || !ok || m.State != StateFollowing || m.Revision != resp.Header.Revision {
		t.Fatalf("marker %+v ok %t err %v; want following at %d", m, ok, err, resp.Header.Revision)
	}
}
