package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	chaosPrefix   = "chaos/"
	chaosKVPrefix = "chaos/kv/"  // hot keys: puts, deletes, cas, gets, ranges (checked by porcupine)
	chaosLog      = "chaos/log/" // append-only: every acknowledged put must read back at the end
	chaosLease    = "chaos/lease/"
	chaosHotKeys  = 16
	chaosLeaseTTL = 600 // seconds; far beyond any stall, so only a revoke deletes a lease key
	chaosOpTime   = 3 * time.Second
)

// workload is the mixed client load of a chaos run: several clients doing
// puts, deletes, compare-and-swap txns, gets, ranges and lease sequences,
// recording each operation with its invocation and return times; watchers
// on the prefix; a compactor that keeps behind every watcher.
type workload struct {
	h    *history
	seed uint64
	// epoch numbers the stretch of the run this workload is (see
	// chaosEpoch); from epoch 1 on it tags every value and fresh key, so
	// that values stay unique over the whole run although a restore brings
	// back an earlier epoch's keys and values.
	epoch    int
	mu       sync.Mutex
	stats    map[string]int // "<kind> ok|unknown|failed"
	logPuts  map[string]string
	logUnk   map[string]string
	leaseErr []leaseLoss // leases reported gone while granted and not revoked
	watches  []*watcher
	maxRev   int64 // highest acknowledged write revision
	compacts []int64
}

// newWorkload is epoch's workload; its history's clock is clock's, so that
// every epoch and the fault timeline share one time line.
func newWorkload(seed uint64, epoch int, clock *history) *workload {
	return &workload{h: &history{start: clock.start}, seed: seed, epoch: epoch, stats: map[string]int{}, logPuts: map[string]string{}, logUnk: map[string]string{}}
}

// tag is what makes this epoch's values and fresh keys its own: "" in
// epoch 0 (the values of a run without a restore are as they always were),
// "e<N>." after the N-th restore.
func (w *workload) tag() string {
	if w.epoch == 0 {
		return ""
	}
	return fmt.Sprintf("e%d.", w.epoch)
}

// restoredClient is the client id of the records that stand for the state
// an epoch starts from (see startFrom).
const restoredClient = 99

// startFrom makes the state the cluster holds when the epoch starts, read back
// exactly (the state a restore put there), the epoch's starting point: each
// hot key's value becomes a put acknowledged at its mod revision before any
// other operation of the epoch (porcupine's model starts every key absent),
// and each append-only key counts as acknowledged, so that it must still
// read back at the end and is not taken for a write nobody made.
func (w *workload) startFrom(state map[string]*mvccpb.KeyValue, at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(state))
	for k := range state {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv := state[k]
		switch {
		case strings.HasPrefix(k, chaosKVPrefix):
			w.h.add(record{Client: restoredClient, In: kvInput{Kind: opPut, Key: k, Value: string(kv.Value)}, Out: kvOutput{Rev: kv.ModRevision}, Call: at, Return: at})
		case strings.HasPrefix(k, chaosLog):
			w.logPuts[k] = string(kv.Value)
		}
	}
}

func (w *workload) count(what string) {
	w.mu.Lock()
	w.stats[what]++
	w.mu.Unlock()
}

func (w *workload) sawRev(rev int64) {
	w.mu.Lock()
	w.maxRev = max(w.maxRev, rev)
	w.mu.Unlock()
}

// runClient is one client's loop until ctx ends.
func (w *workload) runClient(ctx context.Context, id int, cli *clientv3.Client) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(id)+1+uint64(w.epoch)<<32))
	lastSeen := map[string]string{} // what this client last read per key, for cas
	tag := w.tag()
	for n := 0; ctx.Err() == nil; n++ {
		key := fmt.Sprintf("%s%02d", chaosKVPrefix, rng.IntN(chaosHotKeys))
		val := fmt.Sprintf("%sc%d-%d", tag, id, n)
		switch p := rng.IntN(100); {
		case p < 28:
			w.put(ctx, id, cli, key, val, 0)
		case p < 50:
			if r, ok := w.get(ctx, id, cli, key); ok {
				lastSeen[key] = r
			}
		case p < 63:
			w.cas(ctx, id, cli, key, lastSeen[key], val)
		case p < 67:
			w.del(ctx, id, cli, key)
		case p < 82:
			w.logPut(ctx, id, cli, fmt.Sprintf("%s%d/%s%08d", chaosLog, id, tag, n), val)
		case p < 90:
			w.rangeAll(ctx, id, cli)
		default:
			w.leaseSequence(ctx, id, cli, n)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(5+rng.IntN(15)) * time.Millisecond):
		}
	}
}

