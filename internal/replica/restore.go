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
		wait := r.restoreBackoff.Failed()
		r.restoreRetryAt = time.Now().Add(wait)
		r.lg.Error("restore.from: the snapshot cannot be restored; nothing was changed, and the replica carries on with its own data",
			zap.String("from", from), zap.Error(err), zap.Duration("retry-in", wait))
		return
	}
	r.restoreBackoff.Succeeded()
	r.restoreRetryAt = time.Time{}
}

// restoreRetryMax bounds the back-off between attempts to verify a
// restore.from snapshot that failed.
const restoreRetryMax = 5 * time.Minute

func (r *Replica) tryRequestRestore(ctx context.Context, from string) error {
	rec, raw, err := r.readRecord(ctx)
	if err != nil {
		return err
	}
	if !plan.RestoreNeeded(rec, from) {
		return nil
	}
	db, m, err := r.fetchSnapshot(ctx, from)
	if err != nil {
		return err
	}
	_ = db.Close()
	_, _, err = r.claim(ctx, rec, raw, plan.Claim{Kind: plan.ClaimRestore, URL: from, ServedRevision: r.servedRevision()})
	if errors.Is(err, errRecordChanged) {
		return nil // another replica changed the record first: look again
	}
	if err != nil {
		return err
	}
	r.lg.Info("restore requested: every member stops, then this replica founds the cluster anew from the snapshot",
		zap.String("from", from), zap.Int64("revision", m.Revision), zap.String("snapshot-cluster", m.ClusterID))
	return nil
}

// servedRevision is the revision of this replica's running member (0 when
// none runs): a restore claimed now moves the revision above it.
func (r *Replica) servedRevision() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.etcd == nil {
		return 0
	}
	return r.etcd.Server.KV().Rev()
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

// restoreSnapshot founds a new one-member cluster from the claimed
// snapshot, with the revision bumped above every revision the cluster is
// known to have served (plan.NextBump) and old revisions marked compacted,
// records it as the next generation, then starts on it. The old data dir is
// moved aside, not deleted. A crash before the record is written leaves the
// claim pending, and the restore simply runs again.
func (r *Replica) restoreSnapshot(ctx context.Context, obs plan.ReplicaObservation, raw string) error {
	rec := obs.Record
	req := *rec.Claim
	r.stopEtcd()
	if req.URL != r.cfg.Restore.From {
		r.lg.Warn("restoring a snapshot this replica's config does not name (another replica requested it and named this one)",
			zap.String("from", req.URL), zap.String("configured", r.cfg.Restore.From))
	}
	db, m, err := r.fetchSnapshot(ctx, req.URL)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer db.Close()
	var served int64
	if _, err := os.Stat(r.cfg.DataDir); err == nil {
		if old := InspectData(r.lg, r.cfg.DataDir); old.State == plan.DataValid {
			served = old.Revision
		}
		dst, err := moveAside(r.cfg.DataDir, "restore", defaultAside(), time.Now())
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
	bump := plan.NextBump(rec, served, db.Revision, snapshot.RevisionBump)
	if err := snapshot.RestoreNewCluster(r.lg, db, snapshot.Member{Name: r.self.Name, PeerURL: r.self.PeerURL, DataDir: r.cfg.DataDir, Bump: bump}); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	info := InspectData(r.lg, r.cfg.DataDir)
	if info.State != plan.DataValid {
		return fmt.Errorf("restore: the restored data dir reads as %s (%s)", info.State, info.Problem)
	}
	next := plan.RestoredRecord(rec, info.ClusterID, info.MemberID, r.self.Name, req.URL, db.Revision, bump, time.Now())
	if err := r.markers.writeGeneration(info.MemberID, info.ClusterID, next.Generation, time.Now()); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := r.swapRecord(ctx, raw, next); err != nil {
		return fmt.Errorf("restore: record the restored cluster: %w", err)
	}
	r.lg.Info("restored the snapshot; founding the cluster anew",
		zap.String("from", req.URL), zap.Int64("revision", db.Revision), zap.Int64("revision-bump", bump),
		zap.String("cluster-id", fmt.Sprintf("%x", info.ClusterID)), zap.Uint64("generation", next.Generation), zap.Int64("keys", m.KeyCount))
	return r.restart(ctx)
}
