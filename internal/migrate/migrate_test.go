package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/migrate/kinetest"
)

// kineDB runs a real kine on a fresh SQLite file with the Kubernetes-like
// workload, stops it, and returns the file, kine's live set and revision.
func kineDB(t *testing.T) (string, map[string]kinetest.Want, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	k := kinetest.Start(t, path)
	want := kinetest.Workload(t, k.Client)
	live, rev := kinetest.Live(t, k.Client)
	if len(live) != len(want) {
		// kine may hold its own /registry/health; everything the workload
		// expects must be there as written.
		for key, w := range want {
			if live[key] != w {
				t.Fatalf("kine serves %s = %+v, workload wrote %+v", key, live[key], w)
			}
		}
	}
	k.Stop()
	return path, live, rev
}

func testURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

// startMember starts a real etcd member on dataDir (plain http).
func startMember(t *testing.T, dataDir, name, peerURL string) *clientv3.Client {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dataDir
	cu, _ := url.Parse(testURL(t))
	pu, _ := url.Parse(peerURL)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = name + "=" + peerURL
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
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
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, Logger: zap.NewNop()})
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close(); e.Close() })
	return cli
}

// requireMigrated checks the cluster holds exactly kine's live set with
// leases of the right TTL, a revision above kine's, the old revisions
// compacted, and the done marker.
func requireMigrated(t *testing.T, cli *clientv3.Client, live map[string]kinetest.Want, kineRev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]kinetest.Want{}
	for _, kv := range r.Kvs {
		if strings.HasPrefix(string(kv.Key), MarkerPrefix) {
			continue
		}
		w := kinetest.Want{Value: string(kv.Value)}
		if kv.Lease != 0 {
			ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
			if err != nil {
				t.Fatalf("lease of %s: %v", kv.Key, err)
			}
			if ttl.TTL <= 0 {
				t.Fatalf("lease of %s has expired or does not exist (TTL %d)", kv.Key, ttl.TTL)
			}
			w.TTL = ttl.GrantedTTL
		}
		got[string(kv.Key)] = w
	}
	if len(got) != len(live) {
		t.Errorf("etcd holds %d keys, kine %d", len(got), len(live))
	}
	ttls := 0
	for k, w := range live {
		if got[k] != w {
			t.Errorf("key %s: etcd %+v, kine %+v", k, got[k], w)
		}
		if w.TTL > 0 {
			ttls++
		}
	}
	for k := range got {
		if _, ok := live[k]; !ok {
			t.Errorf("etcd holds %s, which kine does not serve", k)
		}
	}
	if ttls == 0 {
		t.Error("the workload made no TTL keys: the lease check proves nothing")
	}
	if r.Header.Revision <= kineRev {
		t.Errorf("etcd revision %d is not above kine's %d", r.Header.Revision, kineRev)
	}
	if _, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithRev(kineRev)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("a read at kine's revision %d: %v, want compacted", kineRev, err)
	}
	m, ok, err := ReadMarker(ctx, cli)
	if err != nil || !ok || m.State != StateDone || m.Keys != int64(len(live)) {
		t.Errorf("marker %+v %v %v", m, ok, err)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

var errCrash = errors.New("injected crash")

// TestSeedFromKine migrates a real kine's file into a new member's data
// dir, crashing halfway first: the source stays untouched, no data dir
// appears, and the rerun resumes to exactly kine's live set.
func TestSeedFromKine(t *testing.T) {
	src, live, kineRev := kineDB(t)
	before := fileSum(t, src)
	dir := t.TempDir()
	peer := testURL(t)
	opts := SeedOptions{
		Options: Options{Source: src, SourceOptions: SourceOptions{Quiet: 200 * time.Millisecond}, Workers: 2, Logger: zaptest.NewLogger(t), batchOps: 16},
		DataDir: filepath.Join(dir, "data"), WorkDir: filepath.Join(dir, "work"), Name: "m0", PeerURL: peer, Token: "t",
	}
	crashed := opts
	crashed.Hook = func(n int) error {
		if n == 20 {
			return errCrash
		}
		return nil
	}
	if _, err := Seed(context.Background(), crashed); !errors.Is(err, errCrash) {
		t.Fatalf("crashed seed: %v", err)
	}
	if _, err := os.Stat(opts.DataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a crashed seed left a data dir: %v", err)
	}
	if fileSum(t, src) != before {
		t.Fatal("the crashed seed changed the source")
	}
	rerun, batches := opts, 0
	rerun.Hook = func(n int) error { batches = n; return nil }
	res, err := Seed(context.Background(), rerun)
	if err != nil {
		t.Fatal(err)
	}
	if total := (len(live) + 15) / 16; !res.Resumed || batches > total-progressEvery {
		t.Errorf("the rerun wrote %d of %d batches (resumed %v): it did not continue where the crash left off", batches, total, res.Resumed)
	}
	if res.Keys != int64(len(live)) || res.Revision <= kineRev || res.SourceRevision != kineRev {
		t.Errorf("result %+v; kine has %d keys at revision %d", res, len(live), kineRev)
	}
	if _, err := os.Stat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("source still at %s: %v", src, err)
	}
	if fileSum(t, src+MigratedSuffix) != before {
		t.Error("the renamed source differs from the original")
	}
	if _, err := os.Stat(opts.WorkDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("work dir left behind: %v", err)
	}
	cli := startMember(t, opts.DataDir, "m0", peer)
	requireMigrated(t, cli, live, kineRev)

	// A second seed finds no source: nothing to migrate twice.
	if _, err := Seed(context.Background(), SeedOptions{Options: opts.Options, DataDir: filepath.Join(dir, "data2"),
		WorkDir: filepath.Join(dir, "work2"), Name: "m0", PeerURL: peer}); !errors.Is(err, ErrSourceMissing) {
		t.Errorf("second seed: %v", err)
	}
}