// call runs one operation with the per-operation timeout. The outcome is
// unknown when the error came after the request may have been sent; for
// simplicity every write error counts as unknown (the watch resolves it).
func (w *workload) call(ctx context.Context, f func(ctx context.Context) error) (call, ret int64, err error) {
	cctx, cancel := context.WithTimeout(ctx, chaosOpTime)
	defer cancel()
	call = w.h.now()
	err = f(cctx)
	ret = w.h.now()
	return call, ret, err
}

func (w *workload) recordWrite(id int, in kvInput, out kvOutput, call, ret int64, err error) {
	r := record{Client: id, In: in, Out: out, Call: call, Return: ret}
	if err != nil {
		r.Out = kvOutput{Unknown: true}
		r.Err = err.Error()
		w.count(in.Kind.String() + " unknown")
	} else {
		w.count(in.Kind.String() + " ok")
		w.sawRev(out.Rev)
	}
	w.h.add(r)
}

func (w *workload) put(ctx context.Context, id int, cli *clientv3.Client, key, val string, lease clientv3.LeaseID) bool {
	var out kvOutput
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = append(opts, clientv3.WithLease(lease))
	}
	call, ret, err := w.call(ctx, func(ctx context.Context) error {
		resp, err := cli.Put(ctx, key, val, opts...)
		if err == nil {
			out.Rev = resp.Header.Revision
		}
		return err
	})
	if ctx.Err() != nil && err != nil {
		// Stopped by the end of the run: still possibly applied.
		err = fmt.Errorf("run ended: %w", err)
	}
	w.recordWrite(id, kvInput{Kind: opPut, Key: key, Value: val}, out, call, ret, err)
	return err == nil
}

func (w *workload) get(ctx context.Context, id int, cli *clientv3.Client, key string) (string, bool) {
	var out kvOutput
	call, ret, err := w.call(ctx, func(ctx context.Context) error {
		resp, err := cli.Get(ctx, key)
		if err == nil && len(resp.Kvs) == 1 {
			out.Exists, out.Value, out.ModRev = true, string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision
		}
		return err
	})
	if err != nil {
		w.count("get failed") // a failed read has no effect: not recorded
		return "", false
	}
	w.count("get ok")
	w.h.add(record{Client: id, In: kvInput{Kind: opGet, Key: key}, Out: out, Call: call, Return: ret})
	return out.Value, true
}

// rangeAll reads every hot key at one revision; it is recorded as one get
// per key with the range's times (a weaker but sound check).
func (w *workload) rangeAll(ctx context.Context, id int, cli *clientv3.Client) {
	var resp *clientv3.GetResponse
	call, ret, err := w.call(ctx, func(ctx context.Context) error {
		var err error
		resp, err = cli.Get(ctx, chaosKVPrefix, clientv3.WithPrefix())
		return err
	})
	if err != nil {
		w.count("range failed")
		return
	}
	w.count("range ok")
	got := map[string]*mvccpb.KeyValue{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = kv
	}
	for i := 0; i < chaosHotKeys; i++ {
		k := fmt.Sprintf("%s%02d", chaosKVPrefix, i)
		out := kvOutput{}
		if kv, ok := got[k]; ok {
			out = kvOutput{Exists: true, Value: string(kv.Value), ModRev: kv.ModRevision}
		}
		w.h.add(record{Client: id, In: kvInput{Kind: opGet, Key: k}, Out: out, Call: call, Return: ret})
	}
}

func (w *workload) cas(ctx context.Context, id int, cli *clientv3.Client, key, expect, val string) {
	var out kvOutput
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if expect != "" {
		cmp = clientv3.Compare(clientv3.Value(key), "=", expect)
	}
	call, ret, err := w.call(ctx, func(ctx context.Context) error {
		resp, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, val)).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return err
		}
		out.Succeeded = resp.Succeeded
		if resp.Succeeded {
			out.Rev = resp.Header.Revision
			return nil
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
			out.Exists, out.Value, out.ModRev = true, string(kvs[0].Value), kvs[0].ModRevision
		}
		return nil
	})
	w.recordWrite(id, kvInput{Kind: opCAS, Key: key, Value: val, Expect: expect}, out, call, ret, err)
}

func (w *workload) del(ctx context.Context, id int, cli *clientv3.Client, key string) {
	var out kvOutput
	call, ret, err := w.call(ctx, func(ctx context.Context) error {
		resp, err := cli.Delete(ctx, key)
		if err == nil {
			out.Deleted = resp.Deleted
			if resp.Deleted > 0 {
				out.Rev = resp.Header.Revision
			}
		}
		return err
	})
	w.recordWrite(id, kvInput{Kind: opDelete, Key: key}, out, call, ret, err)
}

