package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// MigratedSuffix is appended to the source file's name after a verified
// migration. The source is never deleted.
const MigratedSuffix = ".migrated"

// Options are what a kine SQLite migration needs besides its target.
type Options struct {
	// Source is the kine SQLite file.
	Source string
	// SourceOptions tunes how the source is opened and checked.
	SourceOptions SourceOptions
	// Workers is how many write txns Into has in flight at once
	// (default 8). Seed writes its backend file from one goroutine.
	Workers int
	// Progress, if set, is told the keys and value bytes written so far.
	Progress Progress
	// Hook, if set, runs after each committed batch with the count so
	// far; an error it returns stops the migration as a crash would
	// (tests use it to crash halfway).
	Hook   func(batches int) error
	Logger *zap.Logger

	// batchOps overrides the keys per txn or per Seed batch (tests: many
	// small batches).
	batchOps int
}

// SeedOptions configures Seed.
type SeedOptions struct {
	Options
	// DataDir is the new member's data dir; it must not exist or be empty.
	DataDir string
	// WorkDir holds the member data dir while it is filled and checked.
	// It is kept when the migration fails, so that a rerun resumes, and
	// removed on success. It must be on DataDir's file system (the data
	// dir is renamed into place).
	WorkDir string
	// Name, PeerURL and Token are the new member's name, advertised peer
	// URL and initial cluster token.
	Name, PeerURL, Token string
}

// Result says what a migration did.
type Result struct {
	Stats
	// SourceRevision is kine's revision; Revision the etcd revision
	// afterwards (always above SourceRevision).
	SourceRevision, Revision int64
	// Resumed is true when the run continued an interrupted one.
	Resumed bool
	// Renamed is where the source file went (Source + MigratedSuffix).
	Renamed string
	// Phases are the steps of the run and how long each took, in order
	// (Seed only): where a slow migration spends its time.
	Phases []Phase
}

// Phase is one timed step of a migration (Result.Phases), so that logs
// and benchmarks can say where the time went.
type Phase struct {
	// Name says what the step did.
	Name string
	// Took is its wall-clock time.
	Took time.Duration
}

