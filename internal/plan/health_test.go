package plan

import (
	"slices"
	"testing"
	"time"
)

// TestHealthClocks drives the health tracker's clocks with synthetic
// observations and checks the durations plan reads.
func TestHealthClocks(t *testing.T) {
	var h Health
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	obs := func(healthy2 bool, learnerApplied uint64) ClusterObservation {
		return ClusterObservation{
			LeaderID:     1,
			CatchUpSlack: 10,
			Desired:      3,
			Members: []Member{
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
		h.Observe(&o, t0.Add(s.at))
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
	var h2 Health
	o := obs(false, 0)
	h2.Observe(&o, t0)
	o = obs(false, 0)
	h2.Observe(&o, t0.Add(3*time.Minute))
	if got := o.Members[1].UnhealthyFor; got != 3*time.Minute {
		t.Errorf("never-healthy member: UnhealthyFor = %s, want 3m", got)
	}
	if rep := h2.Observe(&o, t0.Add(3*time.Minute)); len(rep.Watching) == 0 {
		t.Error("a silent member is not under watch")
	}
}

// TestHealthRecoveryInFlight: an in-flight recovery reaches plan until the
// replica is back as a healthy voter with a new identity.
func TestHealthRecoveryInFlight(t *testing.T) {
	var h Health
	t0 := time.Now()
	h.Done(Action{Kind: Remove, Target: 3, Recovery: ReasonUnresponsive}, 2, t0)
	o := ClusterObservation{LeaderID: 1, Desired: 3, RecoveryTimeout: time.Hour, Members: []Member{
		{ID: 1, Ordinal: 0, Healthy: true}, {ID: 2, Ordinal: 1, Healthy: true}, {ID: 9, Ordinal: 2, IsLearner: true, Healthy: true},
	}}
	h.Observe(&o, t0.Add(time.Second))
	if o.Recovery == nil || o.Recovery.Ordinal != 2 {
		t.Fatalf("recovery not passed to plan while the replacement is a learner: %+v", o.Recovery)
	}
	o.Members[2].IsLearner = false
	o.Recovery = nil
	rep := h.Observe(&o, t0.Add(2*time.Second))
	if o.Recovery != nil || h.recovery != nil {
		t.Fatal("recovery still in flight after the replacement became a healthy voter")
	}
	if rep.Finished == nil || rep.Finished.Ordinal != 2 || rep.Finished.For != 2*time.Second {
		t.Fatalf("finished recovery reported as %+v, want ordinal 2 after 2s", rep.Finished)
	}
}

// A NOSPACE compaction is remembered for the episode, and forgotten once
// the alarm is gone; Soon is set while a learner or an unstarted member
// waits; Reset forgets everything.
func TestHealthEpisodes(t *testing.T) {
	var h Health
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	nospace := []Alarm{{MemberID: 1, Name: AlarmNoSpace}}
	voters := []Member{{ID: 1, Started: true, Healthy: true}, {ID: 2, Started: true, Healthy: true}}
	steps := []struct {
		name          string
		alarms        []Alarm
		members       []Member
		done          *Action
		wantCompacted bool
		wantSoon      bool
	}{
		{name: "alarm raised, nothing compacted yet", alarms: nospace, members: voters},
		{name: "compacted in this episode", alarms: nospace, members: voters, done: &Action{Kind: Compact, Revision: 50}, wantCompacted: true},
		{name: "alarm gone: episode over", members: voters},
		{name: "raised again: a new episode", alarms: nospace, members: voters},
		{name: "a learner waits", members: append(slices.Clone(voters), Member{ID: 3, IsLearner: true, Started: true, Healthy: true}), wantSoon: true},
		{name: "a member added but not started", members: append(slices.Clone(voters), Member{ID: 4}), wantSoon: true},
	}
	for i, s := range steps {
		if s.done != nil {
			h.Done(*s.done, NoOrdinal, t0)
		}
		o := ClusterObservation{LeaderID: 1, Alarms: s.alarms, Members: s.members}
		rep := h.Observe(&o, t0.Add(time.Duration(i)*time.Second))
		if o.NoSpaceCompacted != s.wantCompacted || rep.Soon != s.wantSoon {
			t.Errorf("%s: NoSpaceCompacted %t, Soon %t; want %t, %t", s.name, o.NoSpaceCompacted, rep.Soon, s.wantCompacted, s.wantSoon)
		}
	}
	h.Done(Action{Kind: Remove, Target: 2, Recovery: ReasonUnresponsive}, 1, t0)
	h.Reset()
	o := ClusterObservation{LeaderID: 1, Desired: 3, RecoveryTimeout: time.Hour, Members: voters}
	if h.Observe(&o, t0); o.Recovery != nil {
		t.Fatalf("recovery in flight after Reset: %+v", o.Recovery)
	}
}

func TestRecoveryTimeout(t *testing.T) {
	if got := RecoveryTimeout(2*time.Minute, 5*time.Minute); got != 9*time.Minute {
		t.Errorf("RecoveryTimeout(2m, 5m) = %s, want 9m", got)
	}
	if got := RecoveryTimeout(time.Second, time.Second); got != 5*time.Minute {
		t.Errorf("RecoveryTimeout(1s, 1s) = %s, want the 5m floor", got)
	}
}