// logPut writes a fresh key that is never overwritten: at the end every
// acknowledged one must read back with its value.
func (w *workload) logPut(ctx context.Context, id int, cli *clientv3.Client, key, val string) {
	var rev int64
	call, ret, err := w.call(ctx, func(ctx context.Context) error {
		resp, err := cli.Put(ctx, key, val)
		if err == nil {
			rev = resp.Header.Revision
		}
		return err
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.stats["log-put unknown"]++
		w.logUnk[key] = val
		return
	}
	w.stats["log-put ok"]++
	w.logPuts[key] = val
	w.maxRev = max(w.maxRev, rev)
	// Recorded for the watch check and the unknown-outcome resolution;
	// porcupine skips these keys (each is written once).
	w.h.add(record{Client: id, In: kvInput{Kind: opPut, Key: key, Value: val}, Out: kvOutput{Rev: rev}, Call: call, Return: ret})
}

// leaseSequence grants a lease, puts a fresh key under it, reads it, keeps
// the lease alive once, revokes it and reads the key again. A step that
// fails ends the sequence (the key is never read again). A granted lease
// that etcd does not know before its TTL ran out and before it was revoked
// is a lost lease: a violation.
func (w *workload) leaseSequence(ctx context.Context, id int, cli *clientv3.Client, n int) {
	key := fmt.Sprintf("%s%d/%s%08d", chaosLease, id, w.tag(), n)
	var lease clientv3.LeaseID
	_, _, err := w.call(ctx, func(ctx context.Context) error {
		resp, err := cli.Grant(ctx, chaosLeaseTTL)
		if err == nil {
			lease = resp.ID
		}
		return err
	})
	if err != nil {
		w.count("lease-grant failed")
		return
	}
	granted := time.Now()
	w.count("lease-grant ok")
	if !w.put(ctx, id, cli, key, fmt.Sprintf("%sc%d-%d-lease", w.tag(), id, n), lease) {
		return
	}
	if _, ok := w.get(ctx, id, cli, key); !ok {
		return
	}
	kaCall, _, err := w.call(ctx, func(ctx context.Context) error {
		resp, err := cli.KeepAliveOnce(ctx, lease)
		if err == nil && resp.TTL <= 0 {
			return fmt.Errorf("keepalive of lease %x: TTL %d", lease, resp.TTL)
		}
		return err
	})
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && time.Since(granted) < chaosLeaseTTL*time.Second/2 {
			w.mu.Lock()
			w.leaseErr = append(w.leaseErr, leaseLoss{
				at:  kaCall,
				msg: fmt.Sprintf("lease %x (key %s) granted %s ago and never revoked: %v", lease, key, time.Since(granted).Round(time.Millisecond), err),
			})
			w.mu.Unlock()
		}
		w.count("lease-keepalive failed")
		return
	}
	w.count("lease-keepalive ok")
	var out kvOutput
	call, ret, err := w.call(ctx, func(ctx context.Context) error {
		resp, err := cli.Revoke(ctx, lease)
		if err == nil {
			out.Rev = resp.Header.Revision
		}
		return err
	})
	w.recordWrite(id, kvInput{Kind: opRevoke, Key: key}, out, call, ret, err)
	if err != nil {
		return
	}
	w.get(ctx, id, cli, key)
}

// watcher watches the prefix from a revision, resuming from the last seen
// revision + 1 when its stream ends (leader lost, member gone, stalled),
// and accounting for compaction when it resumes behind it.
type watcher struct {
	cli *clientv3.Client
	mu  sync.Mutex
	log watchLog
	// lastProgress is when the watcher last saw an event or (re)started.
	lastProgress time.Time
}

// startWatcher starts a watcher on the prefix from revision from; wg is
// done when it has stopped (ctx ended).
func (w *workload) startWatcher(ctx context.Context, wg *sync.WaitGroup, name string, cli *clientv3.Client, from int64) *watcher {
	wt := &watcher{cli: cli, log: watchLog{Name: name, From: from}, lastProgress: time.Now()}
	w.watches = append(w.watches, wt)
	wg.Add(1)
	go func() { defer wg.Done(); wt.run(ctx, w) }()
	return wt
}

// next is where the next stream starts: after the last revision seen or
// lost to compaction.
func (wt *watcher) next() int64 {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return wt.log.last() + 1
}

