package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/local"
)

// chaosDefaultSeed is the seed of a run without CHAOS_SEED: fixed, so that
// `make test` runs the same schedule every time and a failure reproduces
// with the seed it prints.
const chaosDefaultSeed = 20250701

// chaosConfig shortens vetcd's thresholds so recoveries happen within a
// run.
const chaosConfig = `recovery:
  unresponsiveAfter: 10s
  learnerStuckAfter: 15s
`

// TestChaos runs a vetcd cluster (`vetcd up`, the real binary, 3 replicas
// unless CHAOS_REPLICAS=5) under a mixed workload from several clients —
// puts, deletes, compare-and-swap txns, gets, ranges, lease
// grant/put/keepalive/revoke sequences, two watchers on the prefix and a
// compactor — while a fault schedule drawn from a seed applies random
// faults, and then checks:
//
//   - the history is linearizable (porcupine, a key-value model, partitioned
//     per key; an operation with an unknown outcome is possibly applied and
//     returns at infinity; what the watchers saw narrows those down);
//   - no acknowledged write is lost (porcupine's final reads, and every
//     acknowledged append-only write reads back);
//   - reads carry the revision their write was acknowledged at;
//   - each watcher saw every revision in order, no duplicates, no gaps
//     (resuming from the last seen revision + 1; revisions lost to
//     compaction are accounted for), and the watchers agree;
//   - no granted, unrevoked lease vanished;
//   - the cluster converges to the desired count of healthy voters after
//     every fault and at the end.
//
// A violation writes the porcupine visualization, the fault timeline, the
// history and the replicas' logs under the artifact dir (printed) and fails.
//
// Environment: CHAOS_DURATION (default 3m), CHAOS_SEED (default
// chaosDefaultSeed), CHAOS_SEEDS (several seeds, one run each, e.g.
// "1 2 3"), CHAOS_REPLICAS (3 or 5), CHAOS_ARTIFACTS (a directory to keep
// the artifacts in; default the test's artifact dir with -artifacts, else a
// temporary dir kept only on failure), CHAOS_WEIGHTS (kind=weight,... to
// draw some faults more or less often in a targeted run, e.g.
// "restore-during-rebuild=30").
//
// # The faults, and which combinations are allowed
//
// Faults come one at a time from the schedule; after each one is healed the
// run waits until the cluster has converged again (every desired replica a
// healthy voter; at most 4 minutes, else a violation), then 1-5 s more.
//
//   - kill-9: one replica's process killed; the supervisor restarts it on its
//     data. kill-9-majority: a majority killed at once. Data is fsynced
//     before a write is acknowledged, so even a majority may be killed.
//   - sigstop (one replica, 2-18 s), sigstop-leader, sigstop-majority (a
//     majority, 3-20 s): past unresponsiveAfter (10 s) a single stopped
//     member is removed and rejoins after SIGCONT; a stopped majority makes
//     the cluster unavailable, and vetcd must remove nothing (no quorum).
//   - partition, partition-leader (2-18 s): every connection to the
//     member's advertised peer port goes through an etcd test proxy that
//     then drops all bytes both ways. etcd sends a member's raft messages
//     over streams its peers dialed to it, so the member goes silent to its
//     peers (it may still hear them over the streams it dialed); its agent
//     and client ports stay reachable. Past the threshold it is removed and
//     rejoins.
//   - wipe-data-dir, delete-db, corrupt-db: with the supervisor paused, one
//     replica is killed and its data dir removed, its bbolt file removed, or
//     its keys and values altered (etcd's CorruptBBolt); the replica must
//     move the data aside and rejoin with fresh data.
//   - member-remove: one member removed from outside (etcdctl member
//     remove); its replica must notice and rejoin.
//   - scale: `vetcd scale N` to another of 1, 2, 3, 5 replicas, including
//     the quorum-breaking scale-downs 3→1, 5→2 and 5→1 (finished by a
//     rebuild from the most up-to-date survivor).
//   - scale-kill-surplus: kill -9 every surplus replica, then `vetcd scale`
//     3→1, 5→1 or 5→2: the survivors must rebuild by themselves. Only
//     while vetcd-0 leads (waited for, up to a minute; else the scale-down
//     is graceful): the rebuild can keep every acknowledged write only if a
//     survivor holds every committed entry, which is why the controller
//     keeps leadership on vetcd-0.
//   - rebuild-then-dropped-return (issue 15, finding 1): the surplus frozen,
//     scaled down below quorum and killed; once the survivors have rebuilt,
//     they are frozen and the count goes back up, so the dropped replicas
//     start on old data that holds a quorum of the old voters: they must
//     serve nothing (the clients reach every endpoint, so a write they took
//     would show as lost or non-linearizable).
//   - rebuild-claimer-killed: as scale-kill-surplus, then vetcd-0 is killed
//     while it claims or runs the rebuild; it must finish its claim after
//     the restart, and no second survivor may rebuild beside it.
//   - restore-during-rebuild: a snapshot while the load runs, more writes,
//     then `vetcd snapshot restore` and a quorum-breaking scale-down with
//     the surplus frozen and killed (a survivor wants to rebuild), in
//     either order, 0-12 s apart. A restore rewinds the data on purpose, so
//     the run is split into epochs there (see chaosEpoch and
//     restoreDuringRebuild): the load stops, the epoch is checked whole,
//     and the state after the restore must equal the snapshot's exactly.
//
// What is not allowed, because vetcd does not promise to survive it: a
// destructive fault (wipe, delete-db, corrupt-db, member-remove, or a
// sigstop/partition long enough to get a member removed) on more than one
// replica at a time or on a cluster with fewer than three voters (a lost
// voter of one or two cannot be replaced without quorum: that is what
// snapshots are for); any fault while another is unhealed or before the
// cluster has converged (recovery is one replica at a time); and a
// scale-down while anything else is wrong (the rebuild's promise assumes a
// healthy cluster at the moment of the scale-down). On one or two replicas
// the schedule only kills a replica (data kept) or scales back up to 3.
func TestChaos(t *testing.T) {
	dur := 3 * time.Minute
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("CHAOS_DURATION=%q: want a positive Go duration such as 3m", v)
		}
		dur = d
	}
	replicas := 3
	if v := os.Getenv("CHAOS_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || (n != 3 && n != 5) {
			t.Fatalf("CHAOS_REPLICAS=%q: want 3 or 5", v)
		}
		replicas = n
	}
	seeds := []uint64{chaosDefaultSeed}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: want an unsigned integer", v)
		}
		seeds = []uint64{s}
	}
	if v := os.Getenv("CHAOS_SEEDS"); v != "" {
		seeds = nil
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			s, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				t.Fatalf("CHAOS_SEEDS=%q: %q is not an unsigned integer", v, f)
			}
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 1 {
		runChaos(t, seeds[0], dur, replicas)
		return
	}
	for _, s := range seeds {
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { runChaos(t, s, dur, replicas) })
	}
}

