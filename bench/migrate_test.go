// Package bench holds Go benchmarks; the shell benchmarks beside it
// compare vetcd with stock etcd processes.
package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/version"
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

// stockEtcd starts a plain one-member etcd with etcd's defaults (fsync on),
// stopped when the benchmark ends.
func stockEtcd(b *testing.B, dir string) *clientv3.Client {
	cli, stop := startStockEtcd(b, dir)
	b.Cleanup(stop)
	return cli
}

// startStockEtcd starts a plain one-member etcd with etcd's defaults
// (fsync on, --max-txn-ops 128, 1.5 MiB requests); stop stops it (once).
func startStockEtcd(b *testing.B, dir string) (cli *clientv3.Client, stop func()) {
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
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		e.Close()
		b.Fatal("stock etcd not ready after 1m")
	}
	cli, err = clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, Logger: zap.NewNop(), MaxCallSendMsgSize: 2 << 20})
	if err != nil {
		e.Close()
		b.Fatal(err)
	}
	var once sync.Once
	return cli, func() { once.Do(func() { cli.Close(); e.Close() }) }
}

// cachedKineDB returns a kine database built by makeKineDB, cached under
// the system temp dir in a directory named by its parameters (building it
// takes minutes). Link it into a run's directory (linkSource): the
// migration renames its source, and the link keeps the cached file.
func cachedKineDB(b *testing.B) (path string, rows int) {
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
	return db, want
}

