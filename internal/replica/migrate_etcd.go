package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/version"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/migrate"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// ErrNoMigrationSource: migrateFromDeployedEtcd is set but the config does
// not say where the deployed etcd is. The founding replica refuses to
// found an empty cluster rather than come up without the data.
var ErrNoMigrationSource = errors.New("migrateFromDeployedEtcd is true but migrateFrom.endpoints is empty: refusing to found an empty cluster; set migrateFrom.endpoints to the deployed etcd's client URLs")

// followState is the founding replica's record, beside its data dir, that
// its data was restored from a deployed etcd and is to follow it. The
// marker in etcd (migrate.EtcdMarkerKey) takes over once the first source
// revision is copied; this file covers the time before.
type followState struct {
	Source           string    `json:"source"`
	SnapshotRevision int64     `json:"snapshotRevision"`
	MemberID         string    `json:"memberID"`
	Done             bool      `json:"done,omitempty"`
	Reason           string    `json:"reason,omitempty"`
	At               time.Time `json:"at"`
}

func (m markers) followPath() string { return filepath.Join(m.dir, "migrate-etcd.json") }

func (m markers) writeFollow(s followState) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return topology.WriteAtomic(m.followPath(), b, 0o600)
}

func (m markers) readFollow() (followState, bool, error) {
	var s followState
	b, err := os.ReadFile(m.followPath())
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, false, fmt.Errorf("%s: %w", m.followPath(), err)
	}
	return s, true, nil
}

// source is the deployed etcd named in the config.
func (r *Replica) source() (migrate.EtcdSource, error) {
	mf := r.cfg.MigrateFrom
	if len(mf.Endpoints) == 0 {
		return migrate.EtcdSource{}, ErrNoMigrationSource
	}
	tlsConfig, err := migrate.SourceTLS(mf.TLS.CAFile, mf.TLS.CertFile, mf.TLS.KeyFile)
	if err != nil {
		return migrate.EtcdSource{}, err
	}
	return migrate.EtcdSource{Endpoints: mf.Endpoints, TLS: tlsConfig}, nil
}

// migrateEtcdAtFounding restores the deployed etcd's snapshot into the
// founding member's empty data dir, before etcd first starts, when
// migrateFromDeployedEtcd is set: the cluster is founded from the source's
// data, with its revisions, instead of empty. It checks the source's
// version first and changes nothing if the source is refused or does not
// answer. It runs only from bootstrap, which the cluster record guards, so
// a cluster migrates once. Writes made to the source after the snapshot
// are copied by followDeployedEtcd.
func (r *Replica) migrateEtcdAtFounding(ctx context.Context, token string) error {
	if !r.cfg.MigrateFromDeployedEtcd {
		return nil
	}
	src, err := r.source()
	if err != nil {
		return err
	}
	lg := r.lg.Named("migrate")
	cli, err := src.Dial(lg)
	if err != nil {
		return err
	}
	defer cli.Close()
	st, err := migrate.CheckSource(ctx, cli, version.Version)
	if err != nil {
		return fmt.Errorf("migrate from %s: %w (nothing was changed)", src, err)
	}
	if entries, err := os.ReadDir(r.cfg.DataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("migrate from %s: data dir %s is not empty; nothing was changed", src, r.cfg.DataDir)
	}
	lg.Info("founding the cluster from a deployed etcd", zap.String("source", src.String()),
		zap.String("source-version", st[0].Version), zap.Int64("source-revision", st[0].Revision), zap.Int64("source-db-size", st[0].DBSize))
	work := filepath.Join(parentDir(r.cfg.DataDir), "migrate-etcd")
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer os.RemoveAll(work)
	db := filepath.Join(work, "source.db")
	start := time.Now()
	rev, err := migrate.SaveSnapshot(ctx, lg, cli, db)
	if err != nil {
		return fmt.Errorf("migrate from %s: %w", src, err)
	}
	if err := migrate.Restore(lg, db, migrate.RestoreTarget{Name: r.cfg.Name, PeerURL: r.cfg.PeerURL, DataDir: r.cfg.DataDir, Token: token}); err != nil {
		return fmt.Errorf("migrate from %s: %w", src, err)
	}
	info := InspectData(lg, r.cfg.DataDir)
	if info.State != plan.DataValid {
		return fmt.Errorf("migrate from %s: restored data is %s (%s)", src, info.State, info.Problem)
	}
	// A 3.5 source's data has no storage version: it is ours now.
	if err := r.markers.writeOurs(info.MemberID, time.Now().UTC()); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := r.markers.writeFollow(followState{Source: src.String(), SnapshotRevision: rev, MemberID: fmt.Sprintf("%x", info.MemberID), At: time.Now().UTC()}); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	lg.Info("restored the deployed etcd's snapshot; following its writes until cut-over", zap.Int64("snapshot-revision", rev),
		zap.Duration("took", time.Since(start)))
	return nil
}

// followBrokenMetric is 1 while the founding replica no longer copies the
// deployed etcd's writes although nothing cut the migration over.
const followBrokenMetric = "vetcd_migrate_follow_broken"

// followBroken registers (once per registry) and returns the gauge
// followBrokenMetric.
func (r *Replica) followBroken() prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: followBrokenMetric,
		Help: "1 while this replica no longer copies the deployed etcd's writes although no cut-over happened " +
			"(this cluster's revision moved without a client's write, or the source compacted revisions not copied yet).",
	})
	if err := r.metrics.Registry.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(prometheus.Gauge); ok {
				return old
			}
		}
		r.lg.Warn("cannot register the migration metric", zap.String("metric", followBrokenMetric), zap.Error(err))
	}
	return g
}

