package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
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
	// Workers is how many write txns are in flight at once (default 8).
	Workers int
	// Progress, if set, is told the keys and value bytes written so far.
	Progress Progress
	// Hook, if set, runs after each committed batch with the count so
	// far; an error it returns stops the migration as a crash would
	// (tests use it to crash halfway).
	Hook   func(batches int) error
	Logger *zap.Logger

	// batchOps overrides the keys per txn (tests: many small batches).
	batchOps int
}

// SeedOptions configures Seed.
type SeedOptions struct {
	Options
	// DataDir is the new member's data dir; it must not exist or be empty.
	DataDir string
	// WorkDir holds the staging etcd and snapshot. It is kept when the
	// migration fails, so that a rerun resumes, and removed on success.
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
}

// Seed migrates a kine SQLite file into a new member's data dir, before
// that member first starts: the keys go into a private one-member staging
// etcd in WorkDir (its client listens on 127.0.0.1 only, and it skips
// fsync: it is a disposable copy, rebuilt if damaged), are verified
// against the source, and its snapshot is restored into DataDir with the
// revision bumped above kine's and marked compacted. DataDir appears by
// one rename, complete, after everything was verified; then the source is
// renamed to *.migrated. A failure before that leaves DataDir absent and
// the source untouched; calling Seed again resumes from WorkDir.
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
	src, err := OpenSQLite(ctx, o.Source, o.SourceOptions)
	if err != nil {
		return res, err
	}
	defer src.Close()
	res.SourceRevision = src.Revision
	lg.Info("migrating kine SQLite into the new member", zap.String("source", src.Path()),
		zap.Int64("kine-revision", src.Revision), zap.Int64("kine-rows", src.Rows), zap.String("data-dir", o.DataDir))

	if err := os.MkdirAll(o.WorkDir, 0o700); err != nil {
		return res, fmt.Errorf("migrate: work dir: %w", err)
	}
	stage, err := startStage(ctx, filepath.Join(o.WorkDir, "etcd"), lg)
	if err != nil {
		// A staging etcd that cannot start on its own leftovers (say, a
		// power loss without fsync) is rebuilt from scratch.
		lg.Warn("staging etcd did not start on the work dir; starting over", zap.Error(err))
		if rerr := os.RemoveAll(filepath.Join(o.WorkDir, "etcd")); rerr != nil {
			return res, fmt.Errorf("migrate: clear work dir: %w", rerr)
		}
		if stage, err = startStage(ctx, filepath.Join(o.WorkDir, "etcd"), lg); err != nil {
			return res, err
		}
	}
	defer stage.close()

	m, ok, err := ReadMarker(ctx, stage.cli)
	if err != nil {
		return res, err
	}
	if ok && (m.Source != src.Path() || m.SourceRevision != src.Revision) {
		lg.Warn("the work dir holds a migration of another source or revision; starting over",
			zap.String("work-source", m.Source), zap.Int64("work-revision", m.SourceRevision))
		stage.close()
		if err := os.RemoveAll(filepath.Join(o.WorkDir, "etcd")); err != nil {
			return res, fmt.Errorf("migrate: clear work dir: %w", err)
		}
		if stage, err = startStage(ctx, filepath.Join(o.WorkDir, "etcd"), lg); err != nil {
			return res, err
		}
		ok = false
	}
	if !ok {
		m = Marker{State: StateCopying, Source: src.Path(), SourceRevision: src.Revision, Started: time.Now().UTC()}
		if err := putMarker(ctx, stage.cli, m); err != nil {
			return res, err
		}
	}
	res.Resumed = ok
	if m.State != StateDone {
		if res.Resumed {
			lg.Info("resuming an interrupted migration", zap.String("after", m.After))
		}
		stats, err := copyAndVerify(ctx, stage.cli, src, m, o.Options)
		if err != nil {
			return res, err
		}
		// The marker's own put is the snapshot's last revision.
		resp, err := stage.cli.Get(ctx, MarkerKey)
		if err != nil {
			return res, fmt.Errorf("migrate: staging revision: %w", err)
		}
		snapRev := resp.Header.Revision + 1
		m.State, m.Keys, m.Bytes, m.SHA256 = StateDone, stats.Keys, stats.Bytes, stats.SHA256
		m.Revision = snapRev + bumpFor(src.Revision, snapRev)
		m.After = ""
		m.Finished = time.Now().UTC()
		if err := putMarker(ctx, stage.cli, m); err != nil {
			return res, err
		}
	}
	res.Stats = Stats{Keys: m.Keys, Bytes: m.Bytes, SHA256: m.SHA256}

	snap := filepath.Join(o.WorkDir, "snapshot.db")
	if err := stage.snapshot(ctx, snap); err != nil {
		return res, err
	}
	stage.close()
	restored := filepath.Join(o.WorkDir, "restored")
	if err := os.RemoveAll(restored); err != nil {
		return res, fmt.Errorf("migrate: clear %s: %w", restored, err)
	}
	st, err := etcdutl.NewV3(lg).Status(snap)
	if err != nil {
		return res, fmt.Errorf("migrate: read staging snapshot: %w", err)
	}
	bump := bumpFor(src.Revision, st.Revision)
	err = etcdutl.NewV3(lg.Named("restore").WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        snap,
		Name:                o.Name,
		OutputDataDir:       restored,
		PeerURLs:            []string{o.PeerURL},
		InitialCluster:      o.Name + "=" + o.PeerURL,
		InitialClusterToken: o.Token,
		RevisionBump:        uint64(bump),
		MarkCompacted:       true,
	})
	if err != nil {
		return res, fmt.Errorf("migrate: restore the staging snapshot: %w", err)
	}
	res.Revision = st.Revision + bump
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
	if res.Renamed, err = renameSource(src); err != nil {
		return res, err
	}
	if err := os.RemoveAll(o.WorkDir); err != nil {
		lg.Warn("could not remove the migration work dir", zap.String("dir", o.WorkDir), zap.Error(err))
	}
	lg.Info("kine SQLite migrated", zap.Int64("keys", res.Keys), zap.Int64("bytes", res.Bytes),
		zap.Int64("kine-revision", res.SourceRevision), zap.Int64("revision", res.Revision), zap.String("source-renamed-to", res.Renamed))
	return res, nil
}

