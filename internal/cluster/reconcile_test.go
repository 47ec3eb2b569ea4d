package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/metrics"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// world is an in-memory cluster the controller of member 1 runs against:
// the fake side of the Local, Pool, API and Topology seams. Each member i
// (ID i+1) belongs to replica ordinal i.
type world struct {
	t *testing.T
	// local is the member this controller runs in (ID ordinal+1).
	local   uint64
	leader  uint64
	applied map[uint64]uint64
	members []MemberInfo
	// silent members answer no status call.
	silent map[uint64]bool
	// frag members have much free space in their db until defragmented.
	frag    map[uint64]bool
	desired int
	alarms  []plan.Alarm
	rev     int64
	// fail makes the named API call fail with the error once.
	fail map[string]error
	// calls records every API and pool call that changes something.
	calls []string
	// moveList, when set, changes the member list after this many calls
	// of Members (the list moves between observe and act).
	moveList int
}

func newWorld(t *testing.T, voters, learners int) *world {
	w := &world{t: t, local: 1, leader: 1, applied: map[uint64]uint64{}, silent: map[uint64]bool{}, frag: map[uint64]bool{}, desired: voters + learners, rev: 1000, fail: map[string]error{}}
	for i := range voters + learners {
		w.add(i, i >= voters)
	}
	return w
}

func (w *world) add(ordinal int, learner bool) {
	id := uint64(ordinal + 1)
	w.members = append(w.members, MemberInfo{ID: id, Name: fmt.Sprintf("vetcd-%d", ordinal), IsLearner: learner,
		PeerURLs: []string{peerURL(ordinal)}, ClientURLs: []string{clientURL(ordinal)}})
	w.applied[id] = 5000
}

func peerURL(i int) string   { return fmt.Sprintf("https://10.0.0.%d:2380", i) }
func clientURL(i int) string { return fmt.Sprintf("https://10.0.0.%d:2379", i) }

// Local: the local member's view.
type worldLocal struct{ w *world }

func (l worldLocal) MemberID() uint64     { return l.w.local }
func (l worldLocal) Leader() uint64       { return l.w.leader }
func (l worldLocal) AppliedIndex() uint64 { return l.w.applied[l.w.local] }
func (l worldLocal) Revision() int64      { return l.w.rev }
func (l worldLocal) QuotaBytes() int64    { return 2 << 30 }
func (l worldLocal) ClientURL() string    { return clientURL(int(l.w.local) - 1) }
func (l worldLocal) Members() []MemberInfo {
	if l.w.moveList > 0 {
		l.w.moveList--
		if l.w.moveList == 0 {
			l.w.add(len(l.w.members), true)
		}
	}
	return slices.Clone(l.w.members)
}

// Topology.
func (w *world) Desired(context.Context) (int, error) { return w.desired, nil }
func (w *world) Lookup(_ context.Context, ordinal int) (topology.Replica, bool, error) {
	if ordinal >= len(w.members) {
		return topology.Replica{}, false, nil
	}
	return topology.Replica{Name: fmt.Sprintf("vetcd-%d", ordinal), Ordinal: ordinal, PeerURL: peerURL(ordinal), ClientURL: clientURL(ordinal)}, true, nil
}

// Pool.
func (w *world) Status(_ context.Context, endpoint string, id uint64) (Status, error) {
	if w.silent[id] {
		return nil, errors.New("context deadline exceeded")
	}
	inUse := int64(90 << 20)
	if w.frag[id] {
		inUse = 40 << 20
	}
	return &pb.StatusResponse{RaftAppliedIndex: w.applied[id], DbSize: 100 << 20, DbSizeInUse: inUse}, nil
}
func (w *world) Defragment(_ context.Context, endpoint string) error {
	if err := w.call("defragment " + endpoint); err != nil {
		return err
	}
	for _, m := range w.members {
		if m.ClientURLs[0] == endpoint {
			delete(w.frag, m.ID)
		}
	}
	return nil
}
func (w *world) API(string) (API, error) { return w, nil }
func (w *world) HashKV(context.Context, string, uint64, int64) (*pb.HashKVResponse, error) {
	return nil, errors.New("not used")
}

