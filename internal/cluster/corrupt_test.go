package cluster

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/featuregate"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/mvcc/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/etcdclient"
	"github.com/vetcd/vetcd/internal/metrics"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/testtools"
	"github.com/vetcd/vetcd/internal/topology"
)

// These tests run the controller against three real etcd members in this
// process, one of whose bbolt database is really corrupted while it is
// stopped, with the CORRUPT alarm raised by etcd's own periodic corruption
// check (CorruptCheckTime), not by the test.

// member is one in-process etcd member of a test cluster.
type member struct {
	ordinal int
	name    string
	dir     string
	cu, pu  url.URL
	initial string
	// tune sets etcd's corruption checks (CorruptCheckTime, feature gates).
	tune func(*embed.Config)
	e    *embed.Etcd
}

func freeURL(t *testing.T) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// startMembers starts n members, each config tuned by tune, and waits until
// they serve.
func startMembers(t *testing.T, n int, tune func(*embed.Config)) []*member {
	t.Helper()
	ms := make([]*member, n)
	var initial []string
	for i := range ms {
		ms[i] = &member{ordinal: i, name: fmt.Sprintf("m%d", i), dir: t.TempDir(), cu: freeURL(t), pu: freeURL(t), tune: tune}
		initial = append(initial, ms[i].name+"="+ms[i].pu.String())
	}
	errs := make(chan error, n)
	for _, m := range ms {
		m.initial = strings.Join(initial, ",")
		go func() { errs <- m.start() }()
	}
	for range ms {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.stop()
		}
	})
	for _, m := range ms {
		waitReady(t, m)
	}
	return ms
}

func (m *member) start() error {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = m.name, m.dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{m.cu}, []url.URL{m.cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{m.pu}, []url.URL{m.pu}
	cfg.InitialCluster, cfg.InitialClusterToken = m.initial, "corrupt-test"
	cfg.ListenMetricsUrls = nil
	if m.tune != nil {
		m.tune(cfg)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	m.e = e
	return nil
}

func (m *member) stop() {
	if m.e != nil {
		m.e.Close()
		m.e = nil
	}
}

func (m *member) id() uint64 { return uint64(m.e.Server.MemberID()) }

func waitReady(t *testing.T, m *member) {
	t.Helper()
	select {
	case <-m.e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready within 30s", m.name)
	}
}

// periodicCheck turns on etcd's periodic corruption check, in which the
// leader compares every follower's hash with its own and alarms the first
// that differs.
func periodicCheck(cfg *embed.Config) { cfg.CorruptCheckTime = 200 * time.Millisecond }

// restartCorrupt stops m, corrupts its bbolt file the way etcd's own tests
// do (every key and value altered; times times, so that two members can be
// corrupted differently), and starts it again on it, with tune.
func restartCorrupt(t *testing.T, m *member, times int, tune func(*embed.Config)) {
	t.Helper()
	m.stop()
	for range times {
		if err := testutil.CorruptBBolt(filepath.Join(m.dir, "member", "snap", "db")); err != nil {
			t.Fatalf("corrupt %s: %v", m.name, err)
		}
	}
	m.tune = tune
	if err := m.start(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, m)
}

// waitFor is testtools.WaitFor for a condition that says whether it
// holds and what it last saw.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testtools.WaitFor(t, d, what, func(context.Context) error {
		if ok, last := cond(); !ok {
			return fmt.Errorf("last: %s", last)
		}
		return nil
	})
}

func leaderOf(ms []*member) *member {
	for _, m := range ms {
		if m.e != nil && m.e.Server.Leader() != 0 && m.e.Server.Leader() == m.e.Server.MemberID() {
			return m
		}
	}
	return nil
}

func client(t *testing.T, ms []*member) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.cu.String())
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func put(t *testing.T, cli *clientv3.Client, n int) {
	t.Helper()
	for i := range n {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("/registry/k%03d", i), strings.Repeat("v", 100))
		cancel()
		if err != nil {
			t.Fatalf("put: %v", err)
		}
	}
}

