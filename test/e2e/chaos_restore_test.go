package e2e

import (
	"context"
	be "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/vetcd/vetcd/internal/local"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
	"github.com/vetcd/vetcd/internal/topology"
)

// restoreTally counts how the restores of a run ended.
type restoreTally struct {
	applied, refused int
	// appliedButFailed: applied (the record and the data say so), but the
	// command exited with an error, e.g. waiting for a voter count that a
	// scale-down changed meanwhile.
	appliedButFailed int
}

func (r restoreTally) Total() int { return r.applied + r.refused }

func (r restoreTally) String() string {
	return fmt.Sprintf("%d applied (%d of them with a failed health wait), %d refused", r.applied, r.appliedButFailed, r.refused)
}

// restoreDuringRebuild injects fRestoreRebuild. While the load runs it
// takes a snapshot (file:// in the test dir) and lets 1-4 s of writes
// follow it, which the restore will undo by design. Then the epoch ends
// (see chaosEpoch): the load stops and the epoch is checked whole. On the
// quiet cluster, `vetcd snapshot restore` and a quorum-breaking scale-down
// with the surplus frozen and killed (so a survivor wants to rebuild) run
// in an order and 0-12 s apart as drawn from the seed. Then:
//
//   - the cluster record, polled throughout, never lowers its generation,
//     never shows two histories (cluster ID, origin) under one generation,
//     and never replaces a held claim with another before it is stale;
//   - the restore completed (the record names it as the current
//     generation's origin, and `vetcd snapshot restore` did not claim
//     success otherwise) or was refused with an error that says nothing
//     was changed;
//   - the state under the prefix equals the snapshot's content exactly
//     (every key, value, create and mod revision, version, lease) when
//     the restore completed, else the state before the fault exactly;
//     and the snapshot equals the state at its revision that the
//     epoch's watchers saw;
//   - after a restore the revision is above every revision served before
//     (safety rule 7);
//   - every desired replica serves the recorded cluster ID with its
//     generation marker at the recorded generation, no claim is left, and
//     no dropped replica runs.
//
// The next epoch starts from the state read back. It returns the epoch the
// run goes on with: ep itself when nothing was injected.
func (r *chaosRun) restoreDuringRebuild(ctx context.Context, ch *chaos, f fault, ep *chaosEpoch) (*chaosEpoch, error) {
	t, c := r.t, r.c
	e := faultEvent{Kind: f.kind, Start: ch.h.now()}
	defer func() {
		e.End = ch.h.now()
		ch.record(e)
	}()
	from := ch.desired
	if l, err := ch.waitLeader0(ctx, time.Minute); err != nil {
		e.Detail = fmt.Sprintf("leader is vetcd-%d, not vetcd-0 (%v): not injected", l, err)
		return ep, nil
	}
	r.restoreN++
	name := fmt.Sprintf("restore-%d", r.restoreN)
	if err := os.MkdirAll(r.snapshots, 0o700); err != nil {
		return ep, err
	}
	url := "file://" + r.snapshots + "/" + name
	if out, err := vetcd(t, 2*time.Minute, "snapshot", "create", url, "--dir", c.dir); err != nil {
		return ep, fmt.Errorf("vetcd snapshot create: %w\n%s", err, out)
	}
	snap, snapRev, err := readSnapshotState(ctx, r.snapshots, name)
	if err != nil {
		return ep, fmt.Errorf("read the snapshot back: %w", err)
	}
	sleepCtx(ctx, time.Duration(1000+ch.rng.IntN(3000))*time.Millisecond) // writes the restore undoes
	init := ep.init
	res := r.endEpoch(ctx, ep, ch)
	var v []string
	defer func() { r.violations = append(r.violations, v...) }()
	if at, which, ok := stateAt(res.logs, init, snapRev); ok {
		v = append(v, compareStates(fmt.Sprintf("snapshot %s at revision %d against what watcher %s saw", name, snapRev, which), at, snap, true)...)
	} else {
		t.Logf("chaos: snapshot %s not checked against the watchers: none saw every revision up to %d", name, snapRev)
	}
	pre, preRev, err := readState(ctx, c.client(ch.desired))
	if err != nil {
		return ep, fmt.Errorf("read the state before the restore: %w", err)
	}
	before, err := recordOf(c.dir)
	if err != nil {
		return ep, err
	}

	mon := watchRecord(c.dir)
	// Scale first: the survivor claims its rebuild after ~4 s without a
	// leader and runs the forced start for ~2 s more, so 2-10 s lands the
	// restore before, on and after the claim. Restore first: it stops the
	// replicas within a few seconds and has the restored cluster back
	// within ~10 s, so 0-12 s lands the scale-down on the stopping, the
	// restarting and the restored cluster, while the command still waits.
	restoreFirst := ch.rng.IntN(2) == 0
	delay := time.Duration(ch.rng.IntN(12000)) * time.Millisecond
	if !restoreFirst {
		delay = 2*time.Second + delay*2/3
	}
	leader0 := true
	if _, err := ch.waitLeader0(ctx, time.Minute); err != nil {
		leader0 = false
	}
	type outcome struct {
		out string
		err error
	}
	done := make(chan outcome, 1)
	restore := func() {
		go func() {
			out, err := vetcd(t, 5*time.Minute, "snapshot", "restore", url, "--dir", c.dir, "--wait", "2m")
			done <- outcome{out, err}
		}()
	}
	var scaleErr error
	scaleDown := func() string {
		var frozen []int
		if leader0 {
			for i := f.scaleTo; i < from; i++ {
				if pid := c.pid(i); pid > 0 && syscall.Kill(pid, syscall.SIGSTOP) == nil {
					frozen = append(frozen, pid)
					e.Targets = append(e.Targets, i)
				}
			}
		}
		out, err := vetcd(t, time.Minute, "scale", strconv.Itoa(f.scaleTo), "--dir", c.dir)
		for _, pid := range frozen {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		if err != nil {
			scaleErr = fmt.Errorf("vetcd scale %d: %w\n%s", f.scaleTo, err, out)
		}
		if !leader0 {
			return fmt.Sprintf("%d → %d gracefully (vetcd-0 did not lead)", from, f.scaleTo)
		}
		return fmt.Sprintf("%d → %d with %d surplus frozen and killed", from, f.scaleTo, len(frozen))
	}
	var how string
	if restoreFirst {
		restore()
		sleepCtx(ctx, delay)
		how = fmt.Sprintf("restore started, %s later scale %s", delay.Round(time.Millisecond), scaleDown())
	} else {
		how = fmt.Sprintf("scale %s, %s later restore started", scaleDown(), delay.Round(time.Millisecond))
		sleepCtx(ctx, delay)
		restore()
	}
	o := <-done
	if scaleErr != nil {
		mon.stop()
		return ep, scaleErr
	}
	ch.desired = f.scaleTo
	if _, err := ch.converge(ctx, 4*time.Minute); err != nil {
		mon.stop()
		e.Detail = how
		return ep, fmt.Errorf("after the restore the cluster did not converge to %d healthy voters within 4m: %w (restore said: %v %s)", ch.desired, err, o.err, strings.TrimSpace(o.out))
	}
	after, serving := r.checkServing(ctx, ch)
	obs := mon.stop()
	v = append(v, serving...)
	v = append(v, checkRecordHistory(obs)...)

	applied := restoreApplied(before, after, url)
	post, postRev, err := readState(ctx, c.client(ch.desired))
	if err != nil {
		return ep, fmt.Errorf("read the state after the restore: %w", err)
	}
	switch {
	case applied:
		r.restores.applied++
		if o.err != nil {
			r.restores.appliedButFailed++
			how += fmt.Sprintf("; applied, but the command failed: %v %s", o.err, lastLine(o.out))
		} else {
			how += "; applied"
		}
		v = append(v, compareStates(fmt.Sprintf("state after restoring %s against the snapshot", name), snap, post, false)...)
		if top := max(res.fence, preRev); postRev <= top {
			v = append(v, fmt.Sprintf("restore of %s: revision %d after it, not above the %d served before (safety rule 7)", name, postRev, top))
		}
	case o.err == nil:
		v = append(v, fmt.Sprintf("vetcd snapshot restore %s said it succeeded, but the record does not name it (record %s)", name, after.Encode()))
		fallthrough
	default:
		r.restores.refused++
		how += fmt.Sprintf("; refused: %v %s", o.err, lastLine(o.out))
		if o.err != nil && !strings.Contains(o.out, "nothing was changed") {
			v = append(v, fmt.Sprintf("vetcd snapshot restore %s failed without saying that nothing was changed: %v\n%s", name, o.err, o.out))
		}
		v = append(v, compareStates(fmt.Sprintf("state after a refused restore of %s against the state before it", name), pre, post, false)...)
	}
	e.Detail = fmt.Sprintf("snapshot %s at revision %d (%d keys); %s; record: %s",
		name, snapRev, len(snap), how, describeRecords(obs))
	return r.startEpoch(ctx, ep.n+1, postRev+1, post), nil
}

// restoreApplied says whether the record after says a restore from url
// completed since the record before: a later generation that lists url
// among the restored snapshots. The current generation's origin is not
// enough: the scale-down may have made the restored cluster rebuild since.
func restoreApplied(before, after plan.Record, url string) bool {
	return after.Generation > before.Generation && slices.Contains(after.Restored, url) && !slices.Contains(before.Restored, url)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// readSnapshotState decodes snapshot name in dir (a file:// location) and
// returns the state under the prefix at its newest revision, and that
// revision.
func readSnapshotState(ctx context.Context, dir, name string) (map[string]*mvccpb.KeyValue, int64, error) {
	db, _, err := snapshot.Fetch(ctx, storage.NewFile(dir), name, snapshot.Keys{}, dir)
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	// A copy on disk: bbolt maps the file it opens.
	tmp, err := os.MkdirTemp(dir, ".read-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(tmp)
	b, err := os.ReadFile(db.Path)
	if err != nil {
		return nil, 0, err
	}
	path := filepath.Join(tmp, "db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, 0, err
	}
	return dbState(path)
}

// dbState reads etcd's key bucket in revision order: the newest version of
// each key under the prefix, without the deleted ones (a tombstone's
// revision key ends in 't'), and the newest revision.
func dbState(path string) (map[string]*mvccpb.KeyValue, int64, error) {
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	state := map[string]*mvccpb.KeyValue{}
	var rev int64
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New("no bucket named key")
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) < 17 {
				return fmt.Errorf("revision key %x", k)
			}
			rev = max(rev, int64(be.BigEndian.Uint64(k[:8])))
			if len(v) == 0 { // a restore's revision bump
				return nil
			}
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return err
			}
			key := string(kv.Key)
			if !strings.HasPrefix(key, chaosPrefix) {
				return nil
			}
			if len(k) == 18 && k[17] == 't' {
				delete(state, key)
				return nil
			}
			state[key] = &kv
			return nil
		})
	})
	return state, rev, err
}