// TestIntoRunningCluster migrates through a client into a running member:
// it refuses a target with user keys, crashes halfway and resumes, raises
// the revision above kine's, and refuses to run twice. With force it
// first saves the target's keys.
func TestIntoRunningCluster(t *testing.T) {
	src, live, kineRev := kineDB(t)
	before := fileSum(t, src)
	cli := startMember(t, filepath.Join(t.TempDir(), "m"), "m", testURL(t))
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/registry/old/user-key", "x"); err != nil {
		t.Fatal(err)
	}
	o := IntoOptions{Options: Options{Source: src, SourceOptions: SourceOptions{Quiet: -1}, Workers: 2, Logger: zaptest.NewLogger(t), batchOps: 16}}
	if _, err := Into(ctx, cli, o); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("into a non-empty target: %v", err)
	}
	if r, _ := cli.Get(ctx, "/registry/old/user-key"); len(r.Kvs) != 1 {
		t.Fatal("the refused migration changed the target")
	}
	if _, ok, _ := ReadMarker(ctx, cli); ok {
		t.Fatal("the refused migration wrote a marker")
	}
	saved := filepath.Join(t.TempDir(), "saved.db")
	o.Force = true
	o.MoveAside = func(ctx context.Context) (string, error) {
		rc, err := cli.Snapshot(ctx)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		f, err := os.Create(saved)
		if err != nil {
			return "", err
		}
		defer f.Close()
		_, err = f.ReadFrom(rc)
		return saved, err
	}
	crashed := o
	crashed.Hook = func(n int) error {
		if n == 20 {
			return errCrash
		}
		return nil
	}
	if _, err := Into(ctx, cli, crashed); !errors.Is(err, errCrash) {
		t.Fatalf("crashed migration: %v", err)
	}
	if fileSum(t, src) != before {
		t.Fatal("the crashed migration changed the source")
	}
	if fi, err := os.Stat(saved); err != nil || fi.Size() == 0 {
		t.Fatalf("force did not save the target first: %v", err)
	}
	res, err := Into(ctx, cli, o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed {
		t.Error("the rerun did not resume")
	}
	requireMigrated(t, cli, live, kineRev)
	if fileSum(t, src+MigratedSuffix) != before {
		t.Error("renamed source differs")
	}
	// Never twice, even when the source is put back.
	if err := os.Rename(src+MigratedSuffix, src); err != nil {
		t.Fatal(err)
	}
	if _, err := Into(ctx, cli, o); !errors.Is(err, ErrAlreadyMigrated) {
		t.Errorf("second migration: %v", err)
	}
}

