package plan

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// ActionKind is a membership action of the leader's controller.
type ActionKind int

// Controller actions. One is taken per pass.
const (
	// None: nothing to do (or blocked: see Action.Blocked).
	None ActionKind = iota
	// Promote a caught-up learner to voter.
	Promote
	// Remove a member.
	Remove
	// MoveLeader hands leadership to Target.
	MoveLeader
	// Compact compacts the keyspace to Revision (NOSPACE recovery).
	Compact
	// Defrag defragments Target's backend (NOSPACE recovery).
	Defrag
	// Disarm disarms Alarm of member Target.
	Disarm
)

func (k ActionKind) String() string {
	switch k {
	case None:
		return "none"
	case Promote:
		return "promote"
	case Remove:
		return "remove"
	case MoveLeader:
		return "move-leader"
	case Compact:
		return "compact"
	case Defrag:
		return "defrag"
	case Disarm:
		return "disarm"
	}
	return fmt.Sprintf("ActionKind(%d)", int(k))
}

// Action is one decision of the controller.
type Action struct {
	Kind   ActionKind
	Target uint64
	// TargetName is the target member's name, for logs.
	TargetName string
	Reason     string
	// Blocked means an action is needed but a guard refused it; Reason
	// holds the guard's words.
	Blocked bool
	// Fingerprint is the member list the action was decided on. The actor
	// re-reads the list and refuses to act if it changed.
	Fingerprint string
	// Recovery is set when the action recovers from a failure; on a
	// blocked action, it names the failure whose recovery is held back
	// (ReasonCorrupt: a CORRUPT alarm stays unresolved).
	Recovery Reason
	// NeedsPerson marks a blocked action that vetcd will not resolve by
	// itself, whatever it observes next: only a person can (a cluster-wide
	// CORRUPT alarm, hashes with no majority).
	NeedsPerson bool
	// Alarm is the alarm to disarm (Disarm).
	Alarm string
	// Revision is the revision to compact to (Compact).
	Revision int64
}

// ClusterObservation is what the leader's controller decides on.
type ClusterObservation struct {
	LocalID  uint64
	LeaderID uint64
	// Desired is the topology's replica count.
	Desired int
	Members []Member
	// PreferLeaderAfter is how long the lowest-ordinal voter must have been
	// healthy before leadership is moved to it; 0 turns the preference off.
	PreferLeaderAfter time.Duration
	// CatchUpSlack is how many entries behind the leader a member may be
	// and still count as caught up.
	CatchUpSlack uint64

	// Alarms are the raised alarms, of members and of IDs no longer in
	// the member list.
	Alarms []Alarm
	// UnresponsiveAfter and LearnerStuckAfter are the recovery thresholds
	// (0 turns the rule off).
	UnresponsiveAfter, LearnerStuckAfter time.Duration
	// Recovery is the member replacement in flight, if any.
	Recovery *Recovery
	// RecoveryTimeout is how long an unfinished recovery blocks others.
	RecoveryTimeout time.Duration
	// Revision is the leader's current revision.
	Revision int64
	// NoSpaceCompacted says the controller already compacted to Revision
	// in this NOSPACE episode.
	NoSpaceCompacted bool
	// QuotaBytes is the backend quota (--quota-backend-bytes).
	QuotaBytes int64
	// Hashes is the controller's own comparison of the members' keyspace
	// hashes, gathered while a CORRUPT alarm is raised; nil when it was not
	// gathered. A CORRUPT alarm is acted on only through it (see
	// corruptAction): etcd's periodic check alarms whichever member differs
	// from the leader, which is the healthy one when the leader is corrupt.
	Hashes *HashCheck
}

func act(k ActionKind, m Member, fp, format string, args ...any) Action {
	return Action{Kind: k, Target: m.ID, TargetName: m.Name, Fingerprint: fp, Reason: fmt.Sprintf(format, args...)}
}

func blocked(fp, format string, args ...any) Action {
	return Action{Kind: None, Blocked: true, Fingerprint: fp, Reason: fmt.Sprintf(format, args...)}
}

func idle(fp, format string, args ...any) Action {
	return Action{Kind: None, Fingerprint: fp, Reason: fmt.Sprintf(format, args...)}
}

func surplus(m Member, desired int) bool { return m.Ordinal != NoOrdinal && m.Ordinal >= desired }

