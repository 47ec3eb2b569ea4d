package replica

import (
	"context"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/agent"
	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
)

// runSnapshots takes the scheduled snapshots. It runs on every replica and
// acts only while this replica's member leads, so exactly one replica takes
// each snapshot; one finishes before the next can start.
func (r *Replica) runSnapshots(ctx context.Context) {
	sc := r.cfg.Snapshots
	if sc.Schedule == "" {
		return
	}
	sched, err := cron.ParseStandard(sc.Schedule)
	if err != nil { // Validate already refused it
		r.lg.Error("snapshot schedule", zap.Error(err))
		return
	}
	r.metrics.SnapshotInterval.Set(scheduleInterval(sched, time.Now()).Seconds())
	for {
		next := sched.Next(time.Now())
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		e := r.localMember()
		if e == nil || e.Server.Leader() != e.Server.MemberID() {
			continue
		}
		r.takeSnapshot(ctx, uint64(e.Server.Cluster().ID()))
	}
}

// scheduleInterval is the longest gap between two consecutive runs of sched
// over its next 1000 runs or the year after from, whichever ends first
// ("@every 6h": 6h; "0 2 * * 1-5": the weekend's 72h): the age past which
// the newest snapshot breaches the schedule.
func scheduleInterval(sched cron.Schedule, from time.Time) time.Duration {
	var longest time.Duration
	prev := sched.Next(from)
	end := from.AddDate(1, 0, 0)
	for i := 0; i < 1000 && !prev.IsZero() && prev.Before(end); i++ {
		next := sched.Next(prev)
		if next.IsZero() {
			break
		}
		longest = max(longest, next.Sub(prev))
		prev = next
	}
	return longest
}

// takeSnapshot takes one snapshot and applies retention to this cluster's
// snapshots only.
func (r *Replica) takeSnapshot(ctx context.Context, clusterID uint64) {
	sc := r.cfg.Snapshots
	start := time.Now()
	prefix := fmt.Sprintf("vetcd-%x-", clusterID)
	name := prefix + start.UTC().Format("20060102T150405Z")
	fail := func(err error) {
		r.metrics.SnapshotFailures.Inc()
		r.mu.Lock()
		r.snap.Failures++
		r.snap.LastError = err.Error()
		r.mu.Unlock()
		r.lg.Warn("scheduled snapshot failed", zap.String("name", name), zap.Error(err))
	}
	loc, err := storage.Parse(sc.Target)
	if err != nil {
		fail(err)
		return
	}
	b, err := storage.Open(ctx, loc)
	if err != nil {
		fail(err)
		return
	}
	keys := snapshot.Keys{PassphraseFile: sc.Encryption.PassphraseFile, PassphraseEnv: sc.Encryption.PassphraseEnv, RecipientsFile: sc.Encryption.RecipientsFile}
	cctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	m, err := snapshot.Create(cctx, snapshot.Source{Endpoints: []string{r.cfg.ClientURL}, TLS: r.clientTLS}, b, loc.Name+name,
		snapshot.CreateOptions{Keys: keys, TempDir: parentDir(r.cfg.DataDir), Logger: r.lg})
	if err != nil {
		fail(err)
		return
	}
	took := time.Since(start)
	r.metrics.SnapshotLastSuccess.SetToCurrentTime()
	r.metrics.SnapshotDuration.Set(took.Seconds())
	r.metrics.SnapshotSize.Set(float64(m.Size))
	r.mu.Lock()
	r.snap.Last, r.snap.LastAt, r.snap.LastSize, r.snap.LastError = storage.WithName(sc.Target, name), time.Now().UTC(), m.Size, ""
	r.mu.Unlock()
	r.lg.Info("scheduled snapshot taken", zap.String("name", name), zap.Int64("revision", m.Revision), zap.Int64("bytes", m.Size), zap.Duration("took", took))

	if sc.Retention <= 0 {
		return
	}
	entries, err := snapshot.List(cctx, b, loc.Name+prefix)
	if err != nil {
		r.lg.Warn("snapshot retention: list failed", zap.Error(err))
		return
	}
	for _, old := range entries[min(sc.Retention, len(entries)):] {
		if err := snapshot.Delete(cctx, b, old.Name); err != nil {
			r.lg.Warn("snapshot retention: delete failed", zap.String("name", old.Name), zap.Error(err))
			continue
		}
		r.lg.Info("snapshot retention: deleted", zap.String("name", old.Name), zap.Int("keep", sc.Retention))
	}
}

// snapshotState is the last scheduled snapshot, for `vetcd status`.
type snapshotState = agent.SnapshotState