// TestBadSources: a missing file, a non-SQLite file, a corrupt SQLite file
// and a non-kine SQLite file each give their error and change nothing.
func TestBadSources(t *testing.T) {
	good, _, _ := kineDB(t)
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		make func(path string)
		want error
	}{
		{"missing", func(string) {}, ErrSourceMissing},
		{"text file", func(p string) { write(t, p, []byte("not a database\n")) }, ErrNotSQLite},
		{"empty file", func(p string) { write(t, p, nil) }, ErrNotSQLite},
		{"corrupt kine database", func(p string) {
			b := bytes.Clone(goodBytes)
			// Keep the header page; overwrite the middle of the file.
			for i := len(b) / 3; i < len(b)/3+3*4096 && i < len(b); i++ {
				b[i] = byte(i * 7)
			}
			write(t, p, b)
		}, ErrCorrupt},
		{"sqlite without kine", func(p string) {
			db, err := sql.Open("sqlite", p)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec("CREATE TABLE pods (name TEXT, value BLOB); INSERT INTO pods VALUES ('a', 'b')"); err != nil {
				t.Fatal(err)
			}
		}, ErrNotKine},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "state.db")
			tc.make(src)
			snap := dirSnapshot(t, dir)
			_, err := Seed(context.Background(), SeedOptions{
				Options: Options{Source: src, SourceOptions: SourceOptions{Quiet: -1}},
				DataDir: filepath.Join(dir, "data"), WorkDir: filepath.Join(dir, "work"), Name: "m0", PeerURL: "http://127.0.0.1:1",
			})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), src) {
				t.Errorf("error %q does not name the file", err)
			}
			if after := dirSnapshot(t, dir); after != snap {
				t.Errorf("the failed migration changed the directory:\nbefore %s\nafter  %s", snap, after)
			}
		})
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// dirSnapshot lists the files of dir with their hashes.
func dirSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&sb, "%s ", strings.TrimPrefix(p, dir))
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&sb, "%x ", sha256.Sum256(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// TestReadWhileKineRuns reads a database kine has open in WAL mode (its
// latest writes still in the WAL) and gets exactly kine's live set; while
// kine is being written to, the source is refused.
func TestReadWhileKineRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	k := kinetest.Start(t, path)
	kinetest.Workload(t, k.Client)
	live, _ := kinetest.Live(t, k.Client)
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("kine's WAL is empty (%v): the test would not read through a WAL", err)
	}
	ctx := context.Background()
	src, err := OpenSQLite(ctx, path, SourceOptions{Quiet: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.SourceStats(ctx)
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	h := newHasher()
	keys := make([]string, 0, len(live))
	for key := range live {
		keys = append(keys, key)
	}
	sortStrings(keys)
	for _, key := range keys {
		h.add([]byte(key), []byte(live[key].Value), live[key].TTL)
	}
	if want := h.stats(); got != want {
		t.Fatalf("read %+v while kine runs, kine serves %+v", got, want)
	}

	// Now keep writing through kine: the source must be refused.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond) // a steady writer, well inside the quiet period
		defer tick.Stop()
		for i := 0; wctx.Err() == nil; i++ {
			_ = kinetest.Create(wctx, k.Client, fmt.Sprintf("/registry/pods/busy-%d", i), "v", 0)
			select {
			case <-wctx.Done():
			case <-tick.C:
			}
		}
	}()
	defer func() { stop(); wg.Wait() }()
	_, err = OpenSQLite(ctx, path, SourceOptions{Quiet: 500 * time.Millisecond})
	if !errors.Is(err, ErrSourceBusy) {
		t.Fatalf("open while kine writes: %v, want ErrSourceBusy", err)
	}
}

func sortStrings(s []string) { slices.Sort(s) }

// TestKineNotInBinary: kine is a test dependency only.
func TestKineNotInBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../cmd/vetcd").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "k3s-io/kine") {
			t.Fatalf("the vetcd binary links %s", l)
		}
	}
	if !strings.Contains(string(out), "modernc.org/sqlite") {
		t.Log("note: the binary does not link modernc.org/sqlite yet")
	}
}