// Seed migrates a kine SQLite file into a new member's data dir, before
// that member first starts. It makes the data dir in WorkDir with
// etcdutl's restore of an empty backend file (membership, raft log, the
// revision bumped above kine's and marked compacted), then reads the
// newest row of every key in one pass and writes the live ones, batch by
// batch, straight into that member's backend file (stagedb.go: etcd's
// mvcc layout, no raft log, no gRPC), reading the next batch while one is
// written; SQLite's quick_check of the whole source runs beside it. The
// file is then fsynced and read back the way etcd rebuilds its index, and
// checked against the source: key count and content hash (taken while the
// source was read), marker, revision and compaction. DataDir appears by
// one rename, complete, after everything was verified; then the source is
// renamed to *.migrated. A failure before that leaves DataDir absent and
// the source untouched; calling Seed again resumes from WorkDir (for the
// same source, revision and member; the data dir keeps the Token of the
// run that made it, which etcd reads only when it creates a cluster).
// Bad input (a source SQLite cannot read or finds damaged, kine still
// writing, a key vetcd cannot keep) leaves no WorkDir behind either, when
// this call made it.
func Seed(ctx context.Context, o SeedOptions) (res Result, err error) {
	lg := o.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	if o.DataDir == "" || o.WorkDir == "" || o.Name == "" || o.PeerURL == "" {
		return res, errors.New("migrate: seed needs DataDir, WorkDir, Name and PeerURL")
	}
	if entries, err := os.ReadDir(o.DataDir); err == nil && len(entries) > 0 {
		return res, fmt.Errorf("migrate: data dir %s is not empty: a member with data is never seeded", o.DataDir)
	}
	start := time.Now()
	phase := func(name string) {
		now := time.Now()
		res.Phases = append(res.Phases, Phase{Name: name, Took: now.Sub(start)})
		lg.Info("migration phase done", zap.String("phase", name), zap.Duration("took", now.Sub(start)))
		start = now
	}
	src, err := OpenSQLite(ctx, o.Source, o.SourceOptions)
	if err != nil {
		return res, err
	}
	defer src.Close()
	res.SourceRevision = src.Revision
	// SQLite's whole-file check runs beside the copy, on its own
	// connection; nothing becomes visible before it passed.
	var checkErr error
	checked := make(chan struct{})
	checkCtx, stopCheck := context.WithCancel(ctx)
	go func() {
		defer close(checked)
		checkErr = src.Check(checkCtx)
	}()
	defer func() {
		stopCheck()
		<-checked
	}()
	phase("open source")
	lg.Info("migrating kine SQLite into the new member", zap.String("source", src.Path()),
		zap.Int64("kine-revision", src.Revision), zap.Int64("kine-rows", src.Rows), zap.String("data-dir", o.DataDir))

	_, statErr := os.Stat(o.WorkDir)
	madeWorkDir := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(o.WorkDir, 0o700); err != nil {
		return res, fmt.Errorf("migrate: work dir: %w", err)
	}
	defer func() {
		// Bad input changes nothing on disk: remove the work dir this
		// call made. An interrupted run keeps it, to resume.
		if err != nil && madeWorkDir && badInput(err) {
			if rerr := os.RemoveAll(o.WorkDir); rerr != nil {
				lg.Warn("could not remove the migration work dir", zap.String("dir", o.WorkDir), zap.Error(rerr))
			}
		}
	}()
	// The member's data dir is made first, from an empty file: etcdutl's
	// restore writes its membership, raft log and snapshot, the revision
	// bump and the compaction mark in milliseconds; the keys then go
	// straight into its backend file, below the bumped revision. (Restoring
	// after the copy would copy the whole file and open it four times.)
	restored := filepath.Join(o.WorkDir, "restored")
	dbPath := filepath.Join(restored, "member", "snap", "db")
	// An older vetcd staged into a whole etcd here; that work is redone.
	for _, p := range []string{filepath.Join(o.WorkDir, "etcd"), filepath.Join(o.WorkDir, "restoring")} {
		if err := os.RemoveAll(p); err != nil {
			return res, fmt.Errorf("migrate: clear work dir: %w", err)
		}
	}
	member := o.Name + "=" + o.PeerURL
	var (
		st *stageDB
		m  Marker
		ok bool
	)
	if _, err := os.Stat(dbPath); err == nil {
		st, err = openStageDB(dbPath)
		if err == nil {
			m, ok, err = st.Marker()
		}
		if err == nil && ok && (m.Source != src.Path() || m.SourceRevision != src.Revision || m.Member != member) {
			err = fmt.Errorf("it holds a migration of %s at revision %d for %s", m.Source, m.SourceRevision, m.Member)
		}
		if err == nil && ok && (st.top == 0 || m.Revision != st.top) {
			err = fmt.Errorf("its marker says revision %d, its file %d", m.Revision, st.top)
		}
		if err == nil && !ok {
			err = errors.New("it has no migration marker")
		}
		if err != nil {
			lg.Warn("the work dir's data cannot be resumed; starting over", zap.Error(err))
			if st != nil {
				_ = st.close()
			}
			st, ok = nil, false
		}
	}
	if st == nil {
		top := max(src.Revision, src.Rows+2) + 1
		if st, err = newMemberStage(lg, o, top); err != nil {
			return res, err
		}
		m = Marker{State: StateCopying, Source: src.Path(), SourceRevision: src.Revision, Member: member,
			Revision: top, Started: time.Now().UTC()}
		phase("make the member data dir")
	}
	defer func() { _ = st.close() }()
	if st.flush, err = newFlusher(dbPath); err != nil {
		return res, err
	}
	flushed := false
	defer func() {
		if !flushed {
			_ = st.flush.finish()
		}
	}()
	res.Resumed = ok
	if m.State != StateDone {
		if res.Resumed {
			lg.Info("resuming an interrupted migration", zap.String("after", m.After))
		}
		stats, err := st.copyFrom(ctx, src, m, o.Options)
		if err != nil {
			return res, fmt.Errorf("migrate: copy: %w", err)
		}
		if err := src.Unchanged(ctx, m.SourceRevision); err != nil {
			return res, err
		}
		phase("read source and write keys")
		if res.Resumed {
			// This run read only the rest: hash the whole source.
			if stats, err = src.SourceStats(ctx); err != nil {
				return res, err
			}
			phase("hash the whole source (resumed)")
		}
		m.State, m.Keys, m.Bytes, m.SHA256 = StateDone, stats.Keys, stats.Bytes, stats.SHA256
		m.After = ""
		m.Finished = time.Now().UTC()
		if err := st.commit(nil, m, true); err != nil {
			return res, err
		}
	}
	if err := st.close(); err != nil {
		return res, fmt.Errorf("migrate: close the member's backend file: %w", err)
	}
	res.Stats = Stats{Keys: m.Keys, Bytes: m.Bytes, SHA256: m.SHA256}
	res.Revision = m.Revision
	<-checked
	if checkErr != nil {
		return res, checkErr
	}
	phase("finish the source's integrity check")

	// The source is read and checked: close it (SQLite's connections,
	// its mapping, the -wal and -shm files reading made) beside the
	// verification; renameSource waits for it.
	srcClosed := make(chan struct{})
	go func() {
		defer close(srcClosed)
		_ = src.Close()
	}()
	defer func() { <-srcClosed }()
	// The commits were not synced, only flushed behind them: finish that
	// beside the verification, which reads the file through the page
	// cache.
	synced := make(chan error, 1)
	flushed = true
	go func() { synced <- st.flush.finish() }()
	got, err := readDB(dbPath)
	if serr := <-synced; err == nil && serr != nil {
		return res, serr
	}
	if err != nil {
		return res, fmt.Errorf("migrate: verify: %w", err)
	}
	if err := checkSeeded(got, m, res.Revision, src.Revision); err != nil {
		// Never seen in a healthy run: start over next time rather than
		// trust this data dir again.
		lg.Error("the seeded data does not match the source; the next run starts over", zap.Error(err))
		_ = os.RemoveAll(restored)
		return res, err
	}
	phase("flush and verify the data dir against the source")

	if err := os.Remove(o.DataDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("migrate: data dir %s: %w", o.DataDir, err)
	}
	if err := os.MkdirAll(filepath.Dir(o.DataDir), 0o700); err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	if err := os.Rename(restored, o.DataDir); err != nil {
		return res, fmt.Errorf("migrate: move the seeded data into %s: %w", o.DataDir, err)
	}
	if err := syncDir(filepath.Dir(o.DataDir)); err != nil {
		return res, err
	}
	<-srcClosed
	if res.Renamed, err = renameSource(src); err != nil {
		return res, err
	}
	if err := os.RemoveAll(o.WorkDir); err != nil {
		lg.Warn("could not remove the migration work dir", zap.String("dir", o.WorkDir), zap.Error(err))
	}
	phase("move the data dir in place, rename the source")
	lg.Info("kine SQLite migrated", zap.Int64("keys", res.Keys), zap.Int64("bytes", res.Bytes),
		zap.Int64("kine-revision", res.SourceRevision), zap.Int64("revision", res.Revision), zap.String("source-renamed-to", res.Renamed))
	return res, nil
}