func runChaos(t *testing.T, seed uint64, dur time.Duration, replicas int) {
	t.Logf("chaos: seed %d, duration %s, %d replicas (reproduce: CHAOS_SEED=%d CHAOS_DURATION=%s CHAOS_REPLICAS=%d go test -run '^TestChaos$' ./test/e2e/)",
		seed, dur, replicas, seed, dur, replicas)
	began := time.Now()
	artifacts := chaosArtifactDir(t)

	dir := filepath.Join(t.TempDir(), "c")
	base := freeBasePort(t, chaosMaxReplicas)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	settings, _ := json.Marshal(local.Settings{Host: "127.0.0.1", BasePort: base, PeerProxy: true})
	if err := os.WriteFile(filepath.Join(dir, "local.json"), settings, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "vetcd.yaml")
	if err := os.WriteFile(cfg, []byte(chaosConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	proxies := startPeerProxies(t, base, chaosMaxReplicas)
	c := startUp(t, dir, base, replicas, "--config", cfg)
	c.requireSettled(replicas)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newClient := func() *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:            c.endpoints(chaosMaxReplicas),
			TLS:                  c.tlsConfig(),
			DialTimeout:          2 * time.Second,
			DialKeepAliveTime:    2 * time.Second,
			DialKeepAliveTimeout: 2 * time.Second,
			Logger:               zap.NewNop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}

	// The workload of the first epoch: 4 clients, 2 watchers, a compactor.
	start := c.client(replicas)
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := start.Get(sctx, "chaos-start")
	scancel()
	if err != nil {
		t.Fatal(err)
	}
	run := &chaosRun{t: t, c: c, seed: seed, clock: newHistory(), newClient: newClient, snapshots: filepath.Join(t.TempDir(), "snapshots")}
	ep := run.startEpoch(ctx, 0, resp.Header.Revision+1, nil)
	defer func() { ep.stop() }()
	ms := &metricsScraper{c: c, last: map[string]map[string]float64{}}
	mctx, mcancel := context.WithCancel(ctx)
	mdone := make(chan struct{})
	go func() { defer close(mdone); ms.run(mctx) }()
	defer func() { mcancel(); <-mdone }()

	// The fault schedule.
	ch := &chaos{t: t, c: c, rng: rand.New(rand.NewPCG(seed, 0x636861)), h: run.clock, proxies: proxies, desired: replicas, counts: map[string]int{}}
	if err := ch.setWeights(os.Getenv("CHAOS_WEIGHTS")); err != nil {
		t.Fatal(err)
	}
	var convergeMax time.Duration
	for time.Since(began) < dur {
		f := ch.next()
		if f.kind == fRestoreRebuild {
			ep, err = run.restoreDuringRebuild(ctx, ch, f, ep)
		} else {
			err = ch.inject(ctx, f)
		}
		if err != nil {
			run.violations = append(run.violations, fmt.Sprintf("fault %s could not be applied: %v", f.kind, err))
			break
		}
		took, err := ch.converge(ctx, 4*time.Minute)
		if err != nil {
			run.violations = append(run.violations, fmt.Sprintf("after %s the cluster did not converge to %d healthy voters within 4m: %v", f.kind, ch.desired, err))
			break
		}
		convergeMax = max(convergeMax, took)
		sleepCtx(ctx, time.Duration(1000+ch.rng.IntN(4000))*time.Millisecond)
	}

	// The last epoch ends with the run: its load stops and it is checked.
	run.endEpoch(ctx, ep, ch)
	_, convergeErr := ch.converge(ctx, 4*time.Minute)
	if convergeErr != nil {
		run.violations = append(run.violations, fmt.Sprintf("at the end the cluster did not converge: %v", convergeErr))
	}
	ms.scrape()

	// The summary, over every epoch.
	stats := map[string]int{}
	total, unknown, kvOps, events, restarts, compactions := 0, 0, 0, 0, 0, 0
	var checkTook time.Duration
	var staleLeases, violations []string
	res := porcupine.Ok
	reasons := map[string]int{}
	var logs []*watchLog
	for _, r := range run.results {
		for k, n := range r.stats {
			stats[k] += n
			total += n
		}
		for _, op := range r.ops {
			if op.Out.Unknown {
				unknown++
			}
		}
		kvOps += len(r.kv)
		checkTook += r.checkTook
		compactions += r.compactions
		staleLeases = append(staleLeases, r.staleLeases...)
		switch {
		case r.res == porcupine.Illegal:
			res = porcupine.Illegal
		case r.res == porcupine.Unknown && res == porcupine.Ok:
			res = porcupine.Unknown
		}
		for _, l := range r.logs {
			logs = append(logs, l)
			events += len(l.Events)
			restarts += l.Restarts
			for k, n := range l.Reasons {
				reasons[k] += n
			}
		}
		for _, v := range r.violations {
			if len(run.results) > 1 {
				v = fmt.Sprintf("epoch %d: %s", r.n, v)
			}
			violations = append(violations, v)
		}
	}
	violations = append(violations, run.violations...)
	for _, l := range staleLeases {
		t.Logf("chaos: etcd stale-leader lease answer (not a vetcd violation, see splitLeaseLosses): %s", l)
	}
	var st []string
	for k, n := range stats {
		st = append(st, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(st)
	ch.mu.Lock()
	var fk []string
	nf := 0
	for k, n := range ch.counts {
		fk = append(fk, fmt.Sprintf("%s=%d", k, n))
		nf += n
	}
	timeline := append([]faultEvent(nil), ch.timeline...)
	ch.mu.Unlock()
	sort.Strings(fk)
	var rec []string
	var recoveries, rebuilds float64
	for k, v := range ms.totals() {
		if strings.HasPrefix(k, "vetcd_rebuilds_total") {
			rebuilds += v
			continue
		}
		recoveries += v
		rec = append(rec, fmt.Sprintf("%s=%g", strings.TrimPrefix(k, "vetcd_recoveries_total"), v))
	}
	sort.Strings(rec)
	var rs []string
	for k, n := range reasons {
		rs = append(rs, fmt.Sprintf("%q=%d", k, n))
	}
	sort.Strings(rs)
	summary := []string{
		fmt.Sprintf("seed %d, %s, %d replicas at start, %d at the end", seed, time.Since(began).Round(time.Second), replicas, ch.desired),
		fmt.Sprintf("operations: %d (%s); %d with unknown outcome in the history", total, strings.Join(st, " "), unknown),
		fmt.Sprintf("faults injected: %d (%s)", nf, strings.Join(fk, " ")),
		fmt.Sprintf("recoveries (vetcd_recoveries_total): %g (%s); rebuilds (vetcd_rebuilds_total): %g", recoveries, strings.Join(rec, " "), rebuilds),
		fmt.Sprintf("watch events: %d over %d watchers (%d stream restarts: %s); compactions: %d; longest convergence after a fault: %s",
			events, len(logs), restarts, strings.Join(rs, " "), compactions, convergeMax.Round(time.Millisecond)),
		fmt.Sprintf("linearizability: %s over %d operations in %s", chaosResult(res), kvOps, checkTook.Round(time.Millisecond)),
		fmt.Sprintf("lease keepalives answered by a leader just resumed from SIGSTOP (etcd's, see splitLeaseLosses): %d", len(staleLeases)),
	}
	if len(run.results) > 1 || run.restores.Total() > 0 {
		summary = append(summary, fmt.Sprintf("epochs: %d, each checked on its own (a restore rewinds the data on purpose); restores: %s", len(run.results), run.restores))
	}
	summary = append(summary, fmt.Sprintf("violations: %d", len(violations)))
	for _, l := range summary {
		t.Logf("chaos summary: %s", l)
	}

	// Artifacts: always the timeline and summary; on a violation also the
	// visualization, the history and the logs.
	var tl strings.Builder
	for _, e := range timeline {
		tl.WriteString(e.String() + "\n")
	}
	writeArtifact(t, artifacts, "timeline.txt", tl.String())
	writeArtifact(t, artifacts, "summary.txt", strings.Join(summary, "\n")+"\n")
	if len(violations) == 0 {
		t.Logf("chaos: artifacts (timeline, summary) in %s", artifacts)
		return
	}
	writeArtifact(t, artifacts, "violations.txt", strings.Join(violations, "\n")+"\n")
	var hist, wl strings.Builder
	shown := run.results[len(run.results)-1]
	for _, r := range run.results {
		if r.res == porcupine.Illegal && shown.res != porcupine.Illegal {
			shown = r
		}
		fmt.Fprintf(&hist, "# epoch %d\n", r.n)
		for _, op := range r.ops {
			hist.WriteString(op.String() + "\n")
		}
		fmt.Fprintf(&wl, "# epoch %d\n", r.n)
		for _, l := range r.logs {
			fmt.Fprintf(&wl, "watcher %s from %d, %d events, gaps %v, %d restarts\n", l.Name, l.From, len(l.Events), l.Gaps, l.Restarts)
			for _, e := range l.Events {
				fmt.Fprintf(&wl, "  %d %s %q delete=%v\n", e.Rev, e.Key, e.Value, e.Delete)
			}
		}
	}
	writeArtifact(t, artifacts, "history.txt", hist.String())
	writeArtifact(t, artifacts, "watches.txt", wl.String())
	shown.info.AddAnnotations(annotations(timeline))
	if err := porcupine.VisualizePath(kvModel, shown.info, filepath.Join(artifacts, "linearizability.html")); err != nil {
		t.Errorf("visualize: %v", err)
	}
	for i := 0; i < chaosMaxReplicas; i++ {
		if b, err := os.ReadFile(filepath.Join(dir, local.ReplicaName(i), "serve.log")); err == nil {
			writeArtifact(t, artifacts, local.ReplicaName(i)+"-serve.log", string(b))
		}
	}
	for i, v := range violations {
		if i == 20 {
			t.Errorf("... %d more in violations.txt", len(violations)-20)
			break
		}
		t.Errorf("violation: %s", v)
	}
	t.Fatalf("chaos: %d violations with seed %d; artifacts (linearizability.html, timeline.txt, history.txt, watches.txt, logs) in %s", len(violations), seed, artifacts)
}

// chaosRun is one run's state beside the fault schedule: its epochs, and
// the violations found between them.
type chaosRun struct {
	t         *testing.T
	c         *cluster
	seed      uint64
	clock     *history // the run's one clock: histories and the timeline
	newClient func() *clientv3.Client
	snapshots string // where restore-during-rebuild keeps its snapshots

	results    []epochResult
	violations []string // found between epochs (a restore's checks)
	restores   restoreTally
	restoreN   int // restores started: names their snapshots
}

// A chaosEpoch is one stretch of a run whose history is checked on its own.
// A run is one epoch, unless a restore-during-rebuild fault rewinds the
// data on purpose: the writes acknowledged after its snapshot are then
// gone by design, which no check of one history could tell from a lost
// write. So the load stops, the epoch is checked in full as the end of a
// run is (every acknowledged write still there, linearizable, watches
// complete), the restore runs on the quiet cluster, the state after it
// must equal the snapshot's content exactly, and the next epoch starts
// from that state (workload.startFrom) with new watchers, under the same
// checks. Nothing is weakened: every epoch's history is checked whole, and
// the stretch between them is checked by state.
type chaosEpoch struct {
	n           int
	w           *workload
	init        map[string]*mvccpb.KeyValue // the state under the prefix at the start
	cancel      context.CancelFunc          // the clients and the compactor
	watchCancel context.CancelFunc
	wg, watchWG sync.WaitGroup
	stopped     bool
	ended       bool // checked by endEpoch
}

// epochResult is what an epoch's checks found.
type epochResult struct {
	n           int
	ops         []record // the history, with the final reads
	logs        []*watchLog
	kv          []record // what porcupine checked
	res         porcupine.CheckResult
	info        porcupine.LinearizationInfo
	checkTook   time.Duration
	stats       map[string]int
	compactions int
	staleLeases []string
	violations  []string
	fence       int64 // the fence write's revision: the last of the epoch
}

// startEpoch starts epoch n's load: watchers from revision from, 4
// clients, a compactor; state is what the cluster holds at the start (nil:
// nothing under the prefix).
func (r *chaosRun) startEpoch(ctx context.Context, n int, from int64, state map[string]*mvccpb.KeyValue) *chaosEpoch {
	e := &chaosEpoch{n: n, w: newWorkload(r.seed, n, r.clock), init: state}
	e.w.startFrom(state, r.clock.now())
	wctx, cancel := context.WithCancel(ctx)
	watchCtx, watchCancel := context.WithCancel(ctx)
	e.cancel, e.watchCancel = cancel, watchCancel
	for i := 0; i < 2; i++ {
		e.w.startWatcher(watchCtx, &e.watchWG, fmt.Sprintf("w%d", i), r.newClient(), from)
	}
	const clients = 4
	for i := 0; i < clients; i++ {
		cli := r.newClient()
		e.wg.Add(1)
		go func() { defer e.wg.Done(); e.w.runClient(wctx, i, cli) }()
	}
	e.wg.Add(1)
	go func() { defer e.wg.Done(); e.w.runCompactor(wctx, r.newClient(), 20*time.Second) }()
	return e
}

// stop stops the epoch's clients, compactor and watchers.
func (e *chaosEpoch) stop() {
	if e.stopped {
		return
	}
	e.stopped = true
	e.cancel()
	e.wg.Wait()
	e.watchCancel()
	e.watchWG.Wait()
}

// endEpoch stops the epoch's load, writes a fence that every watcher must
// reach, reads the final state and checks the epoch's history: lost
// writes, leases, watches, read revisions, linearizability.
func (r *chaosRun) endEpoch(ctx context.Context, e *chaosEpoch, ch *chaos) epochResult {
	t, w := r.t, e.w
	res := epochResult{n: e.n}
	if e.ended {
		return res
	}
	e.ended = true
	e.cancel()
	e.wg.Wait()
	sleepCtx(ctx, 2*time.Second)
	final := r.c.client(ch.desired)
	for try := 0; ; try++ {
		fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := final.Put(fctx, chaosPrefix+"fence", fmt.Sprintf("fence-%d-%d", r.seed, e.n))
		fcancel()
		if err == nil {
			res.fence = resp.Header.Revision
			w.sawRev(res.fence)
			break
		}
		if try == 20 {
			res.violations = append(res.violations, fmt.Sprintf("fence write failed 20 times after the faults ended: %v", err))
			break
		}
		sleepCtx(ctx, time.Second)
	}
	// The watchers run on until they reach the fence.
	deadline := time.Now().Add(time.Minute)
	for res.fence > 0 && w.minWatched() < res.fence && time.Now().Before(deadline) {
		sleepCtx(ctx, 100*time.Millisecond)
	}
	e.stop()

	// Final reads: every hot key (recorded as gets after everything else)
	// and every append-only key.
	ops, logOK := chaosFinalReads(t, ctx, final, w)
	res.ops = ops
	res.violations = append(res.violations, logOK...)
	ch.mu.Lock()
	timeline := append([]faultEvent(nil), ch.timeline...)
	ch.mu.Unlock()
	w.mu.Lock()
	stale, leaseViolations := splitLeaseLosses(w.leaseErr, timeline)
	res.stats = maps.Clone(w.stats)
	res.compactions = len(w.compacts)
	w.mu.Unlock()
	res.staleLeases = stale
	res.violations = append(res.violations, leaseViolations...)

	res.logs = w.watchLogs()
	res.violations = append(res.violations, checkWatches(ops, res.logs, res.fence)...)
	res.violations = append(res.violations, checkReadRevisions(ops)...)
	var end int64
	for _, op := range ops {
		end = max(end, op.Return)
	}
	for _, op := range resolveUnknown(ops, res.logs, end+1) {
		if !strings.HasPrefix(op.In.Key, chaosLog) {
			res.kv = append(res.kv, op)
		}
	}
	checkStart := time.Now()
	res.res, res.info, _ = checkLinearizable(res.kv, 10*time.Minute)
	res.checkTook = time.Since(checkStart)
	switch res.res {
	case porcupine.Illegal:
		res.violations = append(res.violations, fmt.Sprintf("the history is not linearizable: keys %s (see the visualization)", strings.Join(illegalKeys(res.kv), ", ")))
	case porcupine.Unknown:
		res.violations = append(res.violations, "porcupine could not decide within 10m")
	}
	r.results = append(r.results, res)
	return res
}

// illegalKeys names the keys whose own history is not linearizable.
func illegalKeys(ops []record) []string {
	byKey := map[string][]record{}
	for _, op := range ops {
		byKey[op.In.Key] = append(byKey[op.In.Key], op)
	}
	var bad []string
	for k, h := range byKey {
		if res, _, _ := checkLinearizable(h, time.Minute); res != porcupine.Ok {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	return bad
}

func chaosResult(r porcupine.CheckResult) string {
	switch r {
	case porcupine.Ok:
		return "ok"
	case porcupine.Illegal:
		return "ILLEGAL"
	}
	return "unknown (timed out)"
}

// chaosFinalReads reads every hot key once more (appended to the history,
// after every other operation) and checks that every acknowledged
// append-only write reads back with its value, and that nothing else is
// there.
func chaosFinalReads(t *testing.T, ctx context.Context, cli *clientv3.Client, w *workload) ([]record, []string) {
	t.Helper()
	var v []string
	var kvResp, logResp *clientv3.GetResponse
	var err error
	for try := 0; try < 20; try++ {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		call := w.h.now()
		kvResp, err = cli.Get(rctx, chaosKVPrefix, clientv3.WithPrefix())
		ret := w.h.now()
		if err == nil {
			logResp, err = cli.Get(rctx, chaosLog, clientv3.WithPrefix())
		}
		cancel()
		if err == nil {
			got := map[string][2]any{}
			for _, kv := range kvResp.Kvs {
				got[string(kv.Key)] = [2]any{string(kv.Value), kv.ModRevision}
			}
			for i := 0; i < chaosHotKeys; i++ {
				k := fmt.Sprintf("%s%02d", chaosKVPrefix, i)
				out := kvOutput{}
				if g, ok := got[k]; ok {
					out = kvOutput{Exists: true, Value: g[0].(string), ModRev: g[1].(int64)}
				}
				w.h.add(record{Client: 0, In: kvInput{Kind: opGet, Key: k}, Out: out, Call: call, Return: ret})
			}
			break
		}
		sleepCtx(ctx, time.Second)
	}
	if err != nil {
		return w.h.snapshot(), []string{fmt.Sprintf("final read failed: %v", err)}
	}
	got := map[string]string{}
	for _, kv := range logResp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	w.mu.Lock()
	lost := 0
	for k, val := range w.logPuts {
		if got[k] != val {
			if lost < 10 {
				v = append(v, fmt.Sprintf("acknowledged write lost: %s=%s, read %q", k, val, got[k]))
			}
			lost++
		}
	}
	if lost > 10 {
		v = append(v, fmt.Sprintf("%d of %d acknowledged append-only writes lost", lost, len(w.logPuts)))
	}
	for k, val := range got {
		if w.logPuts[k] != val && w.logUnk[k] != val {
			v = append(v, fmt.Sprintf("%s=%q was never written", k, val))
		}
	}
	t.Logf("chaos: %d of %d acknowledged append-only writes read back; %d of %d with unknown outcome were applied",
		len(w.logPuts)-lost, len(w.logPuts), countPresent(got, w.logUnk), len(w.logUnk))
	w.mu.Unlock()
	return w.h.snapshot(), v
}

func countPresent(got, want map[string]string) int {
	n := 0
	for k, v := range want {
		if got[k] == v {
			n++
		}
	}
	return n
}

// chaosArtifactDir is where a run keeps its artifacts: CHAOS_ARTIFACTS, the
// test's artifact dir under -artifacts, or a temporary dir that is removed
// unless the run fails.
func chaosArtifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("CHAOS_ARTIFACTS"); d != "" {
		d = filepath.Join(d, strings.NewReplacer("/", "_", "=", "-").Replace(t.Name())+"-"+time.Now().Format("20060102-150405"))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("CHAOS_ARTIFACTS: %v", err)
		}
		return d
	}
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir()
	}
	d, err := os.MkdirTemp("", "vetcd-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(d)
		}
	})
	return d
}

func writeArtifact(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Errorf("write artifact %s: %v", name, err)
	}
}
