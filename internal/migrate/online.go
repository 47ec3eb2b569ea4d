package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var (
	// ErrAlreadyMigrated: the target's marker says a migration finished.
	ErrAlreadyMigrated = errors.New("migrate: the target already holds a finished migration")
	// ErrTargetNotEmpty: the target holds user keys (and force was not
	// given).
	ErrTargetNotEmpty = errors.New("migrate: the target already holds keys")
)

// IntoOptions configures Into.
type IntoOptions struct {
	Options
	// Force allows a target that holds user keys: MoveAside runs first
	// and must preserve them; then they are deleted from the target.
	Force bool
	// MoveAside preserves the target's data before Force deletes its
	// keys (the CLI takes a vetcd snapshot) and says where it went.
	MoveAside func(ctx context.Context) (string, error)
	// BumpWorkers is how many revision-raising txns are in flight
	// (default 32).
	BumpWorkers int
	// OnBump, if set, is told the revision reached and the goal while
	// the revision is raised.
	OnBump func(rev, goal int64)
}

// IntoResult says what Into did beyond Result.
type IntoResult struct {
	Result
	// MovedAside is MoveAside's answer when Force preserved user keys.
	MovedAside string
}

// Into migrates a kine SQLite file into the running cluster cli talks to.
// It refuses a finished migration (ErrAlreadyMigrated) and a target that
// holds user keys (ErrTargetNotEmpty) unless Force. It writes the keys in
// batched txns, verifies count and hash, raises the revision above kine's
// with small txns on a vetcd key (one revision each: cost grows with
// kine's revision, about 4-10k revisions/s), compacts the history
// before it, writes the "done" marker and renames the source. A failure
// leaves the marker "copying": a rerun with the same source resumes.
func Into(ctx context.Context, cli *clientv3.Client, o IntoOptions) (res IntoResult, err error) {
	lg := o.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	src, err := OpenSQLite(ctx, o.Source, o.SourceOptions)
	if err != nil {
		return res, err
	}
	defer src.Close()
	// The cluster is written to: check the whole file first.
	if err := src.Check(ctx); err != nil {
		return res, err
	}
	res.SourceRevision = src.Revision

	m, ok, err := ReadMarker(ctx, cli)
	if err != nil {
		return res, err
	}
	switch {
	case ok && m.State == StateDone:
		return res, fmt.Errorf("%w: %s was migrated at %s (%d keys, revision %d)", ErrAlreadyMigrated, m.Source, m.Finished.Format(time.RFC3339), m.Keys, m.Revision)
	case ok && (m.Source != src.Path() || m.SourceRevision != src.Revision):
		// The keys are an interrupted migration's of another source
		// revision (the marker proves nothing else was there): clear them.
		lg.Warn("the target holds an interrupted migration of another source or revision; clearing it",
			zap.String("source", m.Source), zap.Int64("source-revision", m.SourceRevision))
		if err := deleteUserKeys(ctx, cli); err != nil {
			return res, err
		}
		ok = false
	case ok:
		res.Resumed = true
	}
	if !ok {
		n, err := countUserKeys(ctx, cli)
		if err != nil {
			return res, err
		}
		if n > 0 {
			if !o.Force || o.MoveAside == nil {
				return res, fmt.Errorf("%w (%d keys): migrate into an empty cluster, or use --force to keep a snapshot of them and replace them", ErrTargetNotEmpty, n)
			}
			if res.MovedAside, err = o.MoveAside(ctx); err != nil {
				return res, fmt.Errorf("migrate: move the target's keys aside: %w (nothing was changed)", err)
			}
			lg.Warn("the target's keys were saved and are now deleted", zap.Int64("keys", n), zap.String("saved-to", res.MovedAside))
			if err := deleteUserKeys(ctx, cli); err != nil {
				return res, err
			}
		}
		m = Marker{State: StateCopying, Source: src.Path(), SourceRevision: src.Revision, Started: time.Now().UTC()}
		if err := putMarker(ctx, cli, m); err != nil {
			return res, err
		}
	}
	stats, err := copyAndVerify(ctx, cli, src, m, o.Options)
	if err != nil {
		return res, err
	}
	res.Stats = stats
	rev, err := raiseRevision(ctx, cli, src.Revision, o.BumpWorkers, o.OnBump)
	if err != nil {
		return res, err
	}
	m.State, m.Keys, m.Bytes, m.SHA256, m.After = StateDone, stats.Keys, stats.Bytes, stats.SHA256, ""
	m.Finished = time.Now().UTC()
	m.Revision = rev + 1
	if err := putMarker(ctx, cli, m); err != nil {
		return res, err
	}
	// Mark everything before the migration compacted: watchers of older
	// revisions relist instead of reading kine-era resourceVersions.
	if _, err := cli.Compact(ctx, m.Revision); err != nil {
		return res, fmt.Errorf("migrate: compact at %d: %w", m.Revision, err)
	}
	res.Revision = m.Revision
	if res.Renamed, err = renameSource(src); err != nil {
		return res, err
	}
	lg.Info("kine SQLite migrated", zap.Int64("keys", res.Keys), zap.Int64("kine-revision", res.SourceRevision),
		zap.Int64("revision", res.Revision), zap.String("source-renamed-to", res.Renamed))
	return res, nil
}

// countUserKeys counts the keys outside MarkerPrefix.
func countUserKeys(ctx context.Context, cli *clientv3.Client) (int64, error) {
	all, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("count target keys: %w", err)
	}
	ours, err := cli.Get(ctx, MarkerPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("count target keys: %w", err)
	}
	return all.Count - ours.Count, nil
}

// deleteUserKeys deletes every key outside MarkerPrefix, in one txn.
func deleteUserKeys(ctx context.Context, cli *clientv3.Client) error {
	_, err := cli.Txn(ctx).Then(
		clientv3.OpDelete("\x00", clientv3.WithRange(MarkerPrefix)),
		clientv3.OpDelete(clientv3.GetPrefixRangeEnd(MarkerPrefix), clientv3.WithFromKey()),
	).Commit()
	if err != nil {
		return fmt.Errorf("migrate: delete the target's keys: %w", err)
	}
	return nil
}

// raiseRevision writes a vetcd key until the revision is above goal, with
// workers txns in flight, then deletes it; it returns the revision.
func raiseRevision(ctx context.Context, cli *clientv3.Client, goal int64, workers int, report func(rev, goal int64)) (int64, error) {
	if workers <= 0 {
		workers = 32
	}
	resp, err := cli.Get(ctx, bumpKey)
	if err != nil {
		return 0, fmt.Errorf("migrate: raise revision: %w", err)
	}
	var reached atomic.Int64
	reached.Store(resp.Header.Revision)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for reached.Load() <= goal && ctx.Err() == nil {
				r, err := cli.Put(ctx, bumpKey, "")
				if err != nil {
					mu.Lock()
					if firstErr == nil && ctx.Err() == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				for {
					cur := reached.Load()
					if r.Header.Revision <= cur || reached.CompareAndSwap(cur, r.Header.Revision) {
						break
					}
				}
			}
		}()
	}
	if report != nil {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		t := time.NewTicker(200 * time.Millisecond)
	loop:
		for {
			select {
			case <-done:
				break loop
			case <-t.C:
				report(reached.Load(), goal)
			}
		}
		t.Stop()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, fmt.Errorf("migrate: raise revision: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d, err := cli.Delete(ctx, bumpKey)
	if err != nil {
		return 0, fmt.Errorf("migrate: raise revision: %w", err)
	}
	return d.Header.Revision, nil
}
