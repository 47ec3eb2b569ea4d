package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/vetcd/vetcd/internal/local"
	"github.com/vetcd/vetcd/internal/status"
)

// chaosMaxReplicas bounds the cluster a chaos run scales to; every ordinal
// below it gets a peer proxy from the start.
const chaosMaxReplicas = 5

// startPeerProxies puts an etcd test proxy on each replica's advertised peer
// port (BASE+10N+1), forwarding to where the replica listens for peers
// (local.PeerProxyPortOffset), for ordinals 0..n-1. They stop when the test
// ends, after the cluster (cleanups run last-in first-out).
func startPeerProxies(t *testing.T, base, n int) []proxy.Server {
	t.Helper()
	var ps []proxy.Server
	for i := 0; i < n; i++ {
		p := base + 10*i
		s := proxy.NewServer(proxy.ServerConfig{
			Logger: zap.NewNop(),
			From:   url.URL{Scheme: "tcp", Host: fmt.Sprintf("127.0.0.1:%d", p+1)},
			To:     url.URL{Scheme: "tcp", Host: fmt.Sprintf("127.0.0.1:%d", p+local.PeerProxyPortOffset)},
		})
		select {
		case <-s.Ready():
		case err := <-s.Error():
			t.Fatalf("peer proxy for vetcd-%d: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("peer proxy for vetcd-%d not ready", i)
		}
		// The proxy blocks its accept loop when nobody reads its errors
		// (failed dials to a stopped replica): drain them.
		go func() {
			for {
				select {
				case <-s.Error():
				case <-s.Done():
					return
				}
			}
		}()
		t.Cleanup(func() { _ = s.Close() })
		ps = append(ps, s)
	}
	return ps
}

// chaos injects the faults of one run and keeps the timeline.
type chaos struct {
	t       *testing.T
	c       *cluster
	rng     *rand.Rand
	h       *history
	proxies []proxy.Server
	desired int

	// weights overrides the schedule's weights by kind (CHAOS_WEIGHTS).
	weights map[string]int

	mu       sync.Mutex
	timeline []faultEvent
	counts   map[string]int
}

// fault is one entry of the schedule, drawn from the seed.
type fault struct {
	kind    string
	targets []int // ordinals; resolved at injection for "leader" kinds
	hold    time.Duration
	scaleTo int
}

// Fault kinds. destructive ones make a member leave the cluster (removed,
// data gone or corrupt) and need a recovery by vetcd.
const (
	fKill            = "kill-9"
	fKillMajority    = "kill-9-majority"
	fStop            = "sigstop"
	fStopLeader      = "sigstop-leader"
	fStopMajority    = "sigstop-majority"
	fPartition       = "partition"
	fPartitionLeader = "partition-leader"
	fWipeData        = "wipe-data-dir"
	fCorruptDB       = "corrupt-db"
	fDeleteDB        = "delete-db"
	fMemberRemove    = "member-remove"
	fScale           = "scale"
	fScaleKill       = "scale-kill-surplus"
	// fZombie: surplus replicas frozen, then killed by a quorum-breaking
	// scale-down; after the survivors rebuilt, the survivors are frozen
	// and the replica count goes back up, so the dropped replicas start on
	// their old data, which still holds a quorum of the old voters (issue
	// 15, finding 1). They must serve nothing; the survivors then resume.
	fZombie = "rebuild-then-dropped-return"
	// fKillClaimer: like scale-kill-surplus, and the survivor that claims
	// the rebuild (vetcd-0) is killed while it rebuilds; restarted on its
	// data, it must finish its claim, and the other survivor must never
	// rebuild beside it.
	fKillClaimer = "rebuild-claimer-killed"
	// fRestoreRebuild: a snapshot, more writes, then `vetcd snapshot
	// restore` and a quorum-breaking scale-down with the surplus frozen
	// and killed (a survivor then wants to rebuild), in an order and with
	// a delay drawn from the seed (see restoreDuringRebuild).
	fRestoreRebuild = "restore-during-rebuild"
)

// chaosKinds are the fault kinds the schedule draws from while the
// cluster has three voters or more, with their weights.
var chaosKinds = []struct {
	kind   string
	weight int
}{
	{fKill, 10}, {fKillMajority, 5}, {fStop, 10}, {fStopLeader, 5}, {fStopMajority, 6},
	{fPartition, 10}, {fPartitionLeader, 6}, {fWipeData, 6}, {fCorruptDB, 5}, {fDeleteDB, 4},
	{fMemberRemove, 6}, {fScale, 8}, {fScaleKill, 4}, {fZombie, 3}, {fKillClaimer, 3},
	{fRestoreRebuild, 3},
}

// setWeights reads CHAOS_WEIGHTS, "kind=weight,kind=weight": the weights
// of those kinds for a targeted run (0 leaves a kind out); the others keep
// theirs. The rules of next still apply.
func (ch *chaos) setWeights(v string) error {
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		kind, w, ok := strings.Cut(f, "=")
		n, err := strconv.Atoi(w)
		known := false
		for _, e := range chaosKinds {
			known = known || e.kind == kind
		}
		if !ok || err != nil || n < 0 || !known {
			return fmt.Errorf("CHAOS_WEIGHTS=%q: %q is not kind=weight with a known kind and a weight of 0 or more", v, f)
		}
		if ch.weights == nil {
			ch.weights = map[string]int{}
		}
		ch.weights[kind] = n
	}
	total := 0
	for _, e := range chaosKinds {
		if w, ok := ch.weights[e.kind]; ok {
			total += w
		} else {
			total += e.weight
		}
	}
	if total == 0 {
		return fmt.Errorf("CHAOS_WEIGHTS=%q leaves no fault kind", v)
	}
	return nil
}