// newMemberStage makes WorkDir/restored a one-member data dir whose
// revision is top, marked compacted, and no keys: etcdutl's restore of
// an empty backend file with RevisionBump top. It opens the data dir's
// backend file for the keys, which go below top.
func newMemberStage(lg *zap.Logger, o SeedOptions, top int64) (*stageDB, error) {
	skeleton := filepath.Join(o.WorkDir, "empty.db")
	restoring := filepath.Join(o.WorkDir, "restoring")
	restored := filepath.Join(o.WorkDir, "restored")
	for _, p := range []string{skeleton, restoring, restored} {
		if err := os.RemoveAll(p); err != nil {
			return nil, fmt.Errorf("migrate: clear work dir: %w", err)
		}
	}
	empty, err := openStageDB(skeleton)
	if err != nil {
		return nil, err
	}
	if err := empty.close(); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	err = etcdutl.NewV3(lg.Named("restore").WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        skeleton,
		Name:                o.Name,
		OutputDataDir:       restoring,
		PeerURLs:            []string{o.PeerURL},
		InitialCluster:      o.Name + "=" + o.PeerURL,
		InitialClusterToken: o.Token,
		// A bbolt file vetcd just wrote, not a snapshot stream: it has no
		// trailing hash. The keys are verified against the source later.
		SkipHashCheck: true,
		RevisionBump:  uint64(top),
		MarkCompacted: true,
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: make the member data dir: %w", err)
	}
	// Only a complete restore is ever resumed into.
	if err := os.Rename(restoring, restored); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if err := os.Remove(skeleton); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	st, err := openStageDB(filepath.Join(restored, "member", "snap", "db"))
	if err != nil {
		return nil, err
	}
	if st.rev != 1 || st.top != top {
		st.close()
		return nil, fmt.Errorf("migrate: the new member data dir is at revision %d (keys from %d), want %d (keys from 1)", st.top, st.rev, top)
	}
	return st, nil
}

