package sim

import (
	"fmt"
	"slices"
	"time"

	"github.com/vetcd/vetcd/internal/plan"
)

// mem is one entry of a member list.
type mem struct {
	id      uint64
	ord     int // the replica whose peer URL it has
	learner bool
	started bool // published its name: its process ran
}

// data is a member's data dir and the markers beside it.
type data struct {
	clusterID, memberID uint64
	members             []mem
	// log holds entry IDs: client writes and membership changes, in the
	// order they were applied. The applied index is len(log).
	log []uint32
	// gen is the generation marker (0: none).
	gen uint64
	// rebuiltFrom is the rebuild marker in state "done" ("" if none).
	rebuiltFrom string
}

func (d *data) listed(id uint64) (int, bool) {
	for i, m := range d.members {
		if m.id == id {
			return i, true
		}
	}
	return -1, false
}

func (d *data) isVoter(id uint64) bool {
	i, ok := d.listed(id)
	return ok && !d.members[i].learner
}

func (d *data) voters() int {
	n := 0
	for _, m := range d.members {
		if !m.learner {
			n++
		}
	}
	return n
}

// replica is one replica: its process, its etcd member and the in-memory
// state of its loop (the clocks observe.go keeps).
type replica struct {
	ord    int
	name   string
	proc   bool // the process (pod) exists; Gone is !proc
	frozen bool // SIGSTOP: neither etcd, agent nor loop answer or act
	d      *data
	// running: etcd runs on d.
	running bool
	// leads: this member is its group's raft leader; leader is the
	// leader's member ID this member sees (0: none), set by settle.
	leads  bool
	leader uint64
	// pending are the remaining steps of the action in flight.
	pending []op
	// hist holds the last observations, newest last, for late ones.
	hist []snap

	leaderlessSince, belowSince, downSince, appliedSince time.Time
	appliedSeen                                          uint64
	healthySince                                         time.Time
}

// snap is an observation and the record version it read (the "raw" of a
// later compare-and-swap).
type snap struct {
	o   plan.ReplicaObservation
	ver uint64
}

func (r *replica) alive() bool { return r.proc && !r.frozen && r.running && r.d != nil }

// reset is a process restart: the loop's memory is gone, the data stays.
func (r *replica) reset() {
	r.running, r.leads, r.leader, r.frozen = false, false, 0, false
	r.pending, r.hist = nil, r.hist[:0]
	r.leaderlessSince, r.belowSince, r.downSince, r.appliedSince = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	r.appliedSeen, r.healthySince = 0, time.Time{}
}

// appliedStable mirrors Replica.appliedStable: how long the applied index
// has not moved, as this replica measures it.
func (r *replica) appliedStable(index uint64, now time.Time) time.Duration {
	if index != r.appliedSeen || r.appliedSince.IsZero() {
		r.appliedSeen, r.appliedSince = index, now
	}
	return now.Sub(r.appliedSince)
}

// byMember returns the alive replica whose member is id in cluster cid.
func (w *world) byMember(cid, id uint64) *replica {
	for _, r := range w.reps {
		if r.alive() && r.d.memberID == id && r.d.clusterID == cid {
			return r
		}
	}
	return nil
}

// supporters counts the voters of c's member list that would follow c: alive
// members of its cluster that list c (and, for an election, whose log is no
// longer than c's), not already following another leader.
func (w *world) supporters(c *replica, election bool, taken []bool) int {
	n := 0
	for _, m := range c.d.members {
		if m.learner {
			continue
		}
		v := w.byMember(c.d.clusterID, m.id)
		if v == nil || taken[v.ord] {
			continue
		}
		if _, ok := v.d.listed(c.d.memberID); !ok {
			continue
		}
		if election && len(v.d.log) > len(c.d.log) {
			continue
		}
		n++
	}
	return n
}

func (w *world) take(c *replica, taken []bool) {
	for _, m := range c.d.members {
		if v := w.byMember(c.d.clusterID, m.id); v != nil {
			if _, ok := v.d.listed(c.d.memberID); ok {
				taken[v.ord] = true
			}
		}
	}
}

