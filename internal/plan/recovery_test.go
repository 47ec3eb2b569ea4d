package plan

import (
	"strings"
	"testing"
	"time"
)

func silent(m Member, d time.Duration) Member {
	m = sick(m)
	m.UnhealthyFor = d
	return m
}

func stalled(m Member, d time.Duration) Member {
	m.StalledFor = d
	return m
}

func db(m Member, size, inUse int64) Member {
	m.DBSize, m.DBSizeInUse = size, inUse
	return m
}

func withRecovery(o ClusterObservation, r Recovery) ClusterObservation {
	o.Recovery = &r
	return o
}

// hashed gives o the controller's hash comparison at revision 500: one
// hash per ordinal (members 0x10+ordinal), all compacted to revision 100.
func hashed(o ClusterObservation, byOrdinal map[int]uint32) ClusterObservation {
	hc := &HashCheck{Revision: 500}
	for ord, h := range byOrdinal {
		hc.Hashes = append(hc.Hashes, MemberHash{MemberID: uint64(0x10 + ord), Hash: h, CompactRevision: 100})
	}
	o.Hashes = hc
	return o
}

// leading makes ordinal ord the leader (and the local member) of o.
func leading(o ClusterObservation, ord int) ClusterObservation {
	o.LeaderID, o.LocalID = uint64(0x10+ord), uint64(0x10+ord)
	return o
}

