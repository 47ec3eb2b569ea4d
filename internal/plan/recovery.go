package plan

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Alarm names, as etcd reports them.
const (
	AlarmNoSpace = "NOSPACE"
	AlarmCorrupt = "CORRUPT"
)

// Alarm is one raised etcd alarm.
type Alarm struct {
	MemberID uint64
	Name     string // AlarmNoSpace, AlarmCorrupt, ...
}

// Reason classifies a recovery, for logs and the vetcd_recoveries_total
// metric.
type Reason string

// Recovery reasons.
const (
	ReasonUnresponsive Reason = "unresponsive"
	ReasonCorrupt      Reason = "corrupt"
	ReasonLearnerStuck Reason = "learner-stuck"
	ReasonNoSpace      Reason = "nospace"
)

// Recovery is a member replacement in flight: its member was removed and
// its replica is expected to rejoin.
type Recovery struct {
	Ordinal  int
	MemberID uint64 // the removed member
	Reason   Reason
	// For is how long ago the member was removed.
	For time.Duration
}

// RecoveryDone reports whether the replica of an in-flight recovery is back
// as a healthy voter with a new identity, or the recovery timed out, or the
// replica is no longer desired.
func RecoveryDone(r Recovery, o ClusterObservation) bool {
	if r.Ordinal == NoOrdinal || r.Ordinal >= o.Desired || r.For >= o.RecoveryTimeout {
		return true
	}
	for _, m := range o.Members {
		if m.Ordinal == r.Ordinal && m.ID != r.MemberID && !m.IsLearner && m.Healthy {
			return true
		}
	}
	return false
}

// fragmented reports whether defragmenting m would give space back.
func fragmented(m Member) bool {
	free := m.DBSize - m.DBSizeInUse
	return m.Healthy && m.Started && free > max(m.DBSize/10, 1<<20)
}

// alarmAction handles raised alarms, before anything else: CORRUPT and
// NOSPACE both stop the cluster from taking writes.
//
// CORRUPT: the member named by the alarm is removed (its replica rejoins
// with fresh data, see ReplicaNext), and the alarm is disarmed once that
// member is out of the member list, never before. If it leads, leadership
// moves first.
//
// NOSPACE: compact to the current revision, defragment every fragmented
// member one at a time (followers first, leader last), then disarm, but
// only when the live data fits the quota again; the database is never
// blown away.
func alarmAction(o ClusterObservation, leader Member, fp string) (Action, bool) {
	var corrupt, nospace []Alarm
	for _, a := range o.Alarms {
		_, member := find(o.Members, a.MemberID)
		switch {
		case !member:
			// The alarmed member is gone (replaced or removed): its alarm
			// has nothing left to protect.
			return Action{Kind: Disarm, Target: a.MemberID, Alarm: a.Name, Fingerprint: fp,
				Reason: fmt.Sprintf("%s alarm of member %x, which is no longer in the cluster", a.Name, a.MemberID)}, true
		case a.Name == AlarmCorrupt:
			corrupt = append(corrupt, a)
		case a.Name == AlarmNoSpace:
			nospace = append(nospace, a)
		}
	}
	if len(corrupt) > 0 {
		m, _ := find(o.Members, corrupt[0].MemberID)
		if m.Ordinal == NoOrdinal {
			return blocked(fp, "member %x has a CORRUPT alarm but belongs to no known replica; not replacing it", m.ID), true
		}
		if m.ID == leader.ID {
			heir, ok := lowestSurvivor(o, m.ID)
			if !ok {
				return blocked(fp, "the leader %s has a CORRUPT alarm and no healthy voter can take over", m.Name), true
			}
			return act(MoveLeader, heir, fp, "the leader %s has a CORRUPT alarm: hand leadership to %s before replacing it", m.Name, heir.Name), true
		}
		if a, busy := recoveryBusy(o, m.Ordinal, fp); busy {
			return a, true
		}
		if why := CheckRemoval(o.Members, m.ID); why != "" {
			return blocked(fp, "replacing corrupt member %s refused: %s", m.Name, why), true
		}
		a := act(Remove, m, fp, "member %s has a CORRUPT alarm: its data cannot be trusted; remove it so its replica rejoins with fresh data", m.Name)
		a.Recovery = ReasonCorrupt
		return a, true
	}
	if len(nospace) > 0 {
		if !o.NoSpaceCompacted {
			return Action{Kind: Compact, Revision: o.Revision, Fingerprint: fp, Recovery: ReasonNoSpace,
				Reason: fmt.Sprintf("NOSPACE alarm: compact to the current revision %d to free old versions", o.Revision)}, true
		}
		var frag []Member
		for _, m := range o.Members {
			if fragmented(m) {
				frag = append(frag, m)
			}
		}
		if len(frag) > 0 {
			slices.SortFunc(frag, func(a, b Member) int {
				return cmp.Or(boolOrder(a.ID == leader.ID, b.ID == leader.ID), cmp.Compare(a.Ordinal, b.Ordinal))
			})
			m := frag[0]
			a := act(Defrag, m, fp, "NOSPACE alarm: defragment %s (%d of %d bytes free), one member at a time, leader last", m.Name, m.DBSize-m.DBSizeInUse, m.DBSize)
			a.Recovery = ReasonNoSpace
			return a, true
		}
		quota := o.QuotaBytes
		if leader.DBSizeInUse*10 >= quota*9 {
			return blocked(fp, "NOSPACE alarm: live data uses %d of the %d-byte quota even after compaction and defragmentation; raise --quota-backend-bytes or delete data", leader.DBSizeInUse, quota), true
		}
		a := nospace[0]
		return Action{Kind: Disarm, Target: a.MemberID, Alarm: a.Name, Fingerprint: fp, Recovery: ReasonNoSpace,
			Reason: fmt.Sprintf("NOSPACE alarm: space freed (%d of %d quota bytes in use); disarm", leader.DBSizeInUse, quota)}, true
	}
	return Action{}, false
}

