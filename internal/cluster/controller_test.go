package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/plan"
)

// TestTickClocks drives the health monitor's clocks with synthetic
// observations and checks the durations plan reads.
func TestTickClocks(t *testing.T) {
	c := New(Options{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	obs := func(healthy2 bool, learnerApplied uint64) plan.ClusterObservation {
		return plan.ClusterObservation{
			LeaderID:     1,
			CatchUpSlack: 10,
			Desired:      3,
			Members: []plan.Member{
				{ID: 1, Name: "vetcd-0", Ordinal: 0, Healthy: true, AppliedIndex: 1000},
				{ID: 2, Name: "vetcd-1", Ordinal: 1, Healthy: healthy2, AppliedIndex: 1000},
				{ID: 3, Name: "vetcd-2", Ordinal: 2, IsLearner: true, Healthy: true, AppliedIndex: learnerApplied},
			},
		}
	}
	steps := []struct {
		at             time.Duration
		healthy2       bool
		learnerApplied uint64
		wantSilent     time.Duration // vetcd-1's UnhealthyFor
		wantHealthyFor time.Duration // vetcd-1's HealthyFor
		wantStalled    time.Duration // vetcd-2's StalledFor
	}{
		{at: 0, healthy2: true, learnerApplied: 100},
		{at: 5 * time.Second, healthy2: true, learnerApplied: 100, wantHealthyFor: 5 * time.Second, wantStalled: 5 * time.Second},
		{at: 6 * time.Second, healthy2: false, learnerApplied: 200, wantSilent: time.Second},
		{at: 20 * time.Second, healthy2: false, learnerApplied: 200, wantSilent: 15 * time.Second, wantStalled: 14 * time.Second},
		{at: 21 * time.Second, healthy2: true, learnerApplied: 995, wantHealthyFor: 0},
		{at: 30 * time.Second, healthy2: true, learnerApplied: 995, wantHealthyFor: 9 * time.Second},
	}
	for _, s := range steps {
		o := obs(s.healthy2, s.learnerApplied)
		c.tick(&o, t0.Add(s.at))
		if got := o.Members[1].UnhealthyFor; got != s.wantSilent {
			t.Errorf("at %s: vetcd-1 UnhealthyFor = %s, want %s", s.at, got, s.wantSilent)
		}
		if got := o.Members[1].HealthyFor; got != s.wantHealthyFor {
			t.Errorf("at %s: vetcd-1 HealthyFor = %s, want %s", s.at, got, s.wantHealthyFor)
		}
		if got := o.Members[2].StalledFor; got != s.wantStalled {
			t.Errorf("at %s: learner StalledFor = %s, want %s", s.at, got, s.wantStalled)
		}
	}
	// A member never seen healthy counts as silent since first seen.
	c2 := New(Options{})
	o := obs(false, 0)
	c2.tick(&o, t0)
	o = obs(false, 0)
	c2.tick(&o, t0.Add(3*time.Minute))
	if got := o.Members[1].UnhealthyFor; got != 3*time.Minute {
		t.Errorf("never-healthy member: UnhealthyFor = %s, want 3m", got)
	}
	if st := c2.State(); len(st.Watching) == 0 {
		t.Error("a silent member is not under watch in State")
	}
}

// TestTickRecoveryInFlight: an in-flight recovery reaches plan until the
// replica is back as a healthy voter with a new identity.
func TestTickRecoveryInFlight(t *testing.T) {
	c := New(Options{})
	t0 := time.Now()
	c.recovery = &inflight{ordinal: 2, memberID: 3, reason: plan.ReasonUnresponsive, at: t0}
	o := plan.ClusterObservation{LeaderID: 1, Desired: 3, RecoveryTimeout: time.Hour, Members: []plan.Member{
		{ID: 1, Ordinal: 0, Healthy: true}, {ID: 2, Ordinal: 1, Healthy: true}, {ID: 9, Ordinal: 2, IsLearner: true, Healthy: true},
	}}
	c.tick(&o, t0.Add(time.Second))
	if o.Recovery == nil || o.Recovery.Ordinal != 2 {
		t.Fatalf("recovery not passed to plan while the replacement is a learner: %+v", o.Recovery)
	}
	o.Members[2].IsLearner = false
	o.Recovery = nil
	c.tick(&o, t0.Add(2*time.Second))
	if o.Recovery != nil || c.recovery != nil {
		t.Fatal("recovery still in flight after the replacement became a healthy voter")
	}
}

func TestPassDue(t *testing.T) {
	const interval = time.Second
	tests := []struct {
		name    string
		elapsed time.Duration
		busy    bool
		changed bool
		want    bool
	}{
		{"idle, within the interval", 300 * time.Millisecond, false, false, false},
		{"idle, interval elapsed", interval, false, false, true},
		{"membership changed: at once", 0, false, true, true},
		{"join in flight: every poll step", pollStep, true, false, true},
		{"join in flight, just passed", 50 * time.Millisecond, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := passDue(tt.elapsed, interval, tt.busy, tt.changed); got != tt.want {
				t.Errorf("passDue(%v, %v, busy=%t, changed=%t) = %t, want %t", tt.elapsed, interval, tt.busy, tt.changed, got, tt.want)
			}
		})
	}
}

// hashPool is an in-memory Pool that answers HashKV from a script.
type hashPool struct {
	Pool
	mu      sync.Mutex
	members map[string]*fakeMember
	asked   []int64
}

type fakeMember struct {
	behind  int // answers ErrFutureRev this many times, then catches up
	hash    uint32
	compact int64
	dead    bool
}

func (p *hashPool) HashKV(_ context.Context, endpoint string, id uint64, rev int64) (*pb.HashKVResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, rev)
	m := p.members[endpoint]
	switch {
	case m.dead:
		return nil, errors.New("connection refused")
	case m.behind > 0:
		m.behind--
		return nil, fmt.Errorf("hash of %s: %w", endpoint, rpctypes.ErrFutureRev)
	}
	return &pb.HashKVResponse{Header: &pb.ResponseHeader{MemberId: id}, Hash: m.hash, CompactRevision: m.compact, HashRevision: rev}, nil
}

