package cluster

import (
	"testing"
	"time"

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