// bumpFor is how far a snapshot at rev must be bumped to land above
// kine's revision (at least 1: MarkCompacted needs a bump).
func bumpFor(kineRev, rev int64) int64 { return max(1, kineRev+1-rev) }

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

// stage is the private staging etcd of Seed.
type stage struct {
	e   *embed.Etcd
	cli *clientv3.Client
}

// startStage starts a one-member etcd on dir with plain http on 127.0.0.1
// (nothing but this process talks to it).
func startStage(ctx context.Context, dir string, lg *zap.Logger) (*stage, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		cu, err := freeURL()
		if err != nil {
			return nil, err
		}
		pu, err := freeURL()
		if err != nil {
			return nil, err
		}
		cfg := embed.NewConfig()
		cfg.Name = "vetcd-migrate"
		cfg.Dir = dir
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
		cfg.InitialCluster = cfg.Name + "=" + pu.String()
		cfg.ListenMetricsUrls = nil
		cfg.UnsafeNoFsync = true
		cfg.QuotaBackendBytes = 8 << 30
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg.Named("staging-etcd").WithOptions(
			zap.IncreaseLevel(zapcore.ErrorLevel),
			zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quiet{c} })))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("migrate: staging dir: %w", err)
		}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			if strings.Contains(err.Error(), "address already in use") {
				continue
			}
			return nil, fmt.Errorf("migrate: start staging etcd: %w", err)
		}
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			e.Close()
			return nil, fmt.Errorf("migrate: staging etcd: %w", err)
		case <-time.After(time.Minute):
			e.Close()
			return nil, errors.New("migrate: staging etcd not ready after 1m")
		case <-ctx.Done():
			e.Close()
			return nil, ctx.Err()
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, Logger: zap.NewNop(), DialTimeout: 5 * time.Second,
			MaxCallSendMsgSize: 2 << 20})
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("migrate: staging client: %w", err)
		}
		return &stage{e: e, cli: cli}, nil
	}
	return nil, fmt.Errorf("migrate: start staging etcd: %w", lastErr)
}

func (s *stage) close() {
	if s.cli != nil {
		s.cli.Close()
		s.cli = nil
	}
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// snapshot streams the staging etcd's snapshot into path, fsynced.
func (s *stage) snapshot(ctx context.Context, path string) error {
	rc, err := s.cli.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("migrate: staging snapshot: %w", err)
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("migrate: staging snapshot: %w", err)
	}
	_, err = io.Copy(f, rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("migrate: staging snapshot: %w", err)
	}
	return nil
}

func freeURL() (url.URL, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, fmt.Errorf("migrate: find a free port: %w", err)
	}
	defer ln.Close()
	return url.URL{Scheme: "http", Host: ln.Addr().String()}, nil
}

// quiet drops the message embedded etcd logs at error level on every
// Close (see TESTING.md).
type quiet struct{ zapcore.Core }

func (c quiet) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if strings.HasPrefix(e.Message, "setting up serving from embedded etcd failed") {
		return ce
	}
	return c.Core.Check(e, ce)
}

func (c quiet) With(fs []zapcore.Field) zapcore.Core { return quiet{c.Core.With(fs)} }