func TestNextRecovery(t *testing.T) {
	const mb = 1 << 20
	rec := func(o ClusterObservation) ClusterObservation {
		o.UnresponsiveAfter = 2 * time.Minute
		o.LearnerStuckAfter = 5 * time.Minute
		o.RecoveryTimeout = 10 * time.Minute
		o.QuotaBytes = 100 * mb
		o.Revision = 500
		return o
	}
	alarms := func(o ClusterObservation, as ...Alarm) ClusterObservation { o.Alarms = as; return o }
	compacted := func(o ClusterObservation) ClusterObservation { o.NoSpaceCompacted = true; return o }
	tests := []struct {
		name     string
		o        ClusterObservation
		kind     ActionKind
		target   int // ordinal, -1 for none; for Disarm of a removed member the raw ID below
		targetID uint64
		recovery Reason
		blocked  bool
		person   bool // NeedsPerson: vetcd will not resolve it by itself
		reason   string
	}{
		// Unresponsive members.
		{
			name: "member silent past the threshold is removed", o: rec(obs(0, 3, voter(0), voter(1), silent(voter(2), 3*time.Minute))),
			kind: Remove, target: 2, recovery: ReasonUnresponsive, reason: "has not answered",
		},
		{
			name: "member silent below the threshold is left alone", o: rec(obs(0, 3, voter(0), voter(1), silent(voter(2), time.Minute))),
			kind: None, target: -1,
		},
		{
			name: "2 of 3 answer: the silent one is replaced (the two left are a quorum)", o: rec(obs(0, 3, voter(0), silent(voter(1), 3*time.Minute), voter(2))),
			kind: Remove, target: 1, recovery: ReasonUnresponsive,
		},
		{
			name: "nothing without quorum (two of three down)", o: rec(obs(0, 3, voter(0), silent(voter(1), time.Hour), silent(voter(2), time.Hour))),
			kind: None, target: -1, blocked: true, reason: "no membership change without quorum",
		},
		{
			name: "5 members, two silent: the longest silent first", o: rec(obs(0, 5, voter(0), voter(1), voter(2), silent(voter(3), 3*time.Minute), silent(voter(4), 4*time.Minute))),
			kind: Remove, target: 4, recovery: ReasonUnresponsive,
		},
		{
			name: "one recovery at a time: another is in flight",
			o:    withRecovery(rec(obs(0, 5, voter(0), voter(1), voter(2), silent(voter(3), 3*time.Minute))), Recovery{Ordinal: 4, MemberID: 0x99, Reason: ReasonCorrupt, For: time.Minute}),
			kind: None, target: -1, blocked: true, reason: "one recovery at a time",
		},
		{
			name: "an in-flight recovery ends when its replica is a healthy voter again",
			o:    withRecovery(rec(obs(0, 5, voter(0), voter(1), voter(2), silent(voter(3), 3*time.Minute), voter(4))), Recovery{Ordinal: 4, MemberID: 0x99, Reason: ReasonCorrupt, For: time.Minute}),
			kind: Remove, target: 3, recovery: ReasonUnresponsive,
		},
		{
			name: "an in-flight recovery stops blocking after its timeout",
			o:    withRecovery(rec(obs(0, 5, voter(0), voter(1), voter(2), silent(voter(3), 3*time.Minute))), Recovery{Ordinal: 4, MemberID: 0x99, Reason: ReasonCorrupt, For: time.Hour}),
			kind: Remove, target: 3,
		},
		// Stuck learners.
		{
			name: "learner without progress past the threshold is removed", o: rec(obs(0, 3, voter(0), voter(1), stalled(withApplied(learner(2), 5), 6*time.Minute))),
			kind: Remove, target: 2, recovery: ReasonLearnerStuck, reason: "no progress",
		},
		{
			name: "an unstarted learner stuck past the threshold is removed", o: rec(obs(0, 3, voter(0), voter(1), stalled(unstarted(learner(2)), 6*time.Minute))),
			kind: Remove, target: 2, recovery: ReasonLearnerStuck,
		},
		{
			name: "a silent learner is judged by learnerStuckAfter, not unresponsiveAfter",
			o:    rec(obs(0, 3, voter(0), voter(1), stalled(silent(learner(2), 3*time.Minute), 3*time.Minute))),
			kind: None, target: -1,
		},
		{
			name: "a slow learner below the threshold waits", o: rec(obs(0, 3, voter(0), voter(1), stalled(withApplied(learner(2), 5), time.Minute))),
			kind: None, target: -1, reason: "catching up",
		},
		// CORRUPT. The hashes decide who is replaced, not the alarm.
		{
			name: "CORRUPT follower whose hash differs from the majority is removed",
			o:    rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x12, AlarmCorrupt}), map[int]uint32{0: 7, 1: 7, 2: 9})),
			kind: Remove, target: 2, recovery: ReasonCorrupt, reason: "differs",
		},
		{
			name: "CORRUPT leader whose hash differs hands over leadership first",
			o:    rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x10, AlarmCorrupt}), map[int]uint32{0: 9, 1: 7, 2: 7})),
			kind: MoveLeader, target: 1, reason: "differs",
		},
		{
			name: "alarm on a healthy follower, the leader differs: leadership moves away from the leader, the follower stays",
			o:    rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x12, AlarmCorrupt}), map[int]uint32{0: 9, 1: 7, 2: 7})),
			kind: MoveLeader, target: 1, reason: "differs",
		},
		{
			name: "alarm on a healthy follower, the old leader differs and now follows: the old leader is removed, not the alarmed member",
			o:    rec(hashed(alarms(leading(obs(0, 3, voter(0), voter(1), voter(2)), 1), Alarm{0x12, AlarmCorrupt}), map[int]uint32{0: 9, 1: 7, 2: 7})),
			kind: Remove, target: 0, recovery: ReasonCorrupt, reason: "differs",
		},
		{
			name: "the differing leader hands over to a member of the majority, not to another differing one",
			o:    rec(hashed(alarms(obs(0, 5, voter(0), voter(1), voter(2), voter(3), voter(4)), Alarm{0x13, AlarmCorrupt}), map[int]uint32{0: 9, 1: 8, 2: 7, 3: 7, 4: 7})),
			kind: MoveLeader, target: 2, reason: "majority",
		},
		{
			name: "the false alarm of a healthy member is disarmed once the differing member is out",
			o: withRecovery(rec(hashed(alarms(leading(obs(0, 3, voter(1), voter(2)), 1), Alarm{0x12, AlarmCorrupt}), map[int]uint32{1: 7, 2: 7})),
				Recovery{Ordinal: 0, MemberID: 0x10, Reason: ReasonCorrupt, For: time.Second}),
			kind: Disarm, targetID: 0x12, target: -1, reason: "replaced",
		},
		{
			name: "every hash agrees and nothing was replaced: the alarmed member is replaced, the alarm not just disarmed",
			o:    rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x12, AlarmCorrupt}), map[int]uint32{0: 7, 1: 7, 2: 7})),
			kind: Remove, target: 2, recovery: ReasonCorrupt, reason: "CORRUPT",
		},
		{
			name: "no majority of hashes agrees: stop and say so, replace no one",
			o:    rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x12, AlarmCorrupt}), map[int]uint32{0: 7, 1: 8, 2: 9})),
			kind: None, target: -1, blocked: true, person: true, recovery: ReasonCorrupt, reason: "no majority",
		},
		{
			name: "two members, hashes differ: no majority, no side picked",
			o:    rec(hashed(alarms(obs(0, 2, voter(0), voter(1)), Alarm{0x11, AlarmCorrupt}), map[int]uint32{0: 7, 1: 9})),
			kind: None, target: -1, blocked: true, person: true, recovery: ReasonCorrupt, reason: "no majority",
		},
		{
			name: "hashes not gathered: wait, remove no one",
			o:    rec(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x12, AlarmCorrupt})),
			kind: None, target: -1, blocked: true, recovery: ReasonCorrupt, reason: "hash",
		},
		{
			name: "hashes incomplete (a voter did not answer): wait, remove no one",
			o:    rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x12, AlarmCorrupt}), map[int]uint32{0: 7, 2: 9})),
			kind: None, target: -1, blocked: true, recovery: ReasonCorrupt, reason: "of 3 voters",
		},
		{
			name: "hashes at different compact revisions are not compared: wait",
			o: func() ClusterObservation {
				o := rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x12, AlarmCorrupt}), map[int]uint32{0: 7, 1: 7, 2: 9}))
				for i := range o.Hashes.Hashes {
					if o.Hashes.Hashes[i].MemberID == 0x11 {
						o.Hashes.Hashes[i].CompactRevision = 200
					}
				}
				return o
			}(),
			kind: None, target: -1, blocked: true, recovery: ReasonCorrupt,
		},
		{
			name: "a majority agrees with the alarmed member but a voter is silent: wait (it may be the differing one)",
			o:    rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x12, AlarmCorrupt}), map[int]uint32{0: 7, 2: 7})),
			kind: None, target: -1, blocked: true, recovery: ReasonCorrupt,
		},
		{
			name: "a cluster-wide CORRUPT alarm (member 0: etcd found no majority) is never disarmed: stop and say so",
			o:    rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0, AlarmCorrupt}), map[int]uint32{0: 7, 1: 8, 2: 9})),
			kind: None, target: -1, blocked: true, person: true, recovery: ReasonCorrupt, reason: "cluster-wide",
		},
		{
			name: "a cluster-wide CORRUPT alarm stops everything, even when the hashes now agree",
			o:    rec(hashed(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0, AlarmCorrupt}, Alarm{0x12, AlarmCorrupt}), map[int]uint32{0: 7, 1: 7, 2: 9})),
			kind: None, target: -1, blocked: true, person: true, recovery: ReasonCorrupt, reason: "cluster-wide",
		},
		{
			name: "a cluster-wide CORRUPT alarm stops the disarm of a removed member's alarm too",
			o:    rec(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x99, AlarmCorrupt}, Alarm{0, AlarmCorrupt})),
			kind: None, target: -1, blocked: true, person: true, recovery: ReasonCorrupt, reason: "cluster-wide",
		},
		{
			name: "CORRUPT alarm of a member no longer in the cluster is disarmed", o: rec(alarms(obs(0, 3, voter(0), voter(1), learner(2)), Alarm{0x99, AlarmCorrupt})),
			kind: Disarm, targetID: 0x99, target: -1, reason: "no longer in the cluster",
		},
		{
			name: "CORRUPT member replacement obeys the quorum guard",
			o:    rec(hashed(alarms(obs(0, 5, voter(0), sick(voter(1)), sick(voter(2)), voter(3), voter(4)), Alarm{0x14, AlarmCorrupt}), map[int]uint32{0: 7, 1: 7, 2: 7, 3: 7, 4: 9})),
			kind: None, target: -1, blocked: true, reason: "refused",
		},
		{
			name: "a differing learner is removed",
			o:    rec(hashed(alarms(obs(0, 4, voter(0), voter(1), voter(2), learner(3)), Alarm{0x13, AlarmCorrupt}), map[int]uint32{0: 7, 1: 7, 2: 7, 3: 9})),
			kind: Remove, target: 3, recovery: ReasonCorrupt,
		},
		{
			name: "CORRUPT comes before scale-down",
			o:    rec(hashed(alarms(obs(0, 2, voter(0), voter(1), voter(2)), Alarm{0x11, AlarmCorrupt}), map[int]uint32{0: 7, 1: 9, 2: 7})),
			kind: Remove, target: 1, recovery: ReasonCorrupt,
		},
		// NOSPACE.
		{
			name: "NOSPACE: compact first", o: rec(alarms(obs(0, 3, voter(0), voter(1), voter(2)), Alarm{0x10, AlarmNoSpace})),
			kind: Compact, target: -1, recovery: ReasonNoSpace, reason: "revision 500",
		},
		{
			name: "NOSPACE: then defragment followers before the leader",
			o:    rec(compacted(alarms(obs(0, 3, db(voter(0), 90*mb, 10*mb), db(voter(1), 90*mb, 10*mb), db(voter(2), 90*mb, 10*mb)), Alarm{0x10, AlarmNoSpace}))),
			kind: Defrag, target: 1, recovery: ReasonNoSpace,
		},
		{
			name: "NOSPACE: the leader last",
			o:    rec(compacted(alarms(obs(0, 3, db(voter(0), 90*mb, 10*mb), db(voter(1), 10*mb, 10*mb), db(voter(2), 10*mb, 10*mb)), Alarm{0x10, AlarmNoSpace}))),
			kind: Defrag, target: 0,
		},
		{
			name: "NOSPACE: all defragmented, space freed: disarm",
			o:    rec(compacted(alarms(obs(0, 3, db(voter(0), 10*mb, 10*mb), db(voter(1), 10*mb, 10*mb), db(voter(2), 10*mb, 10*mb)), Alarm{0x10, AlarmNoSpace}))),
			kind: Disarm, target: 0, recovery: ReasonNoSpace,
		},
		{
			name: "NOSPACE: live data still over the quota: no disarm, say why",
			o:    rec(compacted(alarms(obs(0, 3, db(voter(0), 95*mb, 95*mb), db(voter(1), 95*mb, 95*mb), db(voter(2), 95*mb, 95*mb)), Alarm{0x10, AlarmNoSpace}))),
			kind: None, target: -1, blocked: true, reason: "raise --quota-backend-bytes",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := Next(tc.o)
			if a.Kind != tc.kind {
				t.Fatalf("kind = %v (%s), want %v", a.Kind, a.Reason, tc.kind)
			}
			if tc.target >= 0 && a.Target != uint64(0x10+tc.target) {
				t.Fatalf("target = %x (%s), want ordinal %d", a.Target, a.Reason, tc.target)
			}
			if tc.targetID != 0 && a.Target != tc.targetID {
				t.Fatalf("target = %x, want %x", a.Target, tc.targetID)
			}
			if tc.recovery != "" && a.Recovery != tc.recovery {
				t.Fatalf("recovery = %q, want %q", a.Recovery, tc.recovery)
			}
			if a.Blocked != tc.blocked {
				t.Fatalf("blocked = %v (%s), want %v", a.Blocked, a.Reason, tc.blocked)
			}
			if a.NeedsPerson != tc.person {
				t.Fatalf("needs person = %v (%s), want %v", a.NeedsPerson, a.Reason, tc.person)
			}
			if !strings.Contains(a.Reason, tc.reason) {
				t.Fatalf("reason %q does not contain %q", a.Reason, tc.reason)
			}
		})
	}
}