// API.
func (w *world) call(c string) error {
	w.calls = append(w.calls, c)
	for prefix, err := range w.fail {
		if strings.HasPrefix(c, prefix) {
			delete(w.fail, prefix)
			return err
		}
	}
	return nil
}
func (w *world) MemberPromote(_ context.Context, id uint64) error {
	if err := w.call(fmt.Sprintf("promote %x", id)); err != nil {
		return err
	}
	for i := range w.members {
		if w.members[i].ID == id {
			w.members[i].IsLearner = false
		}
	}
	return nil
}
func (w *world) MemberRemove(_ context.Context, id uint64) error {
	if err := w.call(fmt.Sprintf("remove %x", id)); err != nil {
		return err
	}
	w.members = slices.DeleteFunc(w.members, func(m MemberInfo) bool { return m.ID == id })
	return nil
}
func (w *world) MoveLeader(_ context.Context, id uint64) error {
	return w.call(fmt.Sprintf("move-leader %x", id))
}
func (w *world) Compact(_ context.Context, rev int64) error {
	return w.call(fmt.Sprintf("compact %d", rev))
}
func (w *world) AlarmList(context.Context) ([]*pb.AlarmMember, error) {
	out := make([]*pb.AlarmMember, 0, len(w.alarms))
	for _, a := range w.alarms {
		out = append(out, &pb.AlarmMember{MemberID: a.MemberID, Alarm: pb.AlarmType(pb.AlarmType_value[a.Name])})
	}
	return out, nil
}
func (w *world) AlarmDisarm(_ context.Context, id uint64, alarm string) error {
	if err := w.call(fmt.Sprintf("disarm %x %s", id, alarm)); err != nil {
		return err
	}
	w.alarms = slices.DeleteFunc(w.alarms, func(a plan.Alarm) bool { return a.MemberID == id && a.Name == alarm })
	return nil
}

// step is one pass: change the world, advance the clock, reconcile.
type step struct {
	after  time.Duration // since the previous pass
	change func(*world)
	want   plan.ActionKind
	calls  []string // API calls this pass makes
	err    bool     // Reconcile returns an error
	soon   bool     // Result.RequeueAfter is PollStep
}