// TestHashRound: the controller's hash comparison asks again at the then
// current revision while a member is behind, and reports an incomplete
// round rather than guess.
func TestHashRound(t *testing.T) {
	targets := []hashTarget{{1, "a"}, {2, "b"}, {3, "c"}}
	tests := []struct {
		name     string
		members  map[string]*fakeMember
		complete bool
		hashes   int
		rounds   int // rounds of HashKV calls
	}{
		{"all answer at once", map[string]*fakeMember{"a": {hash: 7}, "b": {hash: 7}, "c": {hash: 9}}, true, 3, 1},
		{"a member behind: ask again at the newer revision", map[string]*fakeMember{"a": {hash: 7}, "b": {hash: 7}, "c": {behind: 2, hash: 7}}, true, 3, 3},
		{"a member always behind: give up after the attempts, incomplete", map[string]*fakeMember{"a": {hash: 7}, "b": {hash: 7}, "c": {behind: 99, hash: 7}}, false, 2, hashAttempts},
		{"compacted differently: ask again, then incomplete", map[string]*fakeMember{"a": {hash: 7, compact: 5}, "b": {hash: 7, compact: 5}, "c": {hash: 7, compact: 6}}, false, 3, hashAttempts},
		{"a dead member: no retries, incomplete", map[string]*fakeMember{"a": {hash: 7}, "b": {hash: 7}, "c": {dead: true}}, false, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &hashPool{members: tc.members}
			rev := int64(99)
			next := func() int64 { rev++; return rev } // the leader moves on
			hc, complete := hashRound(t.Context(), zaptest.NewLogger(t), p, targets, next, time.Millisecond)
			if complete != tc.complete || len(hc.Hashes) != tc.hashes || len(p.asked) != 3*tc.rounds {
				t.Fatalf("complete = %v with %d hashes after %d calls (%v); want %v, %d, %d rounds", complete, len(hc.Hashes), len(p.asked), p.asked, tc.complete, tc.hashes, tc.rounds)
			}
			if last := p.asked[len(p.asked)-1]; hc.Revision != last || last != 99+int64(tc.rounds) {
				t.Fatalf("hashes at revision %d, last asked at %d; want each round at a newer revision (%d)", hc.Revision, last, 99+tc.rounds)
			}
		})
	}
}