// linkSource hard-links the cached database into dir as state.db.
func linkSource(b *testing.B, cache, dir string) string {
	b.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "state.db")
	if err := os.Link(cache, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// warm reads the file once, untimed, so that the migration reads it
// from the page cache, as at a first start right after kine stopped.
func warm(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
}

// batchedIngest is the floor (b): the keys, already in memory, as txns of
// 128 puts (etcd's default --max-txn-ops), 8 in flight.
func batchedIngest(ctx context.Context, cli *clientv3.Client, ops []clientv3.Op) error {
	jobs := make(chan []clientv3.Op)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range jobs {
				if _, err := cli.Txn(ctx).Then(batch...).Commit(); err != nil {
					errs <- err
					for range jobs {
					}
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
	close(errs)
	return <-errs
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkMigrateSQLite migrates 1M kine rows (200k live keys of 1 KiB)
// into a new member's data dir with migrate.Seed, the first-start path:
// open and check the source, read the newest row of every key, write
// etcd's backend file, restore it into a member data dir with the
// revision bump, read that back and verify it against the source, rename
// the source. It compares that with (b) etcd's raw batched ingest of the
// same 200k keys into a stock etcd (fsync on, txns of 128 puts, 8 in
// flight, keys already in memory, no verification): the floor; and with
// (a) one Put per key, sequential, measured on a sample and scaled. The
// migration and the floor alternate for BENCH_ROUNDS rounds (default 3)
// and report medians: this machine is shared, and one run says little.
// The source is read once, untimed, before each round (a warm page cache,
// as at a first start right after kine stopped).
// With BENCH_OUT set it writes BENCH_OUT/migrate.md for BENCHMARKS.md.
// Run:
//
//	BENCH_OUT=bench/out go test -run '^$' -bench '^BenchmarkMigrateSQLite$' -benchtime 1x -timeout 60m ./bench/
//
// (make -C bench migrate). A relative BENCH_OUT is relative to the
// repository root, where that command runs. BENCH_ROUNDS and
// BENCH_NAIVE_SAMPLE change the rounds and the size of the
// one-Put-per-key sample.
func BenchmarkMigrateSQLite(b *testing.B) {
	rounds := envInt(b, "BENCH_ROUNDS", 5)
	sample := min(envInt(b, "BENCH_NAIVE_SAMPLE", 20_000), liveKeys)
	dir := b.TempDir()
	cache, rows := cachedKineDB(b)
	fi, err := os.Stat(cache)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("kine database: %d rows, %d MiB", rows, fi.Size()>>20)
	mb := float64(liveKeys*valueBytes) / (1 << 20)
	ctx := context.Background()
	ops := make([]clientv3.Op, liveKeys)
	for i := range liveKeys {
		ops[i] = clientv3.OpPut(key(i), string(val(i, oldPerKey)))
	}

	b.ResetTimer()
	var (
		seeds, floors     []time.Duration
		seedCPU, floorCPU []time.Duration
		phases            [][]migrate.Phase
		res               migrate.Result
	)
	migration := func(rd string) {
		src := linkSource(b, cache, rd)
		warm(b, src)
		runtime.GC()
		c0, t0 := cpuTime(b), time.Now()
		res, err = migrate.Seed(ctx, migrate.SeedOptions{
			Options: migrate.Options{Source: src, SourceOptions: migrate.SourceOptions{Quiet: -1}, Logger: benchLogger(b)},
			DataDir: filepath.Join(rd, "data"), WorkDir: filepath.Join(rd, "work"),
			Name: "m0", PeerURL: "http://127.0.0.1:2380", Token: "bench",
		})
		if err != nil {
			b.Fatal(err)
		}
		seeds = append(seeds, time.Since(t0))
		seedCPU = append(seedCPU, cpuTime(b)-c0)
		phases = append(phases, res.Phases)
		if res.Keys != liveKeys || res.Bytes != liveKeys*valueBytes || res.Revision <= res.SourceRevision {
			b.Fatalf("migrated %d keys (%d bytes) to revision %d; want %d keys above kine's %d", res.Keys, res.Bytes, res.Revision, liveKeys, res.SourceRevision)
		}
		if err := os.RemoveAll(filepath.Join(rd, "data")); err != nil {
			b.Fatal(err)
		}
	}
	floorRun := func(rd string) {
		cli, stop := startStockEtcd(b, filepath.Join(rd, "floor"))
		defer stop()
		runtime.GC()
		c0, t0 := cpuTime(b), time.Now()
		if err := batchedIngest(ctx, cli, ops); err != nil {
			b.Fatal(err)
		}
		floors = append(floors, time.Since(t0))
		floorCPU = append(floorCPU, cpuTime(b)-c0)
		stop()
		if err := os.RemoveAll(filepath.Join(rd, "floor")); err != nil {
			b.Fatal(err)
		}
	}
	for r := range rounds {
		// Alternate which goes first, so a drift in the machine's load
		// falls on both.
		rd := filepath.Join(dir, fmt.Sprint(r))
		if r%2 == 0 {
			migration(rd)
			floorRun(rd)
		} else {
			floorRun(rd)
			migration(rd)
		}
		b.Logf("round %d: migration %s (%s CPU), floor %s (%s CPU)", r, seeds[r].Round(time.Millisecond), seedCPU[r].Round(time.Millisecond),
			floors[r].Round(time.Millisecond), floorCPU[r].Round(time.Millisecond))
	}

	// (a) one Put per key, sequential, on a sample (it is slow).
	cli, stop := startStockEtcd(b, filepath.Join(dir, "naive"))
	t0 := time.Now()
	for i := range sample {
		if _, err := cli.Put(ctx, key(i), string(val(i, oldPerKey))); err != nil {
			stop()
			b.Fatal(err)
		}
	}
	naive := time.Since(t0) * liveKeys / time.Duration(sample)
	stop()
	b.StopTimer()

	seed, floor := median(seeds), median(floors)
	medianRound := slices.Index(seeds, seed)
	rate := func(d time.Duration) (float64, float64) { return liveKeys / d.Seconds(), mb / d.Seconds() }
	sk, sm := rate(seed)
	fk, fm := rate(floor)
	nk, nm := rate(naive)
	b.ReportMetric(sk, "keys/s")
	b.ReportMetric(sm, "MB/s")
	b.ReportMetric(sk/nk, "x-one-put-per-key")
	b.ReportMetric(sk/fk, "x-batched-floor")
	for _, p := range phases[medianRound] {
		b.Logf("  phase %-45s %s", p.Name, p.Took.Round(time.Millisecond))
	}
	b.Logf("migration (1M rows -> 200k keys, verified, restored, revision %d > kine %d): median %s of %v, %.0f keys/s, %.1f MB/s",
		res.Revision, res.SourceRevision, seed.Round(time.Millisecond), roundAll(seeds), sk, sm)
	b.Logf("(b) batched ingest floor (128/txn, 8 in flight): median %s of %v, %.0f keys/s, %.1f MB/s; migration is %.2fx", floor.Round(time.Millisecond), roundAll(floors), fk, fm, sk/fk)
	b.Logf("(a) one Put per key (measured on %d keys): %s for 200k, %.0f keys/s, %.1f MB/s; migration is %.1fx", sample, naive.Round(time.Millisecond), nk, nm, sk/nk)

	if out := os.Getenv("BENCH_OUT"); out != "" {
		if !filepath.IsAbs(out) {
			// go test runs this in bench/; the command (and make -C bench
			// migrate) names the directory from the repository root.
			out = filepath.Join("..", out)
		}
		md := migrateReport(reportInput{
			rounds: rounds, sample: sample, rows: rows, fileMiB: fi.Size() >> 20,
			seeds: seeds, floors: floors, seedCPU: seedCPU, floorCPU: floorCPU, naive: naive, phases: phases[medianRound],
			revision: res.Revision, kineRevision: res.SourceRevision,
		})
		if err := os.MkdirAll(out, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, "migrate.md"), []byte(md), 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("wrote %s", filepath.Join(out, "migrate.md"))
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

type reportInput struct {
	rounds, sample, rows   int
	fileMiB                int64
	seeds, floors          []time.Duration
	seedCPU, floorCPU      []time.Duration
	naive                  time.Duration
	phases                 []migrate.Phase
	revision, kineRevision int64
}

// migrateReport is the "Migration from kine SQLite" section of
// BENCHMARKS.md.
func migrateReport(in reportInput) string {
	seed, floor := median(in.seeds), median(in.floors)
	mb := float64(liveKeys*valueBytes) / (1 << 20)
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	w("## Migration from kine SQLite\n\n")
	w("Issue 5: migrate 1M kine rows (200k live keys of 1 KiB); report keys/s and MB/s against (a) one Put per key, the\n")
	w("naive approach, and (b) etcd's raw batched ingest of the same keys, the floor. Target: at least 10× (a) and at least\n")
	w("0.8× (b).\n\n")
	w("Method (bench/migrate_test.go): a SQLite file in kine v0.17.5's schema with %d rows, %d MiB: 200k live keys of\n", in.rows, in.fileMiB)
	w("1 KiB with %d superseded revisions each, %d keys created and deleted, every 10th live key on a 3600 s lease; rows\n", oldPerKey, deadKeys)
	w("interleaved as kine appends them (built once, cached under the temp dir, hard-linked into each round and read once,\n")
	w("untimed, before it: a warm page cache, as at a first start right after kine stopped).\n")
	w("Each path, and what it includes:\n\n")
	w("- **migration**: `migrate.Seed`, what a replica does at first start with `migrateFrom.sqlite`: open the source\n")
	w("  read-only; make the member data dir with `etcdutl`'s restore of an empty backend file (membership, raft log,\n")
	w("  revision bumped above kine's and marked compacted); read the newest row of every key in one pass and write the\n")
	w("  live ones, 16 MiB per bbolt transaction with a resume marker, straight into that member's backend file in etcd's\n")
	w("  mvcc layout (written back in the background, fsynced once at the end); SQLite's `quick_check` of the whole file\n")
	w("  beside it; read the file back as etcd rebuilds its index and verify key count, SHA-256 of the content, marker,\n")
	w("  revision and compaction against the source; rename the data dir into place and the source to `*.migrated`.\n")
	w("  End to end, from the SQLite file to a durable data dir etcd starts on (the tests start one on it); only the\n")
	w("  1 s pause in which a first start makes sure kine stopped writing is left out (`SourceOptions.Quiet` -1).\n")
	w("- **(b) floor**: the same 200k keys and final values, already in memory, into a stock etcd 3.7.3 member\n")
	w("  (embedded, etcd's defaults: fsync on, `--max-txn-ops` 128), as txns of 128 puts with 8 in flight. No reading,\n")
	w("  no verification, no restore.\n")
	w("- **(a) one Put per key**: sequential `Put`s into a fresh stock etcd, timed on the first %d keys and scaled to 200k.\n\n", in.sample)
	w("The migration and the floor alternate for %d rounds (which goes first alternates too); the table shows\n", in.rounds)
	w("medians. MB/s is MiB of values (%.0f) per second. All in one process on 127.0.0.1, plain gRPC (no TLS). The\n", mb)
	w("machine is shared with other work (its load average is in the table); both paths are CPU-bound on its 2 cores\n")
	w("(median CPU time: migration %.2f s, floor %.2f s), so the ratio moves with the load: the rounds and their CPU\n",
		median(in.seedCPU).Seconds(), median(in.floorCPU).Seconds())
	w("times are below the table.\n\n")
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	w("| | |\n|---|---|\n")
	w("| Command | `BENCH_OUT=bench/out go test -run '^$' -bench '^BenchmarkMigrateSQLite$' -benchtime 1x -timeout 60m ./bench/` (or `make -C bench migrate`) |\n")
	w("| Machine | %d CPUs (nproc), %s memory, Linux %s, %s/%s |\n", runtime.NumCPU(), memTotal(), strings.TrimSpace(string(kernel)), runtime.GOOS, runtime.GOARCH)
	w("| Versions | %s, etcd %s, %s, kine schema v0.17.5 |\n", runtime.Version(), version.Version, modVersion("modernc.org/sqlite"))
	load, _ := os.ReadFile("/proc/loadavg")
	w("| Date | %s; load average at the end %s |\n\n", time.Now().UTC().Format(time.RFC3339), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	ratio := func(d time.Duration, base time.Duration) float64 { return base.Seconds() / d.Seconds() }
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "not met"
	}
	row := func(name string, d time.Duration, target string, ok string) {
		w("| %s | %.2f s | %.0f | %.1f | %.1f× | %.3f× | %s | %s |\n", name, d.Seconds(), liveKeys/d.Seconds(), mb/d.Seconds(),
			ratio(d, in.naive), ratio(d, floor), target, ok)
	}
	w("| Path | Time | keys/s | MB/s | vs (a) | vs (b) | Target | Verdict |\n|---|---:|---:|---:|---:|---:|---|---|\n")
	row("migration (vetcd)", seed, "≥ 10× (a), ≥ 0.8× (b)", verdict(ratio(seed, in.naive) >= 10 && ratio(seed, floor) >= 0.8))
	row("(b) batched ingest, stock etcd", floor, "the floor", "")
	row("(a) one Put per key, stock etcd", in.naive, "the naive baseline", "")
	w("\nRounds (seconds): migration %s; floor %s.\n", secs(in.seeds), secs(in.floors))
	w("CPU time of the process in each (seconds, both cores; the floor's includes the etcd server's): migration %s;\n", secs(in.seedCPU))
	w("floor %s.\n\n", secs(in.floorCPU))
	w("Where the median migration spent its time (`Result.Phases`):\n\n| Phase | Time |\n|---|---:|\n")
	for _, p := range in.phases {
		w("| %s | %.2f s |\n", p.Name, p.Took.Seconds())
	}
	w("\nThe migrated member starts at revision %d (kine's was %d), compacted there.\n", in.revision, in.kineRevision)
	return sb.String()
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func secs(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.2f", d.Seconds())
	}
	return strings.Join(parts, ", ")
}

// memTotal is the machine's memory from /proc/meminfo.
func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return "unknown"
}

// modVersion is the version of a module in the repository's go.mod
// (test binaries carry no module list).
func modVersion(path string) string {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		return path
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == path {
			return path + " " + f[1]
		}
	}
	return path
}