// TestReconcile drives the controller through every action and refusal
// against the in-memory world, with a fake clock: what took a 25 s wait in
// an end-to-end test ("nothing may happen") is a step here.
func TestReconcile(t *testing.T) {
	tests := []struct {
		name      string
		voters    int
		learners  int
		steps     []step
		metric    [3]string // kind, result, and the expected count as text
		blocked   string    // State().Blocked contains this at the end
		recovered string    // the recovery counted, if any
	}{
		{name: "steady: nothing to do", voters: 3,
			steps: []step{{want: plan.None}, {after: time.Hour, want: plan.None}}},
		{name: "not the leader: no calls", voters: 3,
			steps: []step{{change: func(w *world) { w.leader = 2 }, want: plan.None}}},
		{name: "caught-up learner promoted", voters: 2, learners: 1,
			steps:  []step{{want: plan.Promote, calls: []string{"promote 3"}, soon: true}, {want: plan.None}},
			metric: [3]string{"promote", "ok", "1"}},
		{name: "lagging learner waits, then is promoted", voters: 2, learners: 1,
			steps: []step{
				{change: func(w *world) { w.applied[3] = 10 }, want: plan.None, soon: true},
				{after: time.Second, change: func(w *world) { w.applied[3] = 4990 }, want: plan.Promote, calls: []string{"promote 3"}, soon: true},
			}},
		{name: "learner not ready: etcd refuses, counted, no error", voters: 2, learners: 1,
			steps: []step{
				{change: func(w *world) { w.fail["promote"] = rpctypes.ErrMemberLearnerNotReady }, want: plan.Promote, calls: []string{"promote 3"}, soon: true},
				{want: plan.Promote, calls: []string{"promote 3"}, soon: true},
			},
			metric: [3]string{"promote", "refused", "1"}},
		{name: "scale-down removes the highest surplus voter", voters: 3,
			steps:  []step{{change: func(w *world) { w.desired = 2 }, want: plan.Remove, calls: []string{"remove 3"}}, {want: plan.None}},
			metric: [3]string{"remove", "ok", "1"}},
		{name: "surplus leader hands over to ordinal 0 before it is removed", voters: 2,
			steps: []step{{change: func(w *world) { w.desired = 1; w.local, w.leader = 2, 2 }, want: plan.MoveLeader, calls: []string{"move-leader 1"}}}},
		{name: "leadership moves to ordinal 0 once it has been healthy for PreferLeaderAfter", voters: 3,
			steps: []step{
				{change: func(w *world) { w.local, w.leader = 2, 2 }, want: plan.None},
				{after: 9 * time.Second, want: plan.None},
				{after: time.Second, want: plan.MoveLeader, calls: []string{"move-leader 1"}},
			},
			metric: [3]string{"move-leader", "ok", "1"}},
		{name: "silent member replaced after unresponsiveAfter, one recovery at a time", voters: 3,
			steps: []step{
				{change: func(w *world) { w.silent[3] = true }, want: plan.None},
				{after: 119 * time.Second, want: plan.None},
				{after: time.Second, want: plan.Remove, calls: []string{"remove 3"}},
				// The replica rejoins as a learner with a new member ID;
				// while the recovery is in flight another silent member
				// is left alone.
				{change: func(w *world) {
					w.members = append(w.members, MemberInfo{ID: 9, Name: "vetcd-2", IsLearner: true, PeerURLs: []string{peerURL(2)}, ClientURLs: []string{clientURL(2)}})
					w.applied[9] = 5000
				}, want: plan.Promote, calls: []string{"promote 9"}, soon: true},
			},
			metric: [3]string{"remove", "ok", "1"}, recovered: "unresponsive"},
		{name: "no quorum of healthy voters: refused, shown as blocked", voters: 3,
			steps: []step{
				{change: func(w *world) { w.silent[2], w.silent[3] = true, true; w.desired = 1 }, want: plan.None},
				{after: time.Hour, want: plan.None},
			},
			metric: [3]string{"blocked", "refused", "1"}, blocked: "below quorum"},
		{name: "NOSPACE: compact, defragment the fragmented members leader last, disarm", voters: 3,
			steps: []step{
				{change: func(w *world) {
					w.alarms = []plan.Alarm{{MemberID: 2, Name: plan.AlarmNoSpace}}
					w.frag[1], w.frag[3] = true, true
				}, want: plan.Compact, calls: []string{"compact 1000"}},
				{want: plan.Defrag, calls: []string{"defragment " + clientURL(2)}},
				{want: plan.Defrag, calls: []string{"defragment " + clientURL(0)}},
				{want: plan.Disarm, calls: []string{"disarm 2 NOSPACE"}},
				{want: plan.None},
			},
			metric: [3]string{"defrag", "ok", "2"}},
		{name: "the member list moves between decision and act: dropped, counted", voters: 3,
			steps: []step{
				{change: func(w *world) { w.desired = 2; w.moveList = 2 }, want: plan.Remove},
			},
			metric: [3]string{"remove", "stale", "1"}},
		{name: "an API error is returned and counted", voters: 3,
			steps: []step{
				{change: func(w *world) { w.desired = 2; w.fail["remove"] = errors.New("connection reset") }, want: plan.Remove, calls: []string{"remove 3"}, err: true},
				{want: plan.Remove, calls: []string{"remove 3"}},
			},
			metric: [3]string{"remove", "error", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, tt.voters, tt.learners)
			now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
			m := metrics.New()
			c := New(Options{
				Logger: zaptest.NewLogger(t), Metrics: m, Topology: w, Pool: w,
				Local:             func() Local { return worldLocal{w} },
				Now:               func() time.Time { return now },
				UnresponsiveAfter: 2 * time.Minute, LearnerStuckAfter: 5 * time.Minute,
			})
			for i, s := range tt.steps {
				now = now.Add(s.after)
				if s.change != nil {
					s.change(w)
				}
				w.calls = nil
				res, err := c.Reconcile(t.Context())
				if (err != nil) != s.err {
					t.Fatalf("step %d: Reconcile error %v, want error %t", i, err, s.err)
				}
				if res.Action.Kind != s.want {
					t.Fatalf("step %d: action %s (%s), want %s", i, res.Action.Kind, res.Action.Reason, s.want)
				}
				if s.calls != nil && !slices.Equal(w.calls, s.calls) || s.calls == nil && len(w.calls) > 0 && res.Action.Kind == plan.None {
					t.Fatalf("step %d: calls %q, want %q", i, w.calls, s.calls)
				}
				if soon := res.RequeueAfter == PollStep; soon != s.soon {
					t.Fatalf("step %d: requeue after %s, want soon=%t", i, res.RequeueAfter, s.soon)
				}
			}
			if k := tt.metric; k[0] != "" {
				if got := counter(t, m.Actions.WithLabelValues(k[0], k[1])); fmt.Sprint(got) != k[2] {
					t.Fatalf("vetcd_actions_total{%s,%s} = %v, want %s", k[0], k[1], got, k[2])
				}
			}
			if tt.blocked != "" && !strings.Contains(c.State().Blocked, tt.blocked) {
				t.Fatalf("State().Blocked = %q, want it to say %q", c.State().Blocked, tt.blocked)
			}
			if tt.recovered != "" {
				if got := counter(t, m.Recoveries.WithLabelValues(tt.recovered)); got != 1 {
					t.Fatalf("vetcd_recoveries_total{%s} = %v, want 1", tt.recovered, got)
				}
			}
		})
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
