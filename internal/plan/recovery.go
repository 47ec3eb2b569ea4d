package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
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

// HashCheck is every member's keyspace hash (etcd's HashKV) at one common
// revision, as the controller gathered it.
type HashCheck struct {
	// Revision is the revision every hash was taken at.
	Revision int64
	// Hashes are the answers, one per member that answered; a member that
	// did not answer is absent.
	Hashes []MemberHash
}

// MemberHash is one member's HashKV answer. Two hashes are comparable only
// when both members have compacted to the same revision.
type MemberHash struct {
	MemberID        uint64
	Hash            uint32
	CompactRevision int64
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
// CORRUPT: see corruptAction. A CORRUPT alarm of member 0 is etcd's
// cluster-wide verdict that no majority of hashes agrees: it stops every
// action and waits for a person, and is never disarmed here.
//
// NOSPACE: compact to the current revision, defragment every fragmented
// member one at a time (followers first, leader last), then disarm, but
// only when the live data fits the quota again; the database is never
// blown away.
func alarmAction(o ClusterObservation, leader Member, fp string) (Action, bool) {
	for _, a := range o.Alarms {
		if a.MemberID == 0 {
			// etcd's compaction hash check (server/etcdserver/corrupt.go
			// checkPeerHashes) raises CORRUPT for member 0 when no hash is
			// held by a majority: it cannot tell which data is good, and
			// neither can vetcd. Taking a side could throw away the good
			// copy; disarming would let the cluster serve divergent data.
			a := blocked(fp, "cluster-wide %s alarm (member 0): etcd found no majority of members whose hashes agree%s; "+
				"vetcd takes no action on this cluster until a person compares the members' data and disarms it",
				a.Name, hashSummary(o))
			a.Recovery, a.NeedsPerson = ReasonCorrupt, true
			return a, true
		}
	}
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
		return corruptAction(o, leader, fp), true
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

// corruptAction acts on CORRUPT alarms of members in the cluster. The alarm
// says that some member's data differs, not which: etcd's periodic check
// (corrupt.go PeriodicCheck) compares every follower with the leader and
// alarms the follower, so when the leader is the corrupt one it is a healthy
// follower that carries the alarm. Replacing that follower would resync it
// from the corrupt leader, and the next check would alarm the next one.
//
// So the verdict comes from the controller's own comparison of every
// member's hash at one revision (o.Hashes), never from the alarm alone:
//   - a member whose hash differs from a hash held by a majority of the
//     voters is replaced (leadership moves first if it leads, to a member
//     of the majority), whichever member carries the alarm;
//   - with no hash held by a majority, nothing is done: vetcd stops and
//     says so, and a person decides (NeedsPerson);
//   - while the hashes are not known for every voter, nothing is done:
//     the one that did not answer may be the one that differs;
//   - when every voter agrees: if a member whose data differed was just
//     replaced (a corrupt recovery in flight), the remaining alarm was a
//     false one and is disarmed; otherwise the alarmed member is replaced
//     (resyncing a member from a majority that agrees loses nothing), so a
//     CORRUPT alarm is never disarmed without a replacement.
func corruptAction(o ClusterObservation, leader Member, fp string) Action {
	alarmed := make([]string, 0, len(corruptAlarms(o.Alarms)))
	for _, a := range corruptAlarms(o.Alarms) {
		m, _ := find(o.Members, a.MemberID)
		alarmed = append(alarmed, nameOf(m))
	}
	on := strings.Join(alarmed, ", ")
	hold := func(needsPerson bool, format string, args ...any) Action {
		a := blocked(fp, format, args...)
		a.Recovery, a.NeedsPerson = ReasonCorrupt, needsPerson
		return a
	}
	if o.Hashes == nil {
		return hold(false, "CORRUPT alarm on %s: the members' hashes are not known yet; nobody is replaced before they are compared", on)
	}
	v := JudgeHashes(o.Members, o.Hashes)
	summary := hashSummary(o)
	if !v.Majority {
		if len(v.Unknown) > 0 {
			return hold(false, "CORRUPT alarm on %s: only %d of %d voters gave a comparable hash%s; waiting for the others, since a verdict needs a majority that agrees",
				on, v.Voters-len(v.Unknown), v.Voters, summary)
		}
		return hold(true, "CORRUPT alarm on %s: no majority of the %d voters' hashes agrees%s; vetcd will not pick a side, a person must decide which data to keep",
			on, v.Voters, summary)
	}
	if len(v.Differ) > 0 {
		var differ []Member
		for _, id := range v.Differ {
			m, _ := find(o.Members, id)
			differ = append(differ, m)
		}
		// The leader first (it sends its data to every joiner), then
		// learners (always safe to remove), then the lowest ordinal.
		slices.SortFunc(differ, func(a, b Member) int {
			return cmp.Or(boolOrder(a.ID != leader.ID, b.ID != leader.ID), boolOrder(!a.IsLearner, !b.IsLearner), cmp.Compare(a.Ordinal, b.Ordinal))
		})
		m := differ[0]
		why := fmt.Sprintf("the keyspace hash of %s differs from the one a majority of voters agrees on%s (alarm on %s)", nameOf(m), summary, on)
		if m.Ordinal == NoOrdinal {
			return hold(true, "%s, but it belongs to no known replica; not replacing it", why)
		}
		if m.ID == leader.ID {
			heir, ok := lowestSurvivor(ClusterObservation{Members: agreeing(o.Members, v), Desired: o.Desired}, m.ID)
			if !ok {
				return hold(false, "%s; it leads and no healthy voter of the majority can take over", why)
			}
			return act(MoveLeader, heir, fp, "%s: it leads, so hand leadership to %s of the majority before replacing it", why, heir.Name)
		}
		if a, busy := recoveryBusy(o, m.Ordinal, fp); busy {
			a.Recovery = ReasonCorrupt
			return a
		}
		if why2 := CheckRemoval(o.Members, m.ID); why2 != "" {
			return hold(false, "%s; replacing it refused: %s", why, why2)
		}
		a := act(Remove, m, fp, "%s: remove it so its replica rejoins with the majority's data", why)
		a.Recovery = ReasonCorrupt
		return a
	}
	if len(v.Unknown) > 0 {
		return hold(false, "CORRUPT alarm on %s: the voters that answered agree%s, but %d did not answer comparably and may be the one that differs; waiting",
			on, summary, len(v.Unknown))
	}
	first := corruptAlarms(o.Alarms)[0]
	if r := o.Recovery; r != nil && r.Reason == ReasonCorrupt {
		m, _ := find(o.Members, first.MemberID)
		return Action{Kind: Disarm, Target: first.MemberID, TargetName: m.Name, Alarm: AlarmCorrupt, Fingerprint: fp,
			Reason: fmt.Sprintf("member %x, whose data differed, has been replaced and every voter's hash now agrees%s: the CORRUPT alarm on %s was a false one; disarm it",
				r.MemberID, summary, on)}
	}
	m, _ := find(o.Members, first.MemberID)
	why := fmt.Sprintf("member %s has a CORRUPT alarm and every voter's hash agrees%s; its data is replaced rather than the alarm disarmed", nameOf(m), summary)
	if m.Ordinal == NoOrdinal {
		return hold(true, "%s, but it belongs to no known replica; not replacing it", why)
	}
	if m.ID == leader.ID {
		heir, ok := lowestSurvivor(o, m.ID)
		if !ok {
			return hold(false, "%s; it leads and no healthy voter can take over", why)
		}
		return act(MoveLeader, heir, fp, "%s: it leads, so hand leadership to %s first", why, heir.Name)
	}
	if a, busy := recoveryBusy(o, m.Ordinal, fp); busy {
		a.Recovery = ReasonCorrupt
		return a
	}
	if why2 := CheckRemoval(o.Members, m.ID); why2 != "" {
		return hold(false, "%s; replacing it refused: %s", why, why2)
	}
	a := act(Remove, m, fp, "%s: remove it so its replica rejoins with fresh data", why)
	a.Recovery = ReasonCorrupt
	return a
}

// corruptAlarms returns the CORRUPT alarms.
func corruptAlarms(as []Alarm) []Alarm {
	var out []Alarm
	for _, a := range as {
		if a.Name == AlarmCorrupt {
			out = append(out, a)
		}
	}
	return out
}

// agreeing returns the members whose hash is the majority's.
func agreeing(ms []Member, v HashVerdict) []Member {
	var out []Member
	for _, m := range ms {
		if slices.Contains(v.Agree, m.ID) {
			out = append(out, m)
		}
	}
	return out
}

// HashVerdict is what a comparison of the members' hashes says.
type HashVerdict struct {
	// Voters is the number of voters.
	Voters int
	// Majority is true when one hash is held by more than half of the
	// voters, at one compact revision.
	Majority bool
	// Agree are the members (voters and learners) holding the majority's
	// hash; empty without a majority.
	Agree []uint64
	// Differ are the members that answered with another hash at the same
	// compact revision; empty without a majority.
	Differ []uint64
	// Unknown are the voters without a comparable answer: silent, or
	// compacted to another revision than most.
	Unknown []uint64
}

// JudgeHashes compares the members' hashes. Hashes are compared only at
// one compact revision (HashKV covers the history after it, so members
// compacted differently differ without any corruption): the one most
// voters answered at. A learner's hash never counts toward the majority,
// which is one of voters, but a learner that differs from it is reported.
func JudgeHashes(ms []Member, hc *HashCheck) HashVerdict {
	v := HashVerdict{Voters: len(Voters(ms))}
	if hc == nil {
		for _, m := range Voters(ms) {
			v.Unknown = append(v.Unknown, m.ID)
		}
		return v
	}
	answer := map[uint64]MemberHash{}
	for _, h := range hc.Hashes {
		if _, ok := find(ms, h.MemberID); ok {
			answer[h.MemberID] = h
		}
	}
	compacts := map[int64]int{}
	for _, m := range Voters(ms) {
		if h, ok := answer[m.ID]; ok {
			compacts[h.CompactRevision]++
		}
	}
	var compact int64
	best := 0
	for rev, n := range compacts {
		if n > best || n == best && rev < compact {
			compact, best = rev, n
		}
	}
	votes := map[uint32]int{}
	for _, m := range Voters(ms) {
		h, ok := answer[m.ID]
		if !ok || h.CompactRevision != compact {
			v.Unknown = append(v.Unknown, m.ID)
			continue
		}
		votes[h.Hash]++
	}
	var majority uint32
	for h, n := range votes {
		if n >= Quorum(v.Voters) {
			majority, v.Majority = h, true
		}
	}
	if !v.Majority {
		return v
	}
	for _, m := range ms {
		h, ok := answer[m.ID]
		switch {
		case !ok || h.CompactRevision != compact:
		case h.Hash == majority:
			v.Agree = append(v.Agree, m.ID)
		default:
			v.Differ = append(v.Differ, m.ID)
		}
	}
	return v
}

// hashSummary tells, for reasons and logs, which member gave which hash:
// " at revision 500 (hash 00000007, compacted at 100: vetcd-0, vetcd-1; ...)".
func hashSummary(o ClusterObservation) string {
	if o.Hashes == nil {
		return ""
	}
	type key struct {
		hash    uint32
		compact int64
	}
	groups := map[key][]string{}
	var keys []key
	answered := map[uint64]bool{}
	for _, h := range o.Hashes.Hashes {
		m, ok := find(o.Members, h.MemberID)
		if !ok {
			continue
		}
		answered[m.ID] = true
		k := key{h.Hash, h.CompactRevision}
		if _, seen := groups[k]; !seen {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], nameOf(m))
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(len(groups[b]), len(groups[a])), cmp.Compare(a.compact, b.compact), cmp.Compare(a.hash, b.hash))
	})
	var parts []string
	for _, k := range keys {
		slices.Sort(groups[k])
		parts = append(parts, fmt.Sprintf("hash %08x, compacted at %d: %s", k.hash, k.compact, strings.Join(groups[k], ", ")))
	}
	var silent []string
	for _, m := range o.Members {
		if !answered[m.ID] {
			silent = append(silent, nameOf(m))
		}
	}
	if len(silent) > 0 {
		parts = append(parts, "no answer: "+strings.Join(silent, ", "))
	}
	return fmt.Sprintf(" at revision %d (%s)", o.Hashes.Revision, strings.Join(parts, "; "))
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
