package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/replica"
	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/status"
	"github.com/vetcd/vetcd/internal/storage"
	"github.com/vetcd/vetcd/internal/topology"
)

// RestoreOptions configures a local restore.
type RestoreOptions struct {
	Dir     string
	Backend storage.Backend
	Name    string
	// Source is the URL, for the cluster record and messages.
	Source string
	Keys   snapshot.Keys
	Out    io.Writer
	Logger *zap.Logger
	// Wait bounds how long a running cluster may take to stop and to come
	// back.
	Wait time.Duration
}

// Restore replaces the local cluster in Dir with a snapshot. It verifies
// the manifest and the checksum of the whole db before touching anything;
// then it stops the replicas (through the running `vetcd up`, or by
// holding DIR's lock when none runs), moves every replica's data aside,
// restores into ordinal 0 with a revision bump and mark-compacted, and
// records the new cluster. The other replicas rejoin as learners. The old
// data is deleted only once the restored cluster is healthy; without a
// running `vetcd up` it is kept and its place is printed.
func Restore(ctx context.Context, o RestoreOptions) error {
	l := Layout{Dir: o.Dir}
	settings, ok, err := l.ReadSettings()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s is not a vetcd cluster dir (create one with vetcd up first)", o.Dir)
	}
	lg := o.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	if o.Wait == 0 {
		o.Wait = 3 * time.Minute
	}

	// 1. Verify everything before touching anything.
	db, m, err := snapshot.Fetch(ctx, o.Backend, o.Name, o.Keys, l.Dir)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Source, err)
	}
	defer db.Close()
	fmt.Fprintf(o.Out, "verified %s: cluster %s, revision %d, %d keys, sha256 %s...\n", o.Source, m.ClusterID, db.Revision, m.KeyCount, m.SHA256[:12])

	// 2. Stop the replicas.
	running := Running(o.Dir)
	var unlock func()
	if running {
		if err := topology.UpdateFile(l.TopologyPath(), func(f *topology.File) error { f.Paused = true; return nil }); err != nil {
			return err
		}
		defer func() { // never leave the cluster paused
			_ = topology.UpdateFile(l.TopologyPath(), func(f *topology.File) error { f.Paused = false; return nil })
		}()
		fmt.Fprintln(o.Out, "stopping the replicas of the running vetcd up")
		if err := waitStopped(ctx, l, o.Wait); err != nil {
			return err
		}
	} else {
		if unlock, err = Lock(o.Dir); err != nil {
			return err
		}
		defer unlock()
	}

	// 3. Move every replica's data aside.
	f, err := topology.ReadFile(l.TopologyPath())
	if err != nil {
		return err
	}
	rec, _, err := plan.ParseRecord(f.ClusterRecord)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing was changed", l.TopologyPath(), err)
	}
	stamp := time.Now().UTC().Format("20060102T150405")
	var aside []string
	var served int64 // the highest revision any replica's data reached
	for _, r := range f.Replicas {
		data := l.DataDir(r.Ordinal)
		if _, err := os.Stat(data); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if info := replica.InspectData(lg, data); info.State == plan.DataValid {
			served = max(served, info.Revision)
		}
		dst := data + ".pre-restore-" + stamp
		if err := os.Rename(data, dst); err != nil {
			return fmt.Errorf("move %s aside: %w", data, err)
		}
		aside = append(aside, dst)
		for _, marker := range []string{"left.json", "rebuild.json", "generation.json"} {
			_ = os.Remove(filepath.Join(l.ReplicaDir(r.Ordinal), marker))
		}
	}

	// 4. Restore into ordinal 0.
	r0 := settings.Replica(0)
	// Above every revision served, so that watchers relist rather than see
	// the revision go backwards (safety rule 7), even on a second restore
	// of the same snapshot.
	bump := plan.NextBump(rec, served, db.Revision, snapshot.RevisionBump)
	if err := snapshot.RestoreNewCluster(lg, db, snapshot.Member{Name: r0.Name, PeerURL: r0.PeerURL, DataDir: l.DataDir(0), Bump: bump}); err != nil {
		return fmt.Errorf("%w (the old data is kept in %v)", err, aside)
	}
	info := replica.InspectData(lg, l.DataDir(0))
	if err := topology.UpdateFile(l.TopologyPath(), func(f *topology.File) error {
		// Under the file's lock, from the record as it is now: the
		// replicas are stopped, but a record changed since it was read
		// above is kept, not overwritten.
		cur, _, err := plan.ParseRecord(f.ClusterRecord)
		if err != nil {
			return err
		}
		f.ClusterRecord = plan.RestoredRecord(cur, info.ClusterID, info.MemberID, "vetcd snapshot restore", o.Source, db.Revision, bump, time.Now()).Encode()
		f.Paused = false
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "restored into %s: new cluster %x; the other replicas rejoin as learners\n", l.DataDir(0), info.ClusterID)

	// 5. Wait for the cluster and drop the old data, or keep it.
	if !running {
		fmt.Fprintf(o.Out, "no vetcd up is running on %s: the next vetcd up starts the restored cluster; the old data is kept in %v until you delete it\n", o.Dir, aside)
		return nil
	}
	files := l.PKI()
	tlsConfig, err := pki.ClientConfig(files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	eps := func() []string { e, _ := l.ClientEndpoints(); return e }
	// The desired count is read on every poll: a `vetcd scale` during the
	// restore changes what healthy means.
	n := f.Desired
	desired := func() int {
		if cur, err := topology.ReadFile(l.TopologyPath()); err == nil && cur.Desired > 0 {
			n = cur.Desired
		}
		return n
	}
	if _, err := status.WaitDesired(wctx, eps, tlsConfig, desired); err != nil {
		return fmt.Errorf("restored cluster not healthy yet (the old data is kept in %v): %w", aside, err)
	}
	for _, a := range aside {
		if err := os.RemoveAll(a); err != nil {
			return fmt.Errorf("remove old data %s: %w", a, err)
		}
	}
	fmt.Fprintf(o.Out, "cluster is healthy with %d voters; old data removed\n", n)
	return nil
}

// waitStopped waits until the supervisor reports no replica process.
func waitStopped(ctx context.Context, l Layout, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		f, err := topology.ReadFile(l.TopologyPath())
		if err != nil {
			return err
		}
		running := 0
		for _, st := range f.Processes {
			if st != topology.StateStopped {
				running++
			}
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d replicas still running after %s; nothing was changed", running, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