func (wt *watcher) run(ctx context.Context, w *workload) {
	for ctx.Err() == nil {
		from := wt.next()
		sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		stalled := make(chan struct{})
		go func() { // restart a stream that no longer delivers while writes go on
			defer close(stalled)
			for {
				select {
				case <-sctx.Done():
					return
				case <-time.After(time.Second):
				}
				wt.mu.Lock()
				behind := wt.log.last() < w.maxRevision() && time.Since(wt.lastProgress) > 5*time.Second
				wt.mu.Unlock()
				if behind {
					wt.mu.Lock()
					wt.log.restartReason("stalled 5s behind acknowledged writes")
					wt.mu.Unlock()
					cancel()
					return
				}
			}
		}()
		for resp := range wt.cli.Watch(sctx, chaosPrefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
			if resp.CompactRevision > 0 {
				// Revisions from..CompactRevision-1 are gone: account for
				// them and resume at the compaction revision.
				wt.mu.Lock()
				if resp.CompactRevision > from {
					wt.log.Gaps = append(wt.log.Gaps, [2]int64{from, resp.CompactRevision - 1})
				}
				wt.mu.Unlock()
				break
			}
			if err := resp.Err(); err != nil {
				wt.mu.Lock()
				wt.log.restartReason(err.Error())
				wt.mu.Unlock()
				break
			}
			wt.mu.Lock()
			for _, ev := range resp.Events {
				wt.log.Events = append(wt.log.Events, watchEvent{Rev: ev.Kv.ModRevision, Key: string(ev.Kv.Key), Value: string(ev.Kv.Value), Delete: ev.Type == clientv3.EventTypeDelete})
			}
			wt.lastProgress = time.Now()
			wt.mu.Unlock()
		}
		cancel()
		<-stalled
		wt.mu.Lock()
		wt.log.Restarts++
		wt.lastProgress = time.Now()
		wt.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *workload) maxRevision() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxRev
}

// watchLogs copies what the watchers saw.
func (w *workload) watchLogs() []*watchLog {
	var out []*watchLog
	for _, wt := range w.watches {
		wt.mu.Lock()
		l := wt.log
		l.Events = append([]watchEvent(nil), wt.log.Events...)
		l.Gaps = append([][2]int64(nil), wt.log.Gaps...)
		wt.mu.Unlock()
		out = append(out, &l)
	}
	return out
}

// minWatched is the lowest revision every watcher has seen.
func (w *workload) minWatched() int64 {
	m := int64(-1)
	for _, wt := range w.watches {
		wt.mu.Lock()
		l := wt.log.last()
		wt.mu.Unlock()
		if m < 0 || l < m {
			m = l
		}
	}
	return m
}

// runCompactor compacts every interval to a revision every watcher has
// already seen, so compaction runs under faults without taking events from
// a watcher.
func (w *workload) runCompactor(ctx context.Context, cli *clientv3.Client, every time.Duration) {
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		rev := w.minWatched() - 50
		if rev <= last {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, chaosOpTime)
		_, err := cli.Compact(cctx, rev)
		cancel()
		if err == nil || errors.Is(err, rpctypes.ErrCompacted) {
			last = rev
			w.mu.Lock()
			w.compacts = append(w.compacts, rev)
			w.mu.Unlock()
		}
	}
}

// leaseLoss is a keepalive that found a live lease gone.
type leaseLoss struct {
	at  int64 // when the keepalive was sent, ns since the run began
	msg string
}

// staleLeaderWindow is how long after a SIGCONT a keepalive's "lease not
// found" is put down to etcd rather than vetcd (see splitLeaseLosses).
const staleLeaderWindow = time.Second

// splitLeaseLosses separates the lease losses etcd 3.7.3 itself causes from
// the rest, which are violations. A leader that is paused (SIGSTOP) and
// resumed believes it still leads until it hears the new term, usually
// within a heartbeat. In that time etcd's LeaseRenew skips its leadership
// check because the raft ticker has just fired (ensureLeadership returns
// at once while isActive, etcdserver/server.go), and answers from its
// stale lessor: a lease granted while it was paused is "not found". Only a
// keepalive sent within staleLeaderWindow of the end of a SIGSTOP fault is
// counted so; it is reported in the summary, never dropped silently.
func splitLeaseLosses(losses []leaseLoss, timeline []faultEvent) (etcdStale, violations []string) {
	for _, l := range losses {
		stale := false
		for _, f := range timeline {
			switch f.Kind {
			case fStop, fStopLeader, fStopMajority:
				if l.at >= f.End && l.at-f.End <= int64(staleLeaderWindow) {
					stale = true
				}
			}
		}
		if stale {
			etcdStale = append(etcdStale, l.msg)
		} else {
			violations = append(violations, l.msg)
		}
	}
	return etcdStale, violations
}