// corruptAlarmsOf lists the members with a CORRUPT alarm; ok is false when
// the list could not be read.
func corruptAlarmsOf(t *testing.T, cli *clientv3.Client) (ids []uint64, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	resp, err := cli.AlarmList(ctx)
	if err != nil {
		return nil, false
	}
	for _, a := range resp.Alarms {
		if a.Alarm == pb.AlarmType_CORRUPT {
			ids = append(ids, a.MemberID)
		}
	}
	return ids, true
}

func memberIDs(t *testing.T, cli *clientv3.Client) map[uint64]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil
	}
	ids := map[uint64]bool{}
	for _, m := range resp.Members {
		ids[m.ID] = true
	}
	return ids
}

// testTopology knows the members by ordinal.
type testTopology []*member

func (tt testTopology) Desired(context.Context) (int, error) { return len(tt), nil }

func (tt testTopology) Lookup(_ context.Context, ordinal int) (topology.Replica, bool, error) {
	if ordinal < 0 || ordinal >= len(tt) {
		return topology.Replica{}, false, nil
	}
	m := tt[ordinal]
	return topology.Replica{Name: m.name, Ordinal: ordinal, ClientURL: m.cu.String(), PeerURL: m.pu.String()}, true, nil
}

// testPool adapts the client pool the way internal/replica does.
type testPool struct{ *etcdclient.Pool }

func (p testPool) Status(ctx context.Context, endpoint string, id uint64) (Status, error) {
	return p.MemberStatus(ctx, endpoint, id)
}

func (p testPool) API(endpoint string) (API, error) { return p.Pool.API(endpoint) }

// controllers gives every member its own controller, as every replica has:
// only the leader's acts.
func controllers(t *testing.T, ms []*member) []*Controller {
	pool := etcdclient.NewPool(nil, zap.NewNop())
	t.Cleanup(pool.Close)
	cs := make([]*Controller, len(ms))
	for i, m := range ms {
		cs[i] = New(Options{
			Logger:   zaptest.NewLogger(t).Named(m.name),
			Metrics:  metrics.New(),
			Topology: testTopology(ms),
			Pool:     testPool{pool},
			Local:    func() Local { return Embedded(m.e) },
		})
	}
	return cs
}

// pass runs one pass of the leader's controller and returns its action.
func pass(t *testing.T, ms []*member, cs []*Controller) plan.Action {
	t.Helper()
	l := leaderOf(ms)
	if l == nil {
		return plan.Action{Kind: plan.None, Reason: "no leader"}
	}
	res, err := cs[l.ordinal].Reconcile(t.Context())
	if err != nil {
		t.Logf("pass on %s: %v", l.name, err)
	}
	return res.Action
}

// TestCorruptFollowerReplaced: a follower's bbolt file is corrupted while
// it is stopped; etcd's periodic check on the leader raises CORRUPT for it.
// The controller's own hash comparison agrees: it removes that follower,
// and only it, then disarms the alarm of the member that is gone.
func TestCorruptFollowerReplaced(t *testing.T) {
	ms := startMembers(t, 3, periodicCheck)
	cli := client(t, ms)
	put(t, cli, 50)
	var x *member
	for _, m := range ms {
		if m != leaderOf(ms) {
			x = m
		}
	}
	restartCorrupt(t, x, 1, periodicCheck)
	xid := x.id()
	waitFor(t, 30*time.Second, "etcd raises CORRUPT", func() (bool, string) {
		ids, _ := corruptAlarmsOf(t, cli)
		return len(ids) > 0, fmt.Sprint(ids)
	})
	if ids, _ := corruptAlarmsOf(t, cli); len(ids) != 1 || ids[0] != xid {
		t.Fatalf("etcd alarmed %x, want the corrupt follower %s (%x) only", ids, x.name, xid)
	}
	cs := controllers(t, ms)
	waitFor(t, 60*time.Second, "the corrupt follower removed", func() (bool, string) {
		a := pass(t, ms, cs)
		if a.Kind != plan.None && (a.Kind != plan.Remove || a.Target != xid) {
			t.Fatalf("controller chose %s %x (%s); only the removal of the corrupt %s (%x) is right", a.Kind, a.Target, a.Reason, x.name, xid)
		}
		return !memberIDs(t, cli)[xid] && len(memberIDs(t, cli)) == 2, a.Reason
	})
	waitFor(t, 30*time.Second, "the alarm of the removed member disarmed", func() (bool, string) {
		a := pass(t, ms, cs)
		if a.Kind != plan.None && a.Kind != plan.Disarm {
			t.Fatalf("controller chose %s %x (%s) after the corrupt member was removed", a.Kind, a.Target, a.Reason)
		}
		ids, ok := corruptAlarmsOf(t, cli)
		return ok && len(ids) == 0, a.Reason
	})
}