// readState reads everything under the prefix, linearizably, with its
// revision.
func readState(ctx context.Context, cli *clientv3.Client) (map[string]*mvccpb.KeyValue, int64, error) {
	var err error
	for try := 0; try < 20; try++ {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var resp *clientv3.GetResponse
		resp, err = cli.Get(rctx, chaosPrefix, clientv3.WithPrefix())
		cancel()
		if err == nil {
			state := map[string]*mvccpb.KeyValue{}
			for _, kv := range resp.Kvs {
				state[string(kv.Key)] = kv
			}
			return state, resp.Header.Revision, nil
		}
		sleepCtx(ctx, time.Second)
	}
	return nil, 0, err
}

// stateAt is the state under the prefix at revision rev as a watcher saw
// it: init (the state before the watcher's first revision) with the
// watcher's events up to rev applied. Only a watcher that saw every
// revision from its first to rev (no compaction gap) can tell; ok is false
// when none did. Its entries carry the value and mod revision only.
func stateAt(logs []*watchLog, init map[string]*mvccpb.KeyValue, rev int64) (map[string]*mvccpb.KeyValue, string, bool) {
	for _, w := range logs {
		if w.last() < rev || w.From > rev+1 {
			continue
		}
		gap := false
		for _, g := range w.Gaps {
			gap = gap || g[0] <= rev
		}
		if gap {
			continue
		}
		s := map[string]*mvccpb.KeyValue{}
		for k, kv := range init {
			s[k] = &mvccpb.KeyValue{Key: kv.Key, Value: kv.Value, ModRevision: kv.ModRevision}
		}
		for _, e := range w.Events {
			if e.Rev > rev {
				break
			}
			if e.Delete {
				delete(s, e.Key)
			} else {
				s[e.Key] = &mvccpb.KeyValue{Key: []byte(e.Key), Value: []byte(e.Value), ModRevision: e.Rev}
			}
		}
		return s, w.Name, true
	}
	return nil, "", false
}