// checkSeeded compares what the restored data dir holds with the source's
// stats recorded in the done marker m.
func checkSeeded(got dbContent, m Marker, rev, kineRev int64) error {
	want := Stats{Keys: m.Keys, Bytes: m.Bytes, SHA256: m.SHA256}
	switch {
	case got.Stats != want:
		return fmt.Errorf("migrate: verify: the data dir has %d keys (%d bytes, sha256 %s), the source %d keys (%d bytes, sha256 %s)",
			got.Keys, got.Bytes, got.SHA256, want.Keys, want.Bytes, want.SHA256)
	case !got.MarkerOK || got.Marker.State != StateDone || got.Marker.SHA256 != m.SHA256:
		return fmt.Errorf("migrate: verify: the data dir's migration marker is %+v (found %v), not the finished one", got.Marker, got.MarkerOK)
	case got.Revision != rev || rev <= kineRev:
		return fmt.Errorf("migrate: verify: the data dir's revision is %d, want %d (above kine's %d)", got.Revision, rev, kineRev)
	case got.Compacted != rev:
		return fmt.Errorf("migrate: verify: the data dir is marked compacted at %d, want %d", got.Compacted, rev)
	}
	return nil
}

// badInput reports errors that mean the source cannot be migrated as it
// is (rather than an interrupted run).
func badInput(err error) bool {
	var bk errBadKey
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotSQLite) || errors.Is(err, ErrNotKine) ||
		errors.Is(err, ErrSourceBusy) || errors.As(err, &bk)
}

// copyAndVerify copies the keys after m.After and checks the target's keys
// against the source: count and hash, and that kine did not write
// meanwhile.
func copyAndVerify(ctx context.Context, cli *clientv3.Client, src *Source, m Marker, o Options) (Stats, error) {
	resumed := m.After != ""
	written, err := copyKeys(ctx, cli, src, m, writeOptions{Workers: o.Workers, Progress: o.Progress, Hook: o.Hook, Logger: o.Logger, BatchOps: o.batchOps})
	if err != nil {
		return Stats{}, fmt.Errorf("migrate: copy: %w", err)
	}
	if err := src.Unchanged(ctx, m.SourceRevision); err != nil {
		return Stats{}, err
	}
	want := written
	if resumed {
		// This run wrote only the rest: hash the whole source.
		if want, err = src.SourceStats(ctx); err != nil {
			return Stats{}, err
		}
	}
	got, err := TargetStats(ctx, cli)
	if err != nil {
		return Stats{}, fmt.Errorf("migrate: verify: %w", err)
	}
	if got != want {
		return Stats{}, fmt.Errorf("migrate: verify: target has %d keys (%d bytes, sha256 %s), source %d keys (%d bytes, sha256 %s)",
			got.Keys, got.Bytes, got.SHA256, want.Keys, want.Bytes, want.SHA256)
	}
	return want, nil
}

// renameSource renames the verified source (and a WAL or shm file next to
// it) to *.migrated, so that nothing migrates it again by accident.
func renameSource(src *Source) (string, error) {
	_ = src.Close()
	dst := src.Path() + MigratedSuffix
	if _, err := os.Stat(dst); err == nil {
		return "", fmt.Errorf("migrate: %s exists: not overwriting an earlier migrated source", dst)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(src.Path() + suffix); err == nil {
			if err := os.Rename(src.Path()+suffix, dst+suffix); err != nil {
				return "", fmt.Errorf("migrate: rename source: %w", err)
			}
		}
	}
	if err := os.Rename(src.Path(), dst); err != nil {
		return "", fmt.Errorf("migrate: rename source: %w", err)
	}
	return dst, syncDir(filepath.Dir(dst))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("migrate: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("migrate: sync %s: %w", dir, err)
	}
	return nil
}