// next draws the next fault from the seed, given the desired count. The
// rules (see TestChaos) keep every fault within what vetcd promises to
// survive: at most one replica in a destructive fault at a time, destructive
// faults only while the cluster has at least three voters (two survivors
// hold a quorum to remove and re-add it), and quorum-breaking faults only
// non-destructive (processes stopped or killed, never data removed).
func (ch *chaos) next() fault {
	n := ch.desired
	one := func() []int { return []int{ch.rng.IntN(n)} }
	if n < 3 {
		// One or two voters: a lost member cannot be replaced without
		// quorum. Only kill -9 (data kept) and scaling back up.
		if ch.rng.IntN(10) < 3 {
			return fault{kind: fKill, targets: one()}
		}
		return fault{kind: fScale, scaleTo: 3}
	}
	weight := func(kind string, w int) int {
		if o, ok := ch.weights[kind]; ok {
			return o
		}
		return w
	}
	total := 0
	for _, e := range chaosKinds {
		total += weight(e.kind, e.weight)
	}
	r := ch.rng.IntN(total)
	kind := ""
	for _, e := range chaosKinds {
		if w := weight(e.kind, e.weight); r < w {
			kind = e.kind
			break
		} else {
			r -= w
		}
	}
	f := fault{kind: kind}
	switch kind {
	case fKill, fWipeData, fCorruptDB, fDeleteDB, fMemberRemove:
		f.targets = one()
	case fStop, fPartition:
		f.targets = one()
		f.hold = time.Duration(2000+ch.rng.IntN(16000)) * time.Millisecond // about half beyond unresponsiveAfter (10s)
	case fStopLeader, fPartitionLeader:
		f.hold = time.Duration(2000+ch.rng.IntN(16000)) * time.Millisecond
	case fKillMajority, fStopMajority:
		f.targets = ch.rng.Perm(n)[:n/2+1]
		f.hold = time.Duration(3000+ch.rng.IntN(17000)) * time.Millisecond
	case fScaleKill, fZombie, fKillClaimer, fRestoreRebuild:
		f.scaleTo = []int{1, 2}[ch.rng.IntN(2)]
		if n == 3 {
			f.scaleTo = 1
		}
		f.hold = time.Duration(3000+ch.rng.IntN(12000)) * time.Millisecond
	case fScale:
		var to []int
		for _, m := range []int{1, 2, 3, 5} {
			if m != n {
				to = append(to, m)
			}
		}
		f.scaleTo = to[ch.rng.IntN(len(to))]
	}
	return f
}