// recoveryBusy refuses a new recovery while another one is in flight.
func recoveryBusy(o ClusterObservation, ordinal int, fp string) (Action, bool) {
	if r := o.Recovery; r != nil && r.Ordinal != ordinal && !RecoveryDone(*r, o) {
		return blocked(fp, "recovery of replica %d (%s) still in flight; one recovery at a time", r.Ordinal, r.Reason), true
	}
	return Action{}, false
}

// failingAction replaces a voter that stopped answering for longer than
// UnresponsiveAfter, or a learner that made no progress for
// LearnerStuckAfter: it is removed, and its replica, when it runs again,
// finds itself removed and rejoins with fresh data. A learner is judged by
// progress only (silence counts as none): one receiving a large snapshot
// may not answer for a while, and must not be cut off by the shorter
// unresponsive threshold.
func failingAction(o ClusterObservation, fp string) (Action, bool) {
	type candidate struct {
		m      Member
		reason Reason
		why    string
	}
	var cs []candidate
	for _, m := range o.Members {
		if m.Ordinal == NoOrdinal || m.ID == o.LeaderID {
			continue
		}
		switch {
		case m.IsLearner:
			if o.LearnerStuckAfter > 0 && m.StalledFor >= o.LearnerStuckAfter {
				cs = append(cs, candidate{m, ReasonLearnerStuck, fmt.Sprintf("learner %s made no progress for %s", nameOf(m), m.StalledFor.Round(time.Second))})
			}
		case !m.Healthy && o.UnresponsiveAfter > 0 && m.UnhealthyFor >= o.UnresponsiveAfter:
			cs = append(cs, candidate{m, ReasonUnresponsive, fmt.Sprintf("member %s has not answered for %s", nameOf(m), m.UnhealthyFor.Round(time.Second))})
		}
	}
	if len(cs) == 0 {
		return Action{}, false
	}
	// Learners first (always safe), then the longest silent.
	slices.SortFunc(cs, func(a, b candidate) int {
		return cmp.Or(boolOrder(!a.m.IsLearner, !b.m.IsLearner), cmp.Compare(b.m.UnhealthyFor, a.m.UnhealthyFor), cmp.Compare(a.m.Ordinal, b.m.Ordinal))
	})
	c := cs[0]
	if a, busy := recoveryBusy(o, c.m.Ordinal, fp); busy {
		return a, true
	}
	if why := CheckRemoval(o.Members, c.m.ID); why != "" {
		return blocked(fp, "%s, but replacing it is refused: %s", c.why, why), true
	}
	a := act(Remove, c.m, fp, "%s: remove it so its replica rejoins", c.why)
	a.Recovery = c.reason
	return a, true
}

func nameOf(m Member) string {
	if m.Name != "" {
		return m.Name
	}
	return fmt.Sprintf("%x (ordinal %d, not started)", m.ID, m.Ordinal)
}
