package plan

import "fmt"

// The leave sequence: a surplus replica takes its own member out of the
// cluster before its process exits, the way a StatefulSet scale-down wants
// it (the leader's controller does the same for a replica that could not).
// LeaveNext is called again after every step, on a fresh observation, until
// it says the member is out or the caller's deadline ends the sequence.

// LeaveStep is the next step of a leaving replica.
type LeaveStep int

// Leave steps, in the order they normally happen.
const (
	// LeaveDone: the member is out of the member list (removed by itself
	// or by the leader's controller).
	LeaveDone LeaveStep = iota
	// LeaveStuck: no desired voter answers to hand over to; the member
	// stays, and the controller or a rebuild finishes the scale-down.
	LeaveStuck
	// LeaveHandOver: this member leads; move leadership to the heir.
	LeaveHandOver
	// LeaveWaitHeir: wait until the heir has applied everything this
	// member committed (LeaveObservation.Target).
	LeaveWaitHeir
	// LeaveWaitGuard: removing itself now would leave fewer healthy voters
	// than a quorum; look again shortly (when every surplus replica leaves
	// at once, one removal makes the next one safe).
	LeaveWaitGuard
	// LeaveRemove: remove itself, through the heir.
	LeaveRemove
)

func (s LeaveStep) String() string {
	switch s {
	case LeaveDone:
		return "done"
	case LeaveStuck:
		return "stuck"
	case LeaveHandOver:
		return "hand-over"
	case LeaveWaitHeir:
		return "wait-heir"
	case LeaveWaitGuard:
		return "wait-guard"
	case LeaveRemove:
		return "remove"
	}
	return fmt.Sprintf("LeaveStep(%d)", int(s))
}

// LeaveObservation is what a leaving replica sees before each step.
type LeaveObservation struct {
	// SelfID is this member; Leader the leader it sees (0: none).
	SelfID, Leader uint64
	// Members is the member list in this member's own state, with
	// Healthy and AppliedIndex filled in for the members that answered
	// (this member counts as healthy).
	Members []Member
	Desired int
	// Heir is the heir chosen at an earlier step (0: none yet). It stays
	// chosen: the hand-over and the wait were for it.
	Heir uint64
	// HandOverTried says the hand-over was attempted, whether or not it
	// succeeded.
	HandOverTried bool
	// Committed is this member's commit index now.
	Committed uint64
	// Target is the commit index the heir must apply, as an earlier
	// LeaveNext fixed it (0: not yet).
	Target uint64
}

// LeaveDecision is the next step and who it concerns.
type LeaveDecision struct {
	Step LeaveStep
	Heir Member
	// Target is the commit index the heir must apply, to be passed back
	// in the next observation (0: not fixed yet).
	Target uint64
	Reason string
}

// LeaveNext decides a leaving replica's next step:
//
//  1. out of the member list: done;
//  2. the heir is the lowest-ordinal healthy desired voter (Heir), the
//     member the controller prefers as leader, so leadership moves once;
//     with none, the replica stays;
//  3. a leading voter hands leadership to the heir, once: if the hand-over
//     fails the sequence goes on, since the member is leaving anyway and
//     its removal makes raft elect a leader among the others;
//  4. a voter waits until the heir has applied everything it committed, so
//     the survivor holds every acknowledged write even if the rest of the
//     cluster disappears next: its commit index once it no longer leads or
//     tried to hand over (what it committed as leader is then final);
//  5. the removal must pass CheckRemoval;
//  6. remove itself.
func LeaveNext(o LeaveObservation) LeaveDecision {
	self, ok := find(o.Members, o.SelfID)
	if !ok {
		return LeaveDecision{Step: LeaveDone, Reason: "removed from the member list"}
	}
	heir, found := Member{}, false
	if o.Heir != 0 {
		heir, found = find(o.Members, o.Heir)
	}
	if !found {
		heir, found = Heir(o.Members, o.Desired)
	}
	if !found {
		return LeaveDecision{Step: LeaveStuck, Reason: "no desired voter answers; not leaving"}
	}
	if !self.IsLearner && !o.HandOverTried && o.Leader == o.SelfID {
		return LeaveDecision{Step: LeaveHandOver, Heir: heir, Reason: fmt.Sprintf("this member leads: hand leadership to %s first", heir.Name)}
	}
	target := o.Target
	if target == 0 && !self.IsLearner {
		target = o.Committed
	}
	if !self.IsLearner && (target == 0 || heir.AppliedIndex < target) {
		return LeaveDecision{Step: LeaveWaitHeir, Heir: heir, Target: target,
			Reason: fmt.Sprintf("waiting for %s to apply index %d (applied %d) before leaving", heir.Name, target, heir.AppliedIndex)}
	}
	if why := CheckRemoval(o.Members, o.SelfID); why != "" {
		return LeaveDecision{Step: LeaveWaitGuard, Heir: heir, Target: target, Reason: why}
	}
	return LeaveDecision{Step: LeaveRemove, Heir: heir, Target: target, Reason: fmt.Sprintf("surplus (desired %d): removing itself through %s", o.Desired, heir.Name)}
}