func (ch *chaos) record(e faultEvent) {
	ch.mu.Lock()
	ch.timeline = append(ch.timeline, e)
	ch.counts[e.Kind]++
	ch.mu.Unlock()
	ch.t.Logf("chaos fault: %s", e)
}

// inject applies one fault and heals it (for the faults that end: SIGCONT,
// unblackhole, supervisor resumed). It returns an error only when the test
// machinery failed; a fault that found nothing to act on is recorded with
// the reason.
func (ch *chaos) inject(ctx context.Context, f fault) error {
	e := faultEvent{Kind: f.kind, Targets: f.targets, Start: ch.h.now()}
	defer func() {
		e.End = ch.h.now()
		ch.record(e)
	}()
	switch f.kind {
	case fStopLeader, fPartitionLeader:
		l, err := ch.leader(ctx)
		if err != nil {
			e.Detail = "no leader to target: " + err.Error()
			return nil
		}
		e.Targets = []int{l}
	}
	switch f.kind {
	case fKill, fKillMajority:
		for _, i := range e.Targets {
			if pid := ch.c.pid(i); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	case fStop, fStopLeader, fStopMajority:
		var pids []int
		for _, i := range e.Targets {
			if pid := ch.c.pid(i); pid > 0 && syscall.Kill(pid, syscall.SIGSTOP) == nil {
				pids = append(pids, pid)
			}
		}
		defer func() {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}()
		e.Detail = fmt.Sprintf("held %s", f.hold)
		sleepCtx(ctx, f.hold)
	case fPartition, fPartitionLeader:
		for _, i := range e.Targets {
			ch.proxies[i].BlackholeTx()
			ch.proxies[i].BlackholeRx()
		}
		defer func() {
			for _, i := range e.Targets {
				ch.proxies[i].UnblackholeTx()
				ch.proxies[i].UnblackholeRx()
			}
		}()
		e.Detail = fmt.Sprintf("peer port blackholed %s", f.hold)
		sleepCtx(ctx, f.hold)
	case fWipeData, fCorruptDB, fDeleteDB:
		detail, err := ch.damage(f.kind, e.Targets[0])
		e.Detail = detail
		return err
	case fMemberRemove:
		e.Detail = ch.removeFromOutside(ctx, e.Targets[0])
	case fZombie, fKillClaimer:
		detail, err := ch.rebuildFault(ctx, f)
		e.Detail = detail
		return err
	case fScale, fScaleKill:
		from := ch.desired
		if f.kind == fScaleKill {
			// kill -9 every surplus replica, then scale down: the survivor
			// must rebuild by itself. vetcd promises no acknowledged write
			// is lost only if a survivor holds every committed entry, which
			// the controller ensures by keeping leadership on vetcd-0: wait
			// for that, as a user would check before such a scale-down.
			if l, err := ch.waitLeader0(ctx, time.Minute); err != nil {
				e.Detail = fmt.Sprintf("leader is vetcd-%d, not vetcd-0 (%v): scaled down gracefully instead; ", l, err)
			} else {
				for i := f.scaleTo; i < from; i++ {
					if pid := ch.c.pid(i); pid > 0 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						e.Targets = append(e.Targets, i)
					}
				}
			}
		}
		out, err := vetcd(ch.t, time.Minute, "scale", strconv.Itoa(f.scaleTo), "--dir", ch.c.dir)
		if err != nil {
			e.Detail += fmt.Sprintf("vetcd scale %d failed: %v %s", f.scaleTo, err, strings.TrimSpace(out))
			return fmt.Errorf("vetcd scale %d: %w\n%s", f.scaleTo, err, out)
		}
		ch.desired = f.scaleTo
		kind := "up"
		if f.scaleTo < from {
			kind = "down"
			if f.scaleTo < from/2+1 {
				kind = "down, breaking quorum"
			}
		}
		e.Detail += fmt.Sprintf("%d → %d (%s)", from, f.scaleTo, kind)
	}
	return nil
}

