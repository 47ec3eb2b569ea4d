package plan

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func withApplied(m Member, applied uint64) Member {
	m.AppliedIndex = applied
	return m
}

func sick(m Member) Member {
	m.Healthy = false
	m.AppliedIndex = 0
	return m
}

func unstarted(m Member) Member {
	m.Started = false
	m.Name = ""
	m.Healthy = false
	return m
}

func healthyFor(m Member, d time.Duration) Member {
	m.HealthyFor = d
	return m
}

func obs(leaderOrd, desired int, ms ...Member) ClusterObservation {
	id := uint64(0x10 + leaderOrd)
	for i := range ms {
		if ms[i].Healthy && ms[i].AppliedIndex == 0 {
			ms[i].AppliedIndex = 100
		}
	}
	return ClusterObservation{LocalID: id, LeaderID: id, Desired: desired, Members: ms, CatchUpSlack: 10}
}

func TestNext(t *testing.T) {
	tests := []struct {
		name    string
		o       ClusterObservation
		kind    ActionKind
		target  int // ordinal of the target, -1 for none
		blocked bool
		reason  string
	}{
		{
			name:   "a follower does nothing",
			o:      func() ClusterObservation { o := obs(0, 3, voter(0), voter(1)); o.LocalID = 0x11; return o }(),
			kind:   None,
			target: -1,
			reason: "not the leader",
		},
		{
			name:   "steady state: nothing to do",
			o:      obs(0, 3, voter(0), voter(1), voter(2)),
			kind:   None,
			target: -1,
			reason: "match",
		},
		{
			name:   "caught-up learner is promoted",
			o:      obs(0, 3, voter(0), voter(1), learner(2)),
			kind:   Promote,
			target: 2,
		},
		{
			name:   "lagging learner waits",
			o:      obs(0, 3, voter(0), voter(1), withApplied(learner(2), 5)),
			kind:   None,
			target: -1,
			reason: "catching up",
		},
		{
			name:   "learners are promoted lowest ordinal first",
			o:      obs(0, 3, voter(0), learner(2), learner(1)),
			kind:   Promote,
			target: 1,
		},
		{
			name:   "a join in flight blocks promotion (one change at a time)",
			o:      obs(0, 3, voter(0), voter(1), unstarted(learner(2))),
			kind:   None,
			target: -1,
			reason: "in flight",
		},
		{
			name:   "a surplus learner is removed first",
			o:      obs(0, 1, voter(0), voter(1), learner(2)),
			kind:   Remove,
			target: 2,
		},
		{
			name:   "surplus learner is removed before surplus voters even if it is healthy",
			o:      obs(0, 2, voter(0), voter(1), voter(2), learner(3)),
			kind:   Remove,
			target: 3,
		},
		{
			name:   "5 to 3: highest surplus follower first",
			o:      obs(0, 3, voter(0), voter(1), voter(2), voter(3), voter(4)),
			kind:   Remove,
			target: 4,
		},
		{
			name:   "dead surplus follower goes before a live one",
			o:      obs(0, 3, voter(0), voter(1), voter(2), sick(voter(3)), voter(4)),
			kind:   Remove,
			target: 3,
		},
		{
			name:   "leader is surplus: hand leadership to the lowest surviving ordinal first",
			o:      obs(2, 1, voter(0), voter(1), voter(2)),
			kind:   MoveLeader,
			target: 0,
		},
		{
			name:   "last removal: leadership moves to ordinal 0 before it",
			o:      obs(1, 2, voter(0), voter(1), voter(2)),
			kind:   MoveLeader,
			target: 0,
		},
		{
			name:    "heir lagging: scale-down waits",
			o:       obs(2, 1, withApplied(voter(0), 3), voter(1), voter(2)),
			kind:    None,
			target:  -1,
			blocked: true,
			reason:  "catch up",
		},
		{
			name:   "3 to 1 with leader at 0: remove followers",
			o:      obs(0, 1, voter(0), voter(1), voter(2)),
			kind:   Remove,
			target: 2,
		},
		{
			name:    "4 voters, a desired one dead: removing a surplus still keeps quorum",
			o:       obs(0, 2, voter(0), sick(voter(1)), voter(2), voter(3)),
			kind:    Remove,
			target:  3,
			blocked: false,
		},
		{
			name:    "quorum guard: 4 voters, two desired dead, removing a live surplus refused",
			o:       obs(0, 3, voter(0), sick(voter(1)), sick(voter(2)), voter(3)),
			kind:    None,
			target:  -1,
			blocked: true,
			reason:  "below quorum",
		},
		{
			name:   "members owned by no replica are never touched",
			o:      obs(0, 1, voter(0), Member{ID: 0x99, Ordinal: NoOrdinal, Started: true, Healthy: true, AppliedIndex: 100}),
			kind:   None,
			target: -1,
		},
		{
			name:   "leadership preference: ordinal 0 healthy long enough takes over",
			o:      obs(1, 3, healthyFor(voter(0), time.Minute), voter(1), voter(2)),
			kind:   MoveLeader,
			target: 0,
		},
		{
			name:   "leadership preference waits until ordinal 0 was healthy for a while",
			o:      obs(1, 3, healthyFor(voter(0), time.Second), voter(1), voter(2)),
			kind:   None,
			target: -1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.PreferLeaderAfter = 10 * time.Second
			a := Next(o)
			if a.Kind != tc.kind {
				t.Fatalf("kind = %v (%s), want %v", a.Kind, a.Reason, tc.kind)
			}
			if tc.target >= 0 && a.Target != uint64(0x10+tc.target) {
				t.Fatalf("target = %x (%s), want ordinal %d", a.Target, a.Reason, tc.target)
			}
			if a.Blocked != tc.blocked {
				t.Fatalf("blocked = %v (%s), want %v", a.Blocked, a.Reason, tc.blocked)
			}
			if !strings.Contains(a.Reason, tc.reason) {
				t.Fatalf("reason %q does not contain %q", a.Reason, tc.reason)
			}
			if a.Fingerprint != Fingerprint(o.Members) {
				t.Fatalf("action carries fingerprint %q, want %q", a.Fingerprint, Fingerprint(o.Members))
			}
		})
	}
}