// followDeployedEtcd copies the deployed etcd's writes after the snapshot
// into this cluster, one txn per source revision (see migrate.Follow),
// from the moment the member serves until cut-over: a client's write to
// this cluster (clients moved over; plan.JudgeFollow), or `vetcd migrate
// --from etcd://…`. It runs on the founding replica for as long as the
// replica runs and the config keeps migrateFromDeployedEtcd; a restarted
// replica resumes from the revision recorded in etcd. An unreachable
// source is retried. A revision of this cluster's own that no client
// made (migrate.ErrSelfDiverged) is never taken for a cut-over: it is
// logged as an error, counted in vetcd_migrate_follow_broken, and judged
// again with back-off until a cut-over ends it.
func (r *Replica) followDeployedEtcd(ctx context.Context) {
	if !r.cfg.MigrateFromDeployedEtcd || len(r.cfg.MigrateFrom.Endpoints) == 0 || r.self.Ordinal != 0 {
		return
	}
	// The state is written by bootstrap before etcd first starts: read it
	// once etcd runs.
	if r.waitServing(ctx) != nil {
		return
	}
	state, ok, err := r.markers.readFollow()
	if err != nil {
		r.lg.Warn("cannot read the migration state; not following the deployed etcd", zap.Error(err))
		return
	}
	if !ok || state.Done {
		return
	}
	lg := r.lg.Named("migrate")
	broken := r.followBroken()
	back := plan.Backoff{Initial: time.Second, Max: 30 * time.Second}
	for {
		done, err := r.followOnce(ctx, lg, state, broken)
		if done || ctx.Err() != nil {
			return
		}
		wait := back.Failed()
		if errors.Is(err, migrate.ErrSelfDiverged) {
			broken.Set(1)
			lg.Error("this cluster's revision moved without a client's write while following the deployed etcd: "+
				"its writes since are NOT copied here and this is not a cut-over; migrate again into a new cluster",
				zap.Error(err), zap.Duration("judged-again-in", wait))
		} else {
			lg.Warn("following the deployed etcd failed; retrying", zap.Error(err), zap.Duration("retry-in", wait))
		}
		if sleep(ctx, wait) != nil {
			return
		}
	}
}

// followOnce waits for the local member to serve and follows the source
// until cut-over (done) or an error.
func (r *Replica) followOnce(ctx context.Context, lg *zap.Logger, state followState, broken prometheus.Gauge) (done bool, err error) {
	if err := r.waitServing(ctx); err != nil {
		return true, err
	}
	src, err := r.source()
	if err != nil {
		return false, err
	}
	scli, err := src.Dial(lg)
	if err != nil {
		return false, err
	}
	defer scli.Close()
	tcli, err := migrate.DialTarget([]string{r.cfg.ClientURL}, r.clientTLS, lg)
	if err != nil {
		return false, err
	}
	defer tcli.Close()
	lg.Info("following the deployed etcd", zap.String("source", src.String()), zap.Int64("snapshot-revision", state.SnapshotRevision))
	last, err := migrate.Follow(ctx, migrate.FollowOptions{
		Source: scli, Target: tcli, SourceName: src.String(),
		SnapshotRevision: state.SnapshotRevision, From: state.SnapshotRevision, Logger: lg,
	})
	var reason string
	switch {
	case ctx.Err() != nil:
		return true, ctx.Err()
	case errors.Is(err, migrate.ErrCutOver):
		broken.Set(0)
		reason = err.Error()
	case errors.Is(err, migrate.ErrDiverged):
		broken.Set(0)
		// Only a client's write (plan.JudgeFollow) makes ErrDiverged.
		reason = fmt.Sprintf("after source revision %d: %v", last, err)
		if _, cerr := migrate.CutOver(ctx, tcli, 0, reason); cerr != nil && !errors.Is(cerr, migrate.ErrCutOver) {
			return false, cerr
		}
	case errors.Is(err, migrate.ErrSourceCompacted):
		broken.Set(1)
		lg.Error("the deployed etcd compacted revisions this cluster had not copied yet: writes made to it since are not here; "+
			"stopped following (migrate again into a new cluster to copy them)", zap.Error(err), zap.Int64("revision", last))
		reason = err.Error()
	default:
		return false, err
	}
	state.Done, state.Reason, state.At = true, reason, time.Now().UTC()
	if werr := r.markers.writeFollow(state); werr != nil {
		return false, werr
	}
	lg.Info("cut over from the deployed etcd: no longer following it", zap.String("reason", reason), zap.Int64("last-source-revision", last))
	return true, nil
}

// goFollow starts followDeployedEtcd and returns the function that waits
// for it to end (after ctx is cancelled); the replica's loop owns it.
func (r *Replica) goFollow(ctx context.Context) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.followDeployedEtcd(ctx)
	}()
	return func() { <-done }
}

// waitServing waits until the local member runs and sees a leader.
func (r *Replica) waitServing(ctx context.Context) error {
	for {
		r.mu.Lock()
		e := r.etcd
		r.mu.Unlock()
		if e != nil && e.Server.Leader() != 0 {
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// FollowSnapshotRevision reads, from a founding replica's markers dir (the
// parent of its data dir), the source snapshot revision its data was
// restored at; ok is false if it was not founded from a deployed etcd or
// has cut over. `vetcd migrate` uses it to cut over a local cluster before
// the first source revision is copied (when etcd holds no marker yet).
func FollowSnapshotRevision(markersDir string) (rev int64, ok bool, err error) {
	s, ok, err := markers{dir: markersDir}.readFollow()
	if err != nil || !ok || s.Done {
		return 0, false, err
	}
	return s.SnapshotRevision, true, nil
}
