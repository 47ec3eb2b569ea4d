// Package bench holds Go benchmarks; the shell benchmarks beside it
// compare vetcd with stock etcd processes.
package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/migrate"
)

// kineSchema is kine v0.17.5's SQLite schema (pkg/drivers/sqlite).
var kineSchema = []string{
	`CREATE TABLE kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created INTEGER, deleted INTEGER,
		create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value BLOB, old_value BLOB)`,
	`CREATE INDEX kine_name_index ON kine (name)`,
	`CREATE INDEX kine_name_id_index ON kine (name,id)`,
	`CREATE INDEX kine_id_deleted_index ON kine (id,deleted)`,
	`CREATE INDEX kine_prev_revision_index ON kine (prev_revision)`,
	`CREATE UNIQUE INDEX kine_name_prev_revision_uindex ON kine (name, prev_revision)`,
}

const (
	liveKeys   = 200_000
	oldPerKey  = 3       // superseded revisions per live key
	deadKeys   = 100_000 // created then deleted: two rows each
	valueBytes = 1024
)

func key(i int) string { return fmt.Sprintf("/registry/configmaps/ns%03d/cm-%07d", i%100, i) }

func val(i, gen int) []byte {
	b := []byte(strings.Repeat(string(rune('a'+(i+gen)%26)), valueBytes))
	copy(b, fmt.Sprintf("k8s\x00%d-%d", i, gen))
	return b
}

// makeKineDB writes 1M rows in kine's schema: 200k live keys of 1 KiB
// (each with 3 older revisions), 100k keys created and deleted, every
// 10th live key on a 3600 s lease. Rows are interleaved as kine appends
// them.
func makeKineDB(b *testing.B, path string) int {
	b.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, s := range kineSchema {
		if _, err := db.Exec(s); err != nil {
			b.Fatal(err)
		}
	}
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	ins, err := tx.Prepare(`INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES (?,?,?,?,?,?,?,NULL)`)
	if err != nil {
		b.Fatal(err)
	}
	rows := 0
	last := map[int]int64{}
	insert := func(name string, created, deleted int, createRev, prevRev, lease int64, v []byte) int64 {
		r, err := ins.Exec(name, created, deleted, createRev, prevRev, lease, v)
		if err != nil {
			b.Fatal(err)
		}
		rows++
		id, _ := r.LastInsertId()
		return id
	}
	for gen := 0; gen <= oldPerKey; gen++ {
		for i := range liveKeys {
			var lease int64
			if i%10 == 0 {
				lease = 3600
			}
			created := 0
			if gen == 0 {
				created = 1
			}
			last[i] = insert(key(i), created, 0, last[i], last[i], lease, val(i, gen))
		}
	}
	for i := range deadKeys {
		name := fmt.Sprintf("/registry/pods/gone/p-%07d", i)
		id := insert(name, 1, 0, 0, 0, 0, val(i, 0)[:200])
		insert(name, 0, 1, id, id, 0, val(i, 0)[:200])
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		b.Fatal(err)
	}
	return rows
}

// benchLogger logs at info level to the benchmark's output, with
// timestamps: the migration's phases.
func benchLogger(b *testing.B) *zap.Logger {
	if os.Getenv("BENCH_VERBOSE") == "" {
		return zap.NewNop()
	}
	lg, err := zap.NewDevelopment()
	if err != nil {
		b.Fatal(err)
	}
	return lg
}

func freeURL(b *testing.B) url.URL {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// stockEtcd starts a plain one-member etcd with etcd's defaults (fsync on).
func stockEtcd(b *testing.B, dir string) *clientv3.Client {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cu, pu := freeURL(b), freeURL(b)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.QuotaBackendBytes = 8 << 30
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		b.Fatal(err)
	}
	<-e.Server.ReadyNotify()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, Logger: zap.NewNop(), MaxCallSendMsgSize: 2 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close(); e.Close() })
	return cli
}

// cachedKineDB returns a kine database built by makeKineDB, cached under
// the system temp dir in a directory named by its parameters (building it
// takes minutes), and linked into dir as state.db: the migration renames
// its source, and the link keeps the cached file where it is.
func cachedKineDB(b *testing.B, dir string) (path string, rows int) {
	b.Helper()
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("vetcd-bench-kine-v1-%d-%d-%d-%d", liveKeys, oldPerKey, deadKeys, valueBytes))
	db := filepath.Join(cache, "state.db")
	want := liveKeys*(oldPerKey+1) + 2*deadKeys
	if _, err := os.Stat(db); err != nil {
		if err := os.MkdirAll(cache, 0o700); err != nil {
			b.Fatal(err)
		}
		tmp := filepath.Join(cache, "building.db")
		for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
			_ = os.Remove(p)
		}
		t0 := time.Now()
		if n := makeKineDB(b, tmp); n != want {
			b.Fatalf("built %d rows, want %d", n, want)
		}
		for _, p := range []string{tmp + "-wal", tmp + "-shm"} {
			_ = os.Remove(p)
		}
		if err := os.Rename(tmp, db); err != nil {
			b.Fatal(err)
		}
		b.Logf("kine database built in %s, cached at %s", time.Since(t0).Round(time.Millisecond), db)
	}
	path = filepath.Join(dir, "state.db")
	if err := os.Link(db, path); err != nil {
		b.Fatal(err)
	}
	return path, want
}