// settle brings the etcd model to rest after an event: leaders keep or lose
// leadership (check-quorum), leaderless groups elect, every alive member of
// a leader's group takes its log and member list, and a removed member that
// reaches its old cluster stops.
func (w *world) settle() {
	taken := w.taken[:len(w.reps)]
	clear(taken)
	for _, r := range w.reps {
		if !r.leads {
			continue
		}
		if !r.alive() || !r.d.isVoter(r.d.memberID) || w.supporters(r, false, taken) < plan.Quorum(r.d.voters()) {
			r.leads = false
			continue
		}
		w.take(r, taken)
	}
	// Elections: the longest log first, then the lowest ordinal.
	tried := w.tried[:len(w.reps)]
	clear(tried)
	for {
		var best *replica
		for _, r := range w.reps {
			if r.leads || taken[r.ord] || tried[r.ord] || !r.alive() || !r.d.isVoter(r.d.memberID) {
				continue
			}
			if best == nil || len(r.d.log) > len(best.d.log) {
				best = r
			}
		}
		if best == nil {
			break
		}
		if w.supporters(best, true, taken) >= plan.Quorum(best.d.voters()) {
			best.leads = true
			w.take(best, taken)
			continue
		}
		tried[best.ord] = true // cannot win now; let the others try
	}
	for _, r := range w.reps {
		r.leader = 0
	}
	for _, l := range w.reps {
		if !l.leads {
			continue
		}
		l.leader = l.d.memberID
		for _, f := range w.reps {
			if f == l || !f.alive() || f.d.clusterID != l.d.clusterID || f.leads {
				continue
			}
			if _, ok := f.d.listed(l.d.memberID); !ok {
				continue
			}
			i, ok := l.d.listed(f.d.memberID)
			if !ok {
				if w.isRemoved(f.d.memberID) {
					// etcd: a removed member's peers answer "removed",
					// and it stops.
					f.running = false
					w.tracef("  etcd: member %x of replica %d was removed; it stops", f.d.memberID, f.ord)
				}
				continue
			}
			f.leader = l.d.memberID
			f.d.log = append(f.d.log[:0], l.d.log...)
			f.d.members = append(f.d.members[:0], l.d.members...)
			l.d.members[i].started = true
			f.d.members[i].started = true
		}
	}
	for _, r := range w.reps {
		healthy := r.alive() && r.leader != 0
		switch {
		case !healthy:
			r.healthySince = time.Time{}
		case r.healthySince.IsZero():
			r.healthySince = w.now
		}
	}
}

func (w *world) isRemoved(id uint64) bool { return slices.Contains(w.removed, id) }

func (w *world) leaders() []*replica {
	w.ls = w.ls[:0]
	for _, r := range w.reps {
		if r.leads {
			w.ls = append(w.ls, r)
		}
	}
	return w.ls
}

// groupLeader is the leader r follows (or r itself), nil if none.
func (w *world) groupLeader(r *replica) *replica {
	if !r.alive() || r.leader == 0 {
		return nil
	}
	for _, l := range w.reps {
		if l.leads && l.d.memberID == r.leader && l.d.clusterID == r.d.clusterID {
			return l
		}
	}
	return nil
}

// errRecordChanged mirrors replica.errRecordChanged: a compare-and-swap lost.
var errRecordChanged = fmt.Errorf("sim: the cluster record changed meanwhile")

// errRecordWrite is a record write that failed in transport.
var errRecordWrite = fmt.Errorf("sim: cluster record write failed")

// swap is the record's compare-and-swap against the version read. An armed
// fault makes it fail after it was applied, or lose it.
func (w *world) swap(ver uint64, next plan.Record, who string) error {
	lose := w.loseNext
	w.loseNext = 0
	if lose == loseLost {
		w.tracef("  record: write by %s lost", who)
		return errRecordWrite
	}
	if ver != w.recVer {
		return errRecordChanged
	}
	if next.Generation < w.rec.Generation {
		w.violate(5, "record generation goes back from %d to %d (written by %s)", w.rec.Generation, next.Generation, who)
	}
	if next.MaxRevision < w.rec.MaxRevision {
		w.violate(5, "record MaxRevision goes back from %d to %d (written by %s)", w.rec.MaxRevision, next.MaxRevision, who)
	}
	w.rec, w.recVer = next, w.recVer+1
	w.tracef("  record: v%d by %s: %s", w.recVer, who, recordString(next))
	if lose == loseApplied {
		w.tracef("  record: the write was applied but reported failed")
		return errRecordWrite
	}
	return nil
}

func recordString(r plan.Record) string {
	s := fmt.Sprintf("cluster %x gen %d members %v maxrev %d", uint64(r.ClusterID), r.Generation, r.Members, r.MaxRevision)
	if c := r.Claim; c != nil {
		s += fmt.Sprintf(" claim %s by %d", c.Kind, c.Holder)
	}
	return s
}