// compareStates lists how got differs from want, key by key: missing,
// extra, or another value, mod revision, create revision, version or
// lease. valueOnly compares the value and mod revision only (a state
// built from watch events knows no more).
func compareStates(what string, want, got map[string]*mvccpb.KeyValue, valueOnly bool) []string {
	var diffs []string
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	desc := func(kv *mvccpb.KeyValue) string {
		if valueOnly {
			return fmt.Sprintf("%q@%d", kv.Value, kv.ModRevision)
		}
		return fmt.Sprintf("%q@%d (created %d, version %d, lease %x)", kv.Value, kv.ModRevision, kv.CreateRevision, kv.Version, kv.Lease)
	}
	for _, k := range sorted {
		w, g := want[k], got[k]
		switch {
		case g == nil:
			diffs = append(diffs, fmt.Sprintf("%s missing, want %s", k, desc(w)))
		case w == nil:
			diffs = append(diffs, fmt.Sprintf("%s=%s should not be there", k, desc(g)))
		case string(w.Value) != string(g.Value) || w.ModRevision != g.ModRevision ||
			(!valueOnly && (w.CreateRevision != g.CreateRevision || w.Version != g.Version || w.Lease != g.Lease)):
			diffs = append(diffs, fmt.Sprintf("%s=%s, want %s", k, desc(g), desc(w)))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	n := len(diffs)
	if n > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("and %d more", n-10))
	}
	return []string{fmt.Sprintf("%s: %d keys differ: %s", what, n, strings.Join(diffs, "; "))}
}

