package replica

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
)

// recordSwapper is a topology source that can replace the cluster record
// only if it still holds what was read, so that two replicas requesting a
// restore at once cannot both believe they won.
type recordSwapper interface {
	SwapClusterRecord(ctx context.Context, old, record string) (bool, error)
}

// requestRestore turns restore.from into a request in the cluster record,
// once per URL: it verifies the snapshot first (manifest, decryption,
// checksum), so a bad snapshot changes nothing, then records the request
// naming this replica. plan.ReplicaNext does the rest on every replica.
//
// A snapshot that cannot be verified is logged and retried with a growing
// back-off (at most restoreRetryMax), and the replica carries on with its
// own data meanwhile: a mistyped URL must not take a live cluster down.
func (r *Replica) requestRestore(ctx context.Context) {
	from := r.cfg.Restore.From
	if from == "" || time.Now().Before(r.restoreRetryAt) {
		return
	}
	if err := r.tryRequestRestore(ctx, from); err != nil {
		r.restoreBackoff = min(max(2*r.restoreBackoff, 5*time.Second), restoreRetryMax)
		r.restoreRetryAt = time.Now().Add(r.restoreBackoff)
		r.lg.Error("restore.from: the snapshot cannot be restored; nothing was changed, and the replica carries on with its own data",
			zap.String("from", from), zap.Error(err), zap.Duration("retry-in", r.restoreBackoff))
		return
	}
	r.restoreBackoff, r.restoreRetryAt = 0, time.Time{}
}

// restoreRetryMax bounds the back-off between attempts to verify a
// restore.from snapshot that failed.
const restoreRetryMax = 5 * time.Minute

func (r *Replica) tryRequestRestore(ctx context.Context, from string) error {
	record, err := r.topo.ClusterRecord(ctx)
	if err != nil {
		return err
	}
	if !plan.RestoreNeeded(record, from) {
		return nil
	}
	db, m, err := r.fetchSnapshot(ctx, from)
	if err != nil {
		return err
	}
	_ = db.Close()
	req := plan.RestoreRequestRecord(r.self.Ordinal, from, time.Now().UTC().Format(time.RFC3339))
	if s, ok := r.topo.(recordSwapper); ok {
		swapped, err := s.SwapClusterRecord(ctx, record, req)
		if err != nil {
			return err
		}
		if !swapped {
			return nil // another replica changed the record first: look again
		}
	} else if err := r.topo.SetClusterRecord(ctx, req); err != nil {
		return err
	}
	r.lg.Info("restore requested: every member stops, then this replica founds the cluster anew from the snapshot",
		zap.String("from", from), zap.Int64("revision", m.Revision), zap.String("snapshot-cluster", m.ClusterID))
	return nil
}

// fetchSnapshot downloads and verifies the snapshot at url, staged in
// memory or in a file next to the data dir.
func (r *Replica) fetchSnapshot(ctx context.Context, url string) (*snapshot.DB, snapshot.Manifest, error) {
	loc, err := storage.Parse(url)
	if err != nil {
		return nil, snapshot.Manifest{}, err
	}
	b, err := storage.Open(ctx, loc)
	if err != nil {
		return nil, snapshot.Manifest{}, err
	}
	d := r.cfg.Restore.Decryption
	keys := snapshot.Keys{PassphraseFile: d.PassphraseFile, PassphraseEnv: d.PassphraseEnv, IdentityFile: d.IdentityFile}
	dir := parentDir(r.cfg.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, snapshot.Manifest{}, err
	}
	db, m, err := snapshot.Fetch(ctx, b, loc.Name, keys, dir)
	if err != nil {
		return nil, m, fmt.Errorf("%s: %w", url, err)
	}
	return db, m, nil
}

// restoreSnapshot founds a new one-member cluster from the requested
// snapshot, with the revision bumped and old revisions marked compacted,
// then starts on it. The old data dir is moved aside, not deleted. A crash
// before the record says "restored" leaves the request pending, and the
// restore simply runs again.
func (r *Replica) restoreSnapshot(ctx context.Context, req plan.RestoreRequest) error {
	r.stopEtcd()
	if req.From != r.cfg.Restore.From {
		r.lg.Warn("restoring a snapshot this replica's config does not name (another replica requested it and named this one)",
			zap.String("from", req.From), zap.String("configured", r.cfg.Restore.From))
	}
	db, m, err := r.fetchSnapshot(ctx, req.From)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer db.Close()
	if _, err := os.Stat(r.cfg.DataDir); err == nil {
		dst, err := moveAside(r.cfg.DataDir, "restore", keepAside, time.Now())
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		r.lg.Info("moved the old data aside", zap.String("to", dst))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	if err := r.markers.clearLeft(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := snapshot.RestoreNewCluster(r.lg, db, snapshot.Member{Name: r.self.Name, PeerURL: r.self.PeerURL, DataDir: r.cfg.DataDir}); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	info := InspectData(r.lg, r.cfg.DataDir)
	if info.State != plan.DataValid {
		return fmt.Errorf("restore: the restored data dir reads as %s (%s)", info.State, info.Problem)
	}
	record := plan.RestoredRecord(info.ClusterID, req.From, r.self.Ordinal, db.Revision, snapshot.RevisionBump, time.Now().UTC().Format(time.RFC3339))
	if err := r.topo.SetClusterRecord(ctx, record); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	r.lg.Info("restored the snapshot; founding the cluster anew",
		zap.String("from", req.From), zap.Int64("revision", db.Revision), zap.Int64("revision-bump", snapshot.RevisionBump),
		zap.String("cluster-id", fmt.Sprintf("%x", info.ClusterID)), zap.Int64("keys", m.KeyCount))
	return r.restart(ctx)
}