// rebuildFault injects fZombie or fKillClaimer (see their doc): a
// quorum-breaking scale-down with the surplus killed, while vetcd-0 leads,
// followed by the dropped replicas' return with the survivors frozen, or by
// the rebuilding survivor's death.
func (ch *chaos) rebuildFault(ctx context.Context, f fault) (string, error) {
	from := ch.desired
	if l, err := ch.waitLeader0(ctx, time.Minute); err != nil {
		return fmt.Sprintf("leader is vetcd-%d, not vetcd-0 (%v): not injected", l, err), nil
	}
	var surplus []int
	for i := f.scaleTo; i < from; i++ {
		if pid := ch.c.pid(i); pid > 0 && syscall.Kill(pid, syscall.SIGSTOP) == nil {
			surplus = append(surplus, pid)
		}
	}
	out, err := vetcd(ch.t, time.Minute, "scale", strconv.Itoa(f.scaleTo), "--dir", ch.c.dir)
	for _, pid := range surplus {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	if err != nil {
		return fmt.Sprintf("vetcd scale %d failed: %v", f.scaleTo, err), fmt.Errorf("vetcd scale %d: %w\n%s", f.scaleTo, err, out)
	}
	ch.desired = f.scaleTo
	detail := fmt.Sprintf("%d → %d with the surplus frozen and killed", from, f.scaleTo)
	if f.kind == fKillClaimer {
		// vetcd-0 claims and rebuilds once it has seen no leader for ~2 s
		// and the applied indices settled for 2 s more: kill it inside
		// that window or during the forced start.
		sleepCtx(ctx, time.Duration(2000+ch.rng.IntN(4000))*time.Millisecond)
		if pid := ch.c.pid(0); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return detail + "; vetcd-0 killed while rebuilding", nil
	}
	if _, err := ch.converge(ctx, 4*time.Minute); err != nil {
		return detail + fmt.Sprintf("; not converged at %d: %v", f.scaleTo, err), nil
	}
	var survivors []int
	for i := 0; i < f.scaleTo; i++ {
		if pid := ch.c.pid(i); pid > 0 && syscall.Kill(pid, syscall.SIGSTOP) == nil {
			survivors = append(survivors, pid)
		}
	}
	defer func() {
		for _, pid := range survivors {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	out, err = vetcd(ch.t, time.Minute, "scale", strconv.Itoa(from), "--dir", ch.c.dir)
	if err != nil {
		return detail + fmt.Sprintf("; vetcd scale %d failed: %v", from, err), fmt.Errorf("vetcd scale %d: %w\n%s", from, err, out)
	}
	ch.desired = from
	sleepCtx(ctx, f.hold)
	return detail + fmt.Sprintf("; survivors frozen, scaled back to %d for %s", from, f.hold), nil
}

// damage stops replica i's process with the supervisor paused (so nothing
// restarts it meanwhile), damages its data, and resumes the supervisor,
// which restarts it on the damaged data.
func (ch *chaos) damage(kind string, i int) (string, error) {
	c := ch.c
	pid := c.pid(i)
	if pid == 0 {
		return "no process to damage", nil
	}
	c.pauseSupervisor()
	defer c.resumeSupervisor()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Sprintf("kill: %v", err), nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("replica %d (pid %d) still running 10s after kill -9", i, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	data := filepath.Join(c.dir, local.ReplicaName(i), "data")
	db := filepath.Join(data, "member", "snap", "db")
	switch kind {
	case fWipeData:
		if err := os.RemoveAll(data); err != nil {
			return "", fmt.Errorf("remove %s: %w", data, err)
		}
		return "data dir removed", nil
	case fDeleteDB:
		if err := os.Remove(db); err != nil {
			return fmt.Sprintf("no db to delete: %v", err), nil
		}
		return "member/snap/db removed", nil
	default:
		if _, err := os.Stat(db); err != nil {
			return fmt.Sprintf("no db to corrupt: %v", err), nil
		}
		if err := corruptBBolt(db); err != nil {
			return "", fmt.Errorf("corrupt %s: %w", db, err)
		}
		return "bbolt keys and values altered", nil
	}
}

// corruptBBolt alters the first byte of every key and value in etcd's key
// bucket, as etcd's testutil.CorruptBBolt does; unlike it, it skips empty
// ones (deletion tombstones), on which that one panics.
func corruptBBolt(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New("no bucket named key")
		}
		var keys, vals [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return err
			}
			if len(kv.Key) > 0 {
				kv.Key[0]++
			}
			if len(kv.Value) > 0 {
				kv.Value[0]++
			}
			v2, err := proto.Marshal(&kv)
			if err != nil {
				return err
			}
			keys, vals = append(keys, append([]byte(nil), k...)), append(vals, v2)
		}
		for i := range keys {
			if err := b.Put(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// removeFromOutside is `etcdctl member remove` of replica i's member.
func (ch *chaos) removeFromOutside(ctx context.Context, i int) string {
	cli, err := clientv3.New(clientv3.Config{Endpoints: ch.c.endpoints(ch.desired), TLS: ch.c.tlsConfig(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Sprintf("client: %v", err)
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := cli.MemberList(cctx)
		cancel()
		if err == nil {
			var id uint64
			for _, m := range resp.Members {
				if m.Name == local.ReplicaName(i) {
					id = m.ID
				}
			}
			if id == 0 {
				return "not a member at the moment"
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = cli.MemberRemove(cctx, id)
			cancel()
			if err == nil {
				return fmt.Sprintf("member %x removed", id)
			}
		}
		if (!errors.Is(err, rpctypes.ErrUnhealthy) && err != nil && !errors.Is(err, context.DeadlineExceeded)) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Sprintf("not removed: %v", err)
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
}

// leader is the ordinal of the current leader.
func (ch *chaos) leader(ctx context.Context) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := status.Get(cctx, ch.c.endpoints(ch.desired), ch.c.tlsConfig())
	if err != nil {
		return 0, err
	}
	for _, m := range st.Members {
		if m.Role == "leader" {
			return strconv.Atoi(strings.TrimPrefix(m.Name, "vetcd-"))
		}
	}
	return 0, errors.New("no leader in the member list")
}

// waitLeader0 waits until vetcd-0 leads; it returns the last leader seen.
func (ch *chaos) waitLeader0(ctx context.Context, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		l, err := ch.leader(ctx)
		if err == nil && l == 0 {
			return 0, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err == nil {
				err = errors.New("timed out")
			}
			return l, err
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
}

// converge waits until the cluster has the desired count of healthy voters.
func (ch *chaos) converge(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := status.Wait(cctx, func() []string { return ch.c.endpoints(ch.desired) }, ch.c.tlsConfig(), ch.desired)
	return time.Since(start), err
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// metricsScraper reads the vetcd_* counters of every replica process
// periodically: counters restart at 0 with each process, so the last value
// seen per (ordinal, pid) is summed.
type metricsScraper struct {
	c    *cluster
	mu   sync.Mutex
	last map[string]map[string]float64 // "ordinal/pid" -> metric line -> value
}

func (m *metricsScraper) run(ctx context.Context) {
	for {
		m.scrape()
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
	}
}

func (m *metricsScraper) scrape() {
	hc := &http.Client{Timeout: 2 * time.Second}
	for i := 0; i < chaosMaxReplicas; i++ {
		pid := m.c.pid(i)
		if pid == 0 {
			continue
		}
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", m.c.basePort+10*i+3))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		vals := map[string]float64{}
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "vetcd_recoveries_total") && !strings.HasPrefix(l, "vetcd_rebuilds_total") {
				continue
			}
			sp := strings.LastIndexByte(l, ' ')
			if sp < 0 {
				continue
			}
			if v, err := strconv.ParseFloat(l[sp+1:], 64); err == nil {
				vals[l[:sp]] = v
			}
		}
		m.mu.Lock()
		m.last[fmt.Sprintf("%d/%d", i, pid)] = vals
		m.mu.Unlock()
	}
}

// totals sums every process's last values per metric line.
func (m *metricsScraper) totals() map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]float64{}
	for _, vals := range m.last {
		for k, v := range vals {
			out[k] += v
		}
	}
	return out
}