func TestCheckRemoval(t *testing.T) {
	tests := []struct {
		name    string
		members []Member
		target  int
		ok      bool
	}{
		{"learner always removable", []Member{voter(0), sick(learner(1))}, 1, true},
		{"3 healthy voters: remove one", []Member{voter(0), voter(1), voter(2)}, 2, true},
		{"last voter never removed", []Member{voter(0)}, 0, false},
		{"2 voters: removing the healthy one leaves a dead one", []Member{sick(voter(0)), voter(1)}, 1, false},
		{"2 voters: removing the dead one is fine", []Member{voter(0), sick(voter(1))}, 1, true},
		{"3 voters, one dead: removing a live one leaves 1 of 2", []Member{voter(0), sick(voter(1)), voter(2)}, 2, false},
		{"3 voters, one dead: removing the dead one", []Member{voter(0), sick(voter(1)), voter(2)}, 1, true},
		{"unknown member", []Member{voter(0)}, 5, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			why := CheckRemoval(tc.members, uint64(0x10+tc.target))
			if (why == "") != tc.ok {
				t.Fatalf("CheckRemoval = %q, want ok=%v", why, tc.ok)
			}
		})
	}
}

// TestNextNeverBreaksQuorum is the property test: over random member sets,
// no Remove that Next returns leaves fewer healthy voters than a quorum of
// the voters left, and no action targets a member owned by no replica.
func TestNextNeverBreaksQuorum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		n := 1 + rng.IntN(7)
		var ms []Member
		leader := -1
		for ord := 0; ord < n; ord++ {
			m := voter(ord)
			if rng.IntN(4) == 0 {
				m.IsLearner = true
			}
			if rng.IntN(3) == 0 {
				m = sick(m)
			}
			if rng.IntN(10) == 0 {
				m.Ordinal = NoOrdinal
			}
			m.AppliedIndex = uint64(90 + rng.IntN(20))
			if !m.Healthy {
				m.AppliedIndex = 0
			}
			m.HealthyFor = time.Duration(rng.IntN(30)) * time.Second
			if !m.Healthy {
				m.UnhealthyFor = time.Duration(rng.IntN(300)) * time.Second
			}
			if m.IsLearner {
				m.StalledFor = time.Duration(rng.IntN(600)) * time.Second
			}
			if leader < 0 && !m.IsLearner && m.Healthy {
				leader = ord
			}
			ms = append(ms, m)
		}
		if leader < 0 {
			continue
		}
		o := obs(leader, rng.IntN(n+2), ms...)
		o.PreferLeaderAfter = 10 * time.Second
		o.UnresponsiveAfter, o.LearnerStuckAfter, o.RecoveryTimeout = 2*time.Minute, 5*time.Minute, 10*time.Minute
		for j := rng.IntN(3); j > 0; j-- {
			id := uint64(0x10 + rng.IntN(n+1)) // sometimes an ID no longer in the list
			o.Alarms = append(o.Alarms, Alarm{MemberID: id, Name: []string{AlarmCorrupt, AlarmNoSpace}[rng.IntN(2)]})
		}
		a := Next(o)
		if a.Kind == None || a.Kind == Compact {
			continue
		}
		if a.Kind == Disarm {
			if _, in := find(ms, a.Target); in && a.Alarm == AlarmCorrupt {
				t.Fatalf("CORRUPT disarmed while member %x is still in the cluster: %+v", a.Target, o)
			}
			continue
		}
		target, ok := find(ms, a.Target)
		if !ok {
			t.Fatalf("action %v targets unknown member %x", a.Kind, a.Target)
		}
		if target.Ordinal == NoOrdinal {
			t.Fatalf("action %v targets a member owned by no replica: %+v", a.Kind, o)
		}
		switch a.Kind {
		case Remove:
			if why := CheckRemoval(ms, a.Target); why != "" {
				t.Fatalf("Remove %x breaks quorum (%s): %+v", a.Target, why, o)
			}
		case MoveLeader, Promote, Defrag:
			if !target.Healthy {
				t.Fatalf("%v to unhealthy member %x: %+v", a.Kind, a.Target, o)
			}
		}
	}
}

func TestHeir(t *testing.T) {
	tests := []struct {
		name    string
		desired int
		members []Member
		want    int // ordinal; -1: none
	}{
		{"lowest desired voter", 1, []Member{voter(0), voter(1), voter(2)}, 0},
		{"ordinal 0 silent: next", 2, []Member{sick(voter(0)), voter(1), voter(2)}, 1},
		{"never a surplus replica", 1, []Member{sick(voter(0)), voter(1), voter(2)}, -1},
		{"never a learner", 2, []Member{learner(0), voter(1), voter(2)}, 1},
		{"never an unstarted member", 2, []Member{unstarted(voter(0)), voter(1)}, 1},
		{"nobody answers", 3, []Member{sick(voter(0)), sick(voter(1)), sick(voter(2))}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Heir(tt.members, tt.desired)
			switch {
			case tt.want < 0 && ok:
				t.Errorf("Heir = %s, want none", got.Name)
			case tt.want >= 0 && !ok:
				t.Errorf("Heir = none, want ordinal %d", tt.want)
			case tt.want >= 0 && got.Ordinal != tt.want:
				t.Errorf("Heir = ordinal %d, want %d", got.Ordinal, tt.want)
			}
		})
	}
}