// TestCorruptLeaderFollowersKept: the leader's bbolt file is the corrupt
// one. etcd's periodic check runs on the leader and alarms a healthy
// follower, whose hash differs from the leader's. The controller must not
// remove that follower (it would resync from the corrupt leader): its own
// comparison shows the leader is the odd one out, so leadership moves to a
// healthy member, the corrupt former leader is removed, and the false alarm
// is disarmed once it is out. No healthy member is ever removed.
func TestCorruptLeaderFollowersKept(t *testing.T) {
	ms := startMembers(t, 3, nil)
	cli := client(t, ms)
	put(t, cli, 50)
	x := ms[2]
	// Only the corrupt member runs etcd's periodic check, and only once it
	// leads: the others would alarm it as a follower first.
	restartCorrupt(t, x, 1, periodicCheck)
	xid := x.id()
	waitFor(t, 30*time.Second, "the corrupt member leads", func() (bool, string) {
		l := leaderOf(ms)
		if l == x {
			return true, ""
		}
		if l == nil {
			return false, "no leader"
		}
		lc, err := clientv3.New(clientv3.Config{Endpoints: []string{l.cu.String()}, Logger: zap.NewNop()})
		if err != nil {
			return false, err.Error()
		}
		defer lc.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err = lc.MoveLeader(ctx, xid)
		return false, fmt.Sprint(err)
	})
	waitFor(t, 30*time.Second, "etcd raises CORRUPT", func() (bool, string) {
		ids, _ := corruptAlarmsOf(t, cli)
		return len(ids) > 0, fmt.Sprint(ids)
	})
	alarmed, _ := corruptAlarmsOf(t, cli)
	for _, id := range alarmed {
		if id == xid {
			t.Fatalf("etcd alarmed the corrupt leader %x itself; this test needs its real behaviour of alarming a follower", xid)
		}
	}
	t.Logf("etcd alarmed the healthy follower(s) %x; the corrupt leader is %s (%x)", alarmed, x.name, xid)
	healthy := map[uint64]string{}
	for _, m := range ms {
		if m != x {
			healthy[m.id()] = m.name
		}
	}
	cs := controllers(t, ms)
	check := func(a plan.Action) {
		t.Helper()
		if a.Kind == plan.Remove && a.Target != xid {
			t.Fatalf("controller removes the healthy %s (%x): %s", healthy[a.Target], a.Target, a.Reason)
		}
		if a.Kind == plan.Disarm && memberIDs(t, cli)[xid] {
			t.Fatalf("controller disarms %x's alarm while the corrupt %s is still a member: %s", a.Target, x.name, a.Reason)
		}
		if a.Kind == plan.MoveLeader && a.Target == xid {
			t.Fatalf("controller hands leadership back to the corrupt member: %s", a.Reason)
		}
	}
	var moved bool
	waitFor(t, 60*time.Second, "leadership moved away from the corrupt member", func() (bool, string) {
		a := pass(t, ms, cs)
		check(a)
		moved = moved || a.Kind == plan.MoveLeader
		l := leaderOf(ms)
		return l != nil && l != x, fmt.Sprintf("%s: %s", a.Kind, a.Reason)
	})
	if !moved {
		t.Fatal("leadership left the corrupt member without the controller moving it")
	}
	waitFor(t, 60*time.Second, "the corrupt former leader removed", func() (bool, string) {
		a := pass(t, ms, cs)
		check(a)
		return !memberIDs(t, cli)[xid] && len(memberIDs(t, cli)) == 2, fmt.Sprintf("%s: %s", a.Kind, a.Reason)
	})
	waitFor(t, 30*time.Second, "the false alarm disarmed", func() (bool, string) {
		a := pass(t, ms, cs)
		check(a)
		ids, ok := corruptAlarmsOf(t, cli)
		return ok && len(ids) == 0, fmt.Sprintf("%s: %s", a.Kind, a.Reason)
	})
	ids := memberIDs(t, cli)
	for id, name := range healthy {
		if !ids[id] {
			t.Fatalf("healthy member %s (%x) is no longer in the cluster", name, id)
		}
	}
}