// recordObs is the cluster record as seen at one moment.
type recordObs struct {
	At  time.Time
	Rec plan.Record
}

// checkRecordHistory checks a sequence of records seen in turn: the
// generation never goes down; one generation is one history (the same
// cluster ID and origin whenever it is seen); and a claim is never
// replaced by a claim of another kind or holder within a generation before
// it is stale (plan.ClaimStaleAfter): at most one claim wins at a time.
func checkRecordHistory(obs []recordObs) []string {
	var v []string
	type hist struct {
		id   plan.ID
		made *plan.Made
	}
	seen := map[uint64]hist{}
	for i, o := range obs {
		r := o.Rec
		if h, ok := seen[r.Generation]; ok && (h.id != r.ClusterID || !reflect.DeepEqual(h.made, r.Made)) {
			v = append(v, fmt.Sprintf("record: generation %d seen as cluster %s made %+v and as cluster %s made %+v", r.Generation, h.id, h.made, r.ClusterID, r.Made))
		}
		seen[r.Generation] = hist{r.ClusterID, r.Made}
		if i == 0 {
			continue
		}
		p := obs[i-1].Rec
		if r.Generation < p.Generation {
			v = append(v, fmt.Sprintf("record: generation went back from %d to %d", p.Generation, r.Generation))
		}
		if p.Claim != nil && r.Claim != nil && p.Generation == r.Generation &&
			(p.Claim.Kind != r.Claim.Kind || p.Claim.Holder != r.Claim.Holder) && o.At.Sub(p.Claim.At) < plan.ClaimStaleAfter {
			v = append(v, fmt.Sprintf("record: %s claim of replica %d (at %s) replaced by a %s claim of replica %d after %s, before it was stale",
				p.Claim.Kind, p.Claim.Holder, p.Claim.At.Format(time.RFC3339Nano), r.Claim.Kind, r.Claim.Holder, o.At.Sub(p.Claim.At).Round(time.Millisecond)))
		}
	}
	return v
}

// describeRecords is the record's course, one step per change of
// generation or claim: "g3 founded → g3 rebuild claim of 0 → g4 rebuilt".
func describeRecords(obs []recordObs) string {
	var steps []string
	for _, o := range obs {
		r := o.Rec
		step := fmt.Sprintf("g%d", r.Generation)
		if r.Made != nil {
			step += " " + string(r.Made.How)
		}
		if r.Claim != nil {
			step = fmt.Sprintf("g%d %s claim of %d", r.Generation, r.Claim.Kind, r.Claim.Holder)
		}
		if len(steps) == 0 || steps[len(steps)-1] != step {
			steps = append(steps, step)
		}
	}
	return strings.Join(steps, " → ")
}