// Next decides the controller's one action for this pass. In order:
//
//  1. Only the leader acts, and nothing is done without a quorum of
//     healthy voters.
//  2. Alarms: CORRUPT and NOSPACE stop writes, so they come first (see
//     alarmAction).
//  3. Surplus learners are removed (highest ordinal first).
//  4. Surplus voters are removed, followers before the leader, dead before
//     live, highest ordinal first. Before the removal that leaves the
//     fewest voters, or whenever the leader itself is surplus, leadership
//     moves to the lowest-ordinal surviving voter, so the survivor holds
//     every committed entry. Each removal passes CheckRemoval.
//  5. Failing members are replaced, one recovery at a time (see
//     failingAction).
//  6. Desired learners that have caught up are promoted, lowest ordinal
//     first.
//  7. Leadership moves to the lowest-ordinal voter once it has been healthy
//     for PreferLeaderAfter and has caught up: then ordinal 0 holds every
//     committed entry, and a sudden loss of the others never costs an
//     acknowledged write in a rebuild.
//
// Members whose peer URL belongs to no replica are never touched.
func Next(o ClusterObservation) Action {
	fp := Fingerprint(o.Members)
	if o.LeaderID == 0 || o.LocalID != o.LeaderID {
		return idle(fp, "not the leader")
	}
	leader, ok := find(o.Members, o.LeaderID)
	if !ok {
		return idle(fp, "leader %x not in the member list", o.LeaderID)
	}
	voters, healthy := Voters(o.Members), 0
	for _, v := range voters {
		if v.Healthy {
			healthy++
		}
	}
	if healthy < Quorum(len(voters)) {
		return blocked(fp, "only %d of %d voters answer, below quorum %d: no membership change without quorum", healthy, len(voters), Quorum(len(voters)))
	}
	if a, ok := alarmAction(o, leader, fp); ok {
		return a
	}

	// 3. Surplus learners.
	var surplusLearners, surplusVoters []Member
	for _, m := range o.Members {
		switch {
		case !surplus(m, o.Desired):
		case m.IsLearner:
			surplusLearners = append(surplusLearners, m)
		default:
			surplusVoters = append(surplusVoters, m)
		}
	}
	if len(surplusLearners) > 0 {
		slices.SortFunc(surplusLearners, func(a, b Member) int { return cmp.Compare(b.Ordinal, a.Ordinal) })
		m := surplusLearners[0]
		return act(Remove, m, fp, "learner %s (ordinal %d) is surplus: desired %d", m.Name, m.Ordinal, o.Desired)
	}

	// 4. Surplus voters.
	if len(surplusVoters) > 0 {
		heir, hasHeir := lowestSurvivor(o, 0)
		leaderSurplus := surplus(leader, o.Desired)
		lastStep := len(surplusVoters) == 1
		if (leaderSurplus || lastStep) && hasHeir && heir.ID != leader.ID {
			if !caughtUp(heir, leader, o.CatchUpSlack) {
				return blocked(fp, "scale-down waits for %s to catch up (applied %d, leader %d) before it takes leadership", heir.Name, heir.AppliedIndex, leader.AppliedIndex)
			}
			return act(MoveLeader, heir, fp, "scale-down to %d: hand leadership to the lowest surviving ordinal %d before removing surplus voters", o.Desired, heir.Ordinal)
		}
		if leaderSurplus && !hasHeir {
			return blocked(fp, "the leader is surplus but no healthy desired voter can take over")
		}
		slices.SortFunc(surplusVoters, func(a, b Member) int {
			return cmp.Or(
				boolOrder(a.ID == o.LeaderID, b.ID == o.LeaderID),
				boolOrder(a.Healthy, b.Healthy),
				cmp.Compare(b.Ordinal, a.Ordinal),
			)
		})
		m := surplusVoters[0]
		if why := CheckRemoval(o.Members, m.ID); why != "" {
			return blocked(fp, "scale-down of %s refused: %s", m.Name, why)
		}
		return act(Remove, m, fp, "voter %s (ordinal %d) is surplus: desired %d", m.Name, m.Ordinal, o.Desired)
	}

	// 5. Failing members.
	if a, ok := failingAction(o, fp); ok {
		return a
	}

	// A join in flight (a desired member added but not started) is a
	// membership change in flight: wait for it before promoting anyone.
	for _, m := range o.Members {
		if !m.Started && !surplus(m, o.Desired) {
			return idle(fp, "join of %x (ordinal %d) in flight", m.ID, m.Ordinal)
		}
	}

	// 6. Promote caught-up learners.
	var learners []Member
	for _, m := range o.Members {
		if m.IsLearner && m.Ordinal != NoOrdinal && m.Ordinal < o.Desired {
			learners = append(learners, m)
		}
	}
	slices.SortFunc(learners, func(a, b Member) int { return cmp.Compare(a.Ordinal, b.Ordinal) })
	// One learner at a time: the lowest ordinal first.
	if len(learners) > 0 {
		m := learners[0]
		if !m.Healthy {
			return idle(fp, "learner %s does not answer yet", m.Name)
		}
		if !caughtUp(m, leader, o.CatchUpSlack) {
			return idle(fp, "learner %s catching up (applied %d, leader %d)", m.Name, m.AppliedIndex, leader.AppliedIndex)
		}
		return act(Promote, m, fp, "learner %s (ordinal %d) has caught up", m.Name, m.Ordinal)
	}

	// 7. Leadership preference.
	if o.PreferLeaderAfter > 0 {
		if heir, ok := lowestSurvivor(o, 0); ok && heir.ID != leader.ID &&
			heir.HealthyFor >= o.PreferLeaderAfter && caughtUp(heir, leader, o.CatchUpSlack) {
			return act(MoveLeader, heir, fp, "prefer the lowest ordinal %d as leader", heir.Ordinal)
		}
	}
	return idle(fp, "members match desired count %d", o.Desired)
}

// Heir is the member a replica that leaves on a scale-down hands its
// leadership and its own removal to: the healthy, started, desired voter
// with the lowest ordinal, the same member the controller prefers as
// leader, so that leadership moves once rather than twice.
func Heir(members []Member, desired int) (Member, bool) {
	return lowestSurvivor(ClusterObservation{Members: members, Desired: desired}, 0)
}

// lowestSurvivor is the healthy, started, desired voter with the lowest
// ordinal, other than exclude.
func lowestSurvivor(o ClusterObservation, exclude uint64) (Member, bool) {
	var best Member
	found := false
	for _, m := range o.Members {
		if m.ID == exclude || m.IsLearner || !m.Healthy || !m.Started || m.Ordinal == NoOrdinal || m.Ordinal >= o.Desired {
			continue
		}
		if !found || m.Ordinal < best.Ordinal {
			best, found = m, true
		}
	}
	return best, found
}

func caughtUp(m, leader Member, slack uint64) bool {
	return m.AppliedIndex+slack >= leader.AppliedIndex
}

// boolOrder sorts false before true.
func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