// TestCorruptNoMajorityStops: two of three members are corrupted, each
// differently, so no two hashes agree. etcd's compaction hash check finds no
// majority and raises its cluster-wide CORRUPT alarm (member 0). The
// controller must not disarm it nor replace anyone: it stops, says why,
// sets vetcd_corruption_unresolved and shows it in its state.
func TestCorruptNoMajorityStops(t *testing.T) {
	compactCheck := func(cfg *embed.Config) {
		if err := cfg.ServerFeatureGate.(featuregate.MutableFeatureGate).Set("CompactHashCheck=true"); err != nil {
			t.Fatal(err)
		}
		cfg.CompactHashCheckTime = 200 * time.Millisecond
	}
	ms := startMembers(t, 3, compactCheck)
	cli := client(t, ms)
	put(t, cli, 50)
	restartCorrupt(t, ms[1], 1, compactCheck)
	restartCorrupt(t, ms[2], 2, compactCheck)
	put(t, cli, 10)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	resp, err := cli.Get(ctx, "/registry/k000")
	if err == nil {
		_, err = cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	}
	cancel()
	if err != nil {
		t.Fatalf("compact: %v", err)
	}
	waitFor(t, 30*time.Second, "etcd raises its cluster-wide CORRUPT alarm", func() (bool, string) {
		ids, _ := corruptAlarmsOf(t, cli)
		return slices.Contains(ids, 0), fmt.Sprint(ids)
	})
	before := memberIDs(t, cli)
	cs := controllers(t, ms)
	for range 10 {
		a := pass(t, ms, cs)
		if a.Kind != plan.None || !a.Blocked || !a.NeedsPerson || !strings.Contains(a.Reason, "cluster-wide") {
			t.Fatalf("controller chose %s %x (blocked %v, needs person %v): %s; want to stop and wait for a person", a.Kind, a.Target, a.Blocked, a.NeedsPerson, a.Reason)
		}
	}
	l := leaderOf(ms)
	if l == nil {
		t.Fatal("no leader")
	}
	var g dto.Metric
	if err := cs[l.ordinal].opts.Metrics.CorruptionUnresolved.Write(&g); err != nil || g.GetGauge().GetValue() != 1 {
		t.Fatalf("vetcd_corruption_unresolved = %v (%v), want 1", g.GetGauge().GetValue(), err)
	}
	st := cs[l.ordinal].State()
	if !slices.ContainsFunc(st.Watching, func(w plan.Watch) bool { return strings.Contains(w.Reason, "cluster-wide") }) {
		t.Fatalf("the controller's state does not show the cluster-wide alarm: %+v", st.Watching)
	}
	ids, ok := corruptAlarmsOf(t, cli)
	if !ok || !slices.Contains(ids, 0) {
		t.Fatalf("the cluster-wide CORRUPT alarm is gone: %x", ids)
	}
	if after := memberIDs(t, cli); len(after) != len(before) {
		t.Fatalf("members changed from %v to %v", before, after)
	}
}