// BenchmarkMigrateSQLite migrates 1M kine rows (200k live keys of 1 KiB)
// into a new member's data dir (the first-start path: read, staging
// writes, verification, snapshot, restore with the revision bump) and
// compares it with (a) one Put per key and (b) etcd's raw batched ingest
// of the same 200k keys (txns of 128 puts, 8 in flight, keys in memory,
// no verification): the floor. Run:
//
//	go test -run '^$' -bench MigrateSQLite -benchtime 1x ./bench/
func BenchmarkMigrateSQLite(b *testing.B) {
	dir := b.TempDir()
	src, rows := cachedKineDB(b, dir)
	fi, _ := os.Stat(src)
	b.Logf("kine database: %d rows, %d MiB", rows, fi.Size()>>20)
	mb := float64(liveKeys*valueBytes) / (1 << 20)
	ctx := context.Background()

	b.ResetTimer()
	// The migration (first-start path).
	t0 := time.Now()
	res, err := migrate.Seed(ctx, migrate.SeedOptions{
		Options: migrate.Options{Source: src, SourceOptions: migrate.SourceOptions{Quiet: -1}, Logger: benchLogger(b)},
		DataDir: filepath.Join(dir, "data"), WorkDir: filepath.Join(dir, "work"),
		Name: "m0", PeerURL: "http://127.0.0.1:2380", Token: "bench",
	})
	if err != nil {
		b.Fatal(err)
	}
	seed := time.Since(t0)
	for _, p := range res.Phases {
		b.Logf("  phase %-45s %s", p.Name, p.Took.Round(time.Millisecond))
	}
	if res.Keys != liveKeys {
		b.Fatalf("migrated %d keys, want %d", res.Keys, liveKeys)
	}
	b.StopTimer()

	// (b) the floor: raw batched ingest into stock etcd.
	ops := make([]clientv3.Op, liveKeys)
	for i := range liveKeys {
		ops[i] = clientv3.OpPut(key(i), string(val(i, oldPerKey)))
	}
	cli := stockEtcd(b, filepath.Join(dir, "floor"))
	t0 = time.Now()
	jobs := make(chan []clientv3.Op)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range jobs {
				if _, err := cli.Txn(ctx).Then(batch...).Commit(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < len(ops); i += 128 {
		jobs <- ops[i:min(i+128, len(ops))]
	}
	close(jobs)
	wg.Wait()
	floor := time.Since(t0)

	// (a) one Put per key, sequential, on a sample (it is slow).
	const sample = 20_000
	cli2 := stockEtcd(b, filepath.Join(dir, "naive"))
	t0 = time.Now()
	for i := range sample {
		if _, err := cli2.Put(ctx, key(i), string(val(i, oldPerKey))); err != nil {
			b.Fatal(err)
		}
	}
	naive := time.Since(t0) * liveKeys / sample

	rate := func(d time.Duration) (float64, float64) { return liveKeys / d.Seconds(), mb / d.Seconds() }
	sk, sm := rate(seed)
	fk, fm := rate(floor)
	nk, nm := rate(naive)
	b.ReportMetric(sk, "keys/s")
	b.ReportMetric(sm, "MB/s")
	b.ReportMetric(sk/nk, "x-one-put-per-key")
	b.ReportMetric(sk/fk, "x-batched-floor")
	b.Logf("migration (1M rows -> 200k keys, verified, snapshot+restore, revision %d > kine %d): %s, %.0f keys/s, %.1f MB/s",
		res.Revision, res.SourceRevision, seed.Round(time.Millisecond), sk, sm)
	b.Logf("(b) batched ingest floor (128/txn, 8 in flight): %s, %.0f keys/s, %.1f MB/s; migration is %.2fx", floor.Round(time.Millisecond), fk, fm, sk/fk)
	b.Logf("(a) one Put per key (measured on %d keys): %s for 200k, %.0f keys/s, %.1f MB/s; migration is %.1fx", sample, naive.Round(time.Millisecond), nk, nm, sk/nk)
}