// recordOf reads the cluster record of the local cluster in dir.
func recordOf(dir string) (plan.Record, error) {
	f, err := topology.ReadFile(local.Layout{Dir: dir}.TopologyPath())
	if err != nil {
		return plan.Record{}, err
	}
	rec, _, err := plan.ParseRecord(f.ClusterRecord)
	return rec, err
}

// recordWatch polls the cluster record every 20 ms and keeps each change.
type recordWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	obs    []recordObs
}

func watchRecord(dir string) *recordWatch {
	ctx, cancel := context.WithCancel(context.Background())
	m := &recordWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		last := ""
		for ctx.Err() == nil {
			if f, err := topology.ReadFile(local.Layout{Dir: dir}.TopologyPath()); err == nil && f.ClusterRecord != last {
				if rec, _, err := plan.ParseRecord(f.ClusterRecord); err == nil {
					last = f.ClusterRecord
					m.mu.Lock()
					m.obs = append(m.obs, recordObs{At: time.Now(), Rec: rec})
					m.mu.Unlock()
				}
			}
			sleepCtx(ctx, 20*time.Millisecond)
		}
	}()
	return m
}

// stop ends the polling and returns the records seen.
func (m *recordWatch) stop() []recordObs {
	m.cancel()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.obs
}

// checkServing waits (up to a minute) until the record has no claim, every
// desired replica answers for the recorded cluster with its generation
// marker at the recorded generation, and no other replica runs; it returns
// the record and what was still wrong at the deadline.
func (r *chaosRun) checkServing(ctx context.Context, ch *chaos) (plan.Record, []string) {
	c := r.c
	deadline := time.Now().Add(time.Minute)
	for {
		var problems []string
		rec, err := recordOf(c.dir)
		if err != nil {
			problems = append(problems, fmt.Sprintf("record: %v", err))
		} else if rec.Claim != nil {
			problems = append(problems, fmt.Sprintf("a %s claim of replica %d is left in the record", rec.Claim.Kind, rec.Claim.Holder))
		}
		for i := 0; i < chaosMaxReplicas && err == nil; i++ {
			if i >= ch.desired {
				if pid := c.pid(i); pid > 0 {
					problems = append(problems, fmt.Sprintf("vetcd-%d (pid %d) runs, but only %d replicas are desired", i, pid, ch.desired))
				}
				continue
			}
			problems = append(problems, servingProblem(ctx, c, i, rec)...)
		}
		if len(problems) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return rec, problems
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
}

// servingProblem checks that replica i's member serves the recorded
// cluster and that its data is marked with the recorded generation.
func servingProblem(ctx context.Context, c *cluster, i int, rec plan.Record) []string {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints(i + 1)[i:], TLS: c.tlsConfig(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return []string{fmt.Sprintf("vetcd-%d: client: %v", i, err)}
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	st, err := cli.Status(sctx, c.endpoints(i + 1)[i])
	cancel()
	if err != nil {
		return []string{fmt.Sprintf("vetcd-%d: status: %v", i, err)}
	}
	if plan.ID(st.Header.ClusterId) != rec.ClusterID {
		return []string{fmt.Sprintf("vetcd-%d serves cluster %x, the record names %s", i, st.Header.ClusterId, rec.ClusterID)}
	}
	b, err := os.ReadFile(filepath.Join(c.dir, local.ReplicaName(i), "generation.json"))
	if err != nil {
		return []string{fmt.Sprintf("vetcd-%d: generation marker: %v", i, err)}
	}
	var m struct {
		MemberID   string `json:"memberID"`
		ClusterID  string `json:"clusterID"`
		Generation uint64 `json:"generation"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return []string{fmt.Sprintf("vetcd-%d: generation marker %s: %v", i, b, err)}
	}
	if m.MemberID != fmt.Sprintf("%x", st.Header.MemberId) || m.ClusterID != rec.ClusterID.String() || m.Generation != rec.Generation {
		return []string{fmt.Sprintf("vetcd-%d (member %x) serves with generation marker %s; the record is at generation %d of cluster %s",
			i, st.Header.MemberId, b, rec.Generation, rec.ClusterID)}
	}
	return nil
}
