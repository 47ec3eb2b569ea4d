package sim

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vetcd/vetcd/internal/plan"
)

// The replica actors, modeled on internal/replica (see the package doc):
// observe mirrors observe.go, pass mirrors Replica.step, tendRecord
// mirrors record.go's tendRecord, and each actor below lists the steps of
// its namesake in modes.go, one op per I/O.

// op is one step of an action in flight; an error ends the action, as a
// returned error ends the real actor's pass.
type op func(w *world, r *replica) error

// rebuildAfter is the replica's default (replica.go).
const rebuildAfter = time.Second

// maxHist is how many passes old a late observation can be.
const maxHist = 4

func (w *world) mapMembers(ms []mem, healthy bool) []plan.Member {
	out := make([]plan.Member, len(ms))
	for i, m := range ms {
		pm := plan.Member{ID: m.id, Ordinal: m.ord, IsLearner: m.learner, Started: m.started}
		if m.started {
			pm.Name = w.reps[m.ord].name
		}
		if healthy {
			if v := w.byMember(w.curCluster, m.id); v != nil && v.leader != 0 {
				pm.Healthy = true
				pm.HealthyFor = w.now.Sub(v.healthySince)
				pm.AppliedIndex = uint64(len(v.d.log))
			}
		}
		out[i] = pm
	}
	return out
}

// observe mirrors Replica.observe.
func (w *world) observe(r *replica) plan.ReplicaObservation {
	o := plan.ReplicaObservation{Ordinal: r.ord, RebuildAfter: rebuildAfter, Gone: make(map[int]bool, len(w.reps)), Now: w.now}
	o.Desired = w.desired
	o.Record = w.rec
	o.Local = w.observeLocal(r)
	if r.d != nil && r.d.memberID == o.Local.MemberID && r.d.clusterID == o.Local.ClusterID {
		o.Local.Generation = r.d.gen
	}
	if w.cfg.Mutation == MutationNoGenerationCheck {
		// A replica that never checks: its data always looks current.
		o.Local.Generation = w.rec.Generation
	}
	running := o.Local.Running
	var ords [8]bool
	for i := 0; i < w.desired; i++ {
		ords[i] = true
	}
	for _, m := range o.Local.Members {
		if m.Ordinal != plan.NoOrdinal {
			ords[m.Ordinal] = true
		}
	}
	ords[r.ord] = false
	for _, p := range w.reps {
		if ords[p.ord] {
			o.Gone[p.ord] = !p.proc
		}
	}
	below := running && plan.DesiredBelowQuorum(o.Local.Members, w.desired)
	if !below {
		r.belowSince = time.Time{}
	} else {
		if r.belowSince.IsZero() {
			r.belowSince = w.now
		}
		o.Local.BelowQuorumFor = w.now.Sub(r.belowSince)
	}
	if running && o.Local.Leader != 0 && !(below && o.Local.Leader == o.Local.MemberID) {
		return o
	}
	for _, p := range w.reps {
		if !ords[p.ord] {
			continue
		}
		peer := plan.Peer{Ordinal: p.ord}
		if p.proc && !p.frozen {
			peer.Reachable = true
			peer.HasData = p.d != nil
			if p.d != nil {
				peer.ClusterID, peer.MemberID, peer.AppliedIndex = p.d.clusterID, p.d.memberID, uint64(len(p.d.log))
			}
			if p.running && p.d != nil {
				peer.Running = true
				peer.AppliedStableFor = p.appliedStable(peer.AppliedIndex, w.now)
			}
		}
		o.Peers = append(o.Peers, peer)
	}
	// The first peer that answers a linearizable member list: one whose
	// member follows a leader (or leads).
	for _, p := range w.reps {
		if !ords[p.ord] || !p.proc {
			continue
		}
		if l := w.groupLeader(p); l != nil {
			w.curCluster = l.d.clusterID
			o.Cluster = plan.Cluster{Reachable: true, ClusterID: l.d.clusterID, Members: w.mapMembers(l.d.members, false)}
			break
		}
	}
	return o
}

// observeLocal mirrors Replica.observeLocal.
func (w *world) observeLocal(r *replica) plan.Local {
	if r.running && r.d != nil {
		d := r.d
		l := plan.Local{
			Data: plan.DataValid, Running: true,
			ClusterID: d.clusterID, MemberID: d.memberID, Leader: r.leader,
			AppliedIndex: uint64(len(d.log)), Revision: int64(len(d.log)),
			Members: w.mapMembers(d.members, false), RebuiltFrom: d.rebuiltFrom,
		}
		r.downSince = time.Time{}
		l.AppliedStableFor = r.appliedStable(l.AppliedIndex, w.now)
		if l.Leader == 0 {
			if r.leaderlessSince.IsZero() {
				r.leaderlessSince = w.now
			}
			l.LeaderlessFor = w.now.Sub(r.leaderlessSince)
		} else {
			r.leaderlessSince = time.Time{}
		}
		return l
	}
	if r.downSince.IsZero() {
		r.downSince = w.now
	}
	l := plan.Local{Data: plan.DataEmpty, DownFor: w.now.Sub(r.downSince)}
	if d := r.d; d != nil {
		l.Data = plan.DataValid
		l.ClusterID, l.MemberID = d.clusterID, d.memberID
		l.AppliedIndex, l.Revision = uint64(len(d.log)), int64(len(d.log))
	}
	return l
}

// pass runs the replica's next op, or a new pass of observe → decide → act
// (Replica.step). With late > 0 the replica acts on the observation it
// made late passes ago instead of a fresh one.
func (w *world) pass(r *replica, late int) {
	if !r.proc || r.frozen {
		return
	}
	if len(r.pending) > 0 {
		f := r.pending[0]
		r.pending = r.pending[1:]
		if err := f(w, r); err != nil {
			w.tracef("  replica %d: step failed: %v", r.ord, err)
			r.pending = nil
		}
		return
	}
	o := w.observe(r)
	s := snap{o: o, ver: w.recVer}
	if len(r.hist) == maxHist {
		copy(r.hist, r.hist[1:])
		r.hist = r.hist[:maxHist-1]
	}
	r.hist = append(r.hist, s)
	if late > 0 && late < len(r.hist) {
		// What others say ages (the record through an informer's cache,
		// the peers' agents, the live cluster, the topology); what the
		// replica reads of its own etcd and data dir is always fresh, as
		// its loop observes after its previous action finished.
		old := r.hist[len(r.hist)-1-late]
		w.tracef("  replica %d acts on others' state of %s ago (record v%d, now v%d)", r.ord, w.now.Sub(old.o.Now), old.ver, w.recVer)
		old.o.Local, old.o.Now = s.o.Local, s.o.Now
		s = old
	}
	if err := w.tendRecord(r, &s); err != nil {
		w.tracef("  replica %d: %v", r.ord, err)
		return
	}
	d := plan.ReplicaNext(s.o)
	if d.Mode != plan.Keep && (d.Mode != plan.Wait || w.cfg.Trace) {
		w.tracef("  replica %d: %s: %s", r.ord, d.Mode, d.Reason)
	}
	switch d.Mode {
	case plan.Restart:
		r.pending = append(r.pending, restartOp)
	case plan.Join:
		r.pending = w.join(r.pending, s.o.Cluster, s.o.Record.Generation)
	case plan.Rejoin:
		r.pending = append(r.pending, moveAsideOp)
		r.pending = w.join(r.pending, s.o.Cluster, s.o.Record.Generation)
	case plan.Bootstrap:
		r.pending = w.bootstrap(r.pending, s)
	case plan.Rebuild:
		r.pending = w.rebuild(r.pending, s)
	case plan.Halt:
		r.pending = append(r.pending, haltOp)
	}
	// The first step runs in this pass, as the real actor starts at once.
	if len(r.pending) > 0 {
		f := r.pending[0]
		r.pending = r.pending[1:]
		if err := f(w, r); err != nil {
			w.tracef("  replica %d: step failed: %v", r.ord, err)
			r.pending = nil
		}
	}
}

// tendRecord mirrors record.go's tendRecord.
func (w *world) tendRecord(r *replica, s *snap) error {
	if next, ok := plan.FinishClaim(s.o, r.name); ok {
		switch err := w.swap(s.ver, next, r.name+" (finish claim)"); {
		case errors.Is(err, errRecordChanged):
			return nil
		case err != nil:
			return fmt.Errorf("finish the %s claim: %w", s.o.Record.Claim.Kind, err)
		}
		s.o.Record, s.ver = next, w.recVer
	}
	if next, ok := plan.RaiseMaxRevision(s.o); ok {
		switch err := w.swap(s.ver, next, r.name+" (max revision)"); {
		case errors.Is(err, errRecordChanged):
		case err != nil:
			return fmt.Errorf("record the highest revision served: %w", err)
		}
	}
	if gen, ok := plan.MarkerGeneration(s.o); ok {
		if d := r.d; d != nil && d.memberID == s.o.Local.MemberID && d.clusterID == s.o.Local.ClusterID {
			d.gen = gen
			w.tracef("  replica %d: marked its data with generation %d", r.ord, gen)
		}
	}
	return nil
}

func restartOp(w *world, r *replica) error {
	if r.d == nil {
		return errors.New("restart: no data")
	}
	r.running = true
	w.tracef("  replica %d: etcd restarts on member %x", r.ord, r.d.memberID)
	return nil
}

func haltOp(w *world, r *replica) error {
	r.running, r.leads = false, false
	w.tracef("  replica %d: etcd stopped (halt)", r.ord)
	return nil
}

// moveAsideOp is rejoin's first step: stop etcd, move the data aside.
func moveAsideOp(w *world, r *replica) error {
	r.running, r.leads, r.d = false, false, nil
	w.tracef("  replica %d: data moved aside", r.ord)
	return nil
}

// join mirrors Replica.join: addSelf (stale self removed, learner added)
// through the live cluster, then start with empty data, then the marker.
func (w *world) join(ops []op, c plan.Cluster, gen uint64) []op {
	var self uint64
	var cid uint64
	var members []mem
	return append(ops,
		func(w *world, r *replica) error {
			ok := false
			for _, m := range c.Members {
				if m.Started && m.Ordinal != r.ord {
					ok = true
				}
			}
			if !ok {
				return errors.New("join: no started member to ask")
			}
			l := w.clusterLeader(c.ClusterID)
			if l == nil {
				return errors.New("join: add learner: no leader (etcdserver: request timed out)")
			}
			for _, m := range c.Members {
				if m.Ordinal != r.ord {
					continue
				}
				i, listed := l.d.listed(m.ID)
				if !m.Started {
					if listed {
						self, cid, members = m.ID, l.d.clusterID, slices.Clone(l.d.members)
						return nil
					}
					continue
				}
				if !listed {
					continue // ErrMemberNotFound: fine
				}
				if why := w.etcdRemoveRefusal(l, m.ID); why != "" {
					return fmt.Errorf("join: remove stale member: %s", why)
				}
				w.checkRemoval(l, m.ID, "join's stale-member removal")
				w.removeMember(l, i)
			}
			for _, m := range l.d.members {
				if m.learner {
					return errors.New("join: add learner: etcdserver: too many learner members in cluster")
				}
			}
			self, cid = w.newID(), l.d.clusterID
			l.d.members = append(l.d.members, mem{id: self, ord: r.ord, learner: true})
			l.d.log = append(l.d.log, w.newEntry())
			members = slices.Clone(l.d.members)
			w.tracef("  replica %d: added member %x as a learner", r.ord, self)
			w.settle()
			return nil
		},
		func(w *world, r *replica) error {
			r.running, r.leads = true, false
			r.d = &data{clusterID: cid, memberID: self, members: members}
			w.tracef("  replica %d: etcd starts as member %x of cluster %x", r.ord, self, cid)
			return nil
		},
		func(w *world, r *replica) error {
			if gen != 0 && r.d != nil && r.d.memberID == self {
				r.d.gen = gen
			}
			return nil
		})
}

// clusterLeader is the leader a client of cluster cid reaches.
func (w *world) clusterLeader(cid uint64) *replica {
	for _, l := range w.leaders() {
		if l.d.clusterID == cid {
			return l
		}
	}
	return nil
}

// bootstrap mirrors Replica.bootstrap: claim the founding, start, marker,
// record.
func (w *world) bootstrap(ops []op, s snap) []op {
	rec, ver := s.o.Record, s.ver
	var next plan.Record
	if c := rec.Claim; c == nil || c.Holder != s.o.Ordinal || c.Kind != plan.ClaimFound {
		ops = append(ops, func(w *world, r *replica) error {
			var err error
			rec, ver, err = w.claim(r, rec, ver, plan.Claim{Kind: plan.ClaimFound})
			return err
		})
	}
	return append(ops,
		func(w *world, r *replica) error {
			if r.d == nil {
				id, member := w.newID(), w.newID()
				r.d = &data{clusterID: id, memberID: member, members: []mem{{id: member, ord: r.ord, started: true}}}
			}
			// etcd ignores the new cluster's flags on a data dir that
			// holds a member: it restarts that member.
			id, member := r.d.clusterID, r.d.memberID
			r.running = true
			w.settle()
			next = plan.NextGeneration(rec, plan.ID(id), plan.ID(member), plan.Made{How: plan.OriginFounded, By: r.name, At: w.now})
			w.tracef("  replica %d: founded cluster %x with member %x", r.ord, id, member)
			return nil
		},
		func(w *world, r *replica) error {
			if r.d != nil && r.d.memberID == uint64(next.Members[0]) {
				r.d.gen = next.Generation
			}
			return nil
		},
		func(w *world, r *replica) error {
			if err := w.swap(ver, next, r.name+" (founded)"); err != nil {
				return fmt.Errorf("bootstrap: record the founded cluster: %w", err)
			}
			return nil
		})
}

// claim mirrors record.go's claim.
func (w *world) claim(r *replica, rec plan.Record, ver uint64, c plan.Claim) (plan.Record, uint64, error) {
	c.Holder, c.HolderName = r.ord, r.name
	if c.At.IsZero() {
		c.At = w.now
	}
	next := rec
	next.Claim = &c
	if err := w.swap(ver, next, r.name+" (claim "+string(c.Kind)+")"); err != nil {
		return rec, ver, fmt.Errorf("claim %s: %w", c.Kind, err)
	}
	return next, w.recVer, nil
}

// rebuild mirrors Replica.rebuild: claim (compare-and-swap), forced start,
// rebuild marker, generation marker, record the next generation.
func (w *world) rebuild(ops []op, s snap) []op {
	rec, ver := s.o.Record, s.ver
	local := s.o.Local
	fp := plan.Fingerprint(local.Members)
	var next plan.Record
	if c := rec.Claim; (c == nil || c.Kind != plan.ClaimRebuild || c.Holder != s.o.Ordinal) && w.cfg.Mutation != MutationSkipRebuildClaim {
		ops = append(ops, func(w *world, r *replica) error {
			var err error
			rec, ver, err = w.claim(r, rec, ver, plan.Claim{Kind: plan.ClaimRebuild, Member: plan.ID(local.MemberID), FromMembers: fp})
			if err != nil {
				return fmt.Errorf("rebuild: %w", err)
			}
			return nil
		})
	}
	return append(ops,
		func(w *world, r *replica) error {
			if r.d == nil || r.d.memberID != local.MemberID {
				return errors.New("rebuild: start etcd: data is not the member's")
			}
			w.forced(r, fp, s.o.Desired)
			return nil
		},
		func(w *world, r *replica) error {
			if r.d != nil && r.d.memberID == local.MemberID {
				r.d.rebuiltFrom = fp
			}
			next = plan.RebuiltRecord(rec, local, r.name, w.now)
			if r.d != nil && r.d.memberID == local.MemberID {
				r.d.gen = next.Generation
			}
			return nil
		},
		func(w *world, r *replica) error {
			if err := w.swap(ver, next, r.name+" (rebuilt)"); err != nil {
				return fmt.Errorf("rebuild: record generation %d: %w", next.Generation, err)
			}
			return nil
		})
}

// forced is etcd's ForceNewCluster on r's data: the cluster ID and the log
// stay, the member is the only voter, every other member is removed.
func (w *world) forced(r *replica, fromMembers string, desired int) {
	d := r.d
	key := fmt.Sprintf("%x/%s", d.clusterID, fromMembers)
	for _, k := range w.forcedFrom {
		if k == key {
			w.violate(4, "double rebuild: replica %d forces a new cluster from member list %s of cluster %x, already forced before", r.ord, fromMembers, d.clusterID)
		}
	}
	w.forcedFrom = append(w.forcedFrom, key)
	w.rebuilds++
	w.checkForcedLoss(r, desired)
	for _, m := range d.members {
		if m.id != d.memberID {
			w.removed = append(w.removed, m.id)
		}
	}
	d.members = []mem{{id: d.memberID, ord: r.ord, started: true}}
	d.log = append(d.log, w.newEntry())
	r.running, r.leads = true, false
	w.tracef("  replica %d: etcd force-new-cluster on member %x of cluster %x (applied %d)", r.ord, d.memberID, d.clusterID, len(d.log)-1)
	w.settle()
}

func (w *world) removeMember(l *replica, i int) {
	id := l.d.members[i].id
	l.d.members = slices.Delete(l.d.members, i, i+1)
	l.d.log = append(l.d.log, w.newEntry())
	w.removed = append(w.removed, id)
	w.tracef("  etcd: member %x removed by leader %x", id, l.d.memberID)
	w.settle()
}

// etcdRemoveRefusal is etcd's strict reconfiguration check of a voter's
// removal: the started, active voters left must be a quorum.
func (w *world) etcdRemoveRefusal(l *replica, id uint64) string {
	if !l.d.isVoter(id) {
		return ""
	}
	voters, active := 0, 0
	for _, m := range l.d.members {
		if m.learner || m.id == id {
			continue
		}
		voters++
		if v := w.byMember(l.d.clusterID, m.id); v != nil && v.leader == l.d.memberID && m.started {
			active++
		}
	}
	if active < plan.Quorum(voters) {
		return "etcdserver: unhealthy cluster"
	}
	return ""
}

// controller runs the leader's controller pass: plan.Next on the leader's
// view, then the action, as internal/cluster's Reconcile does.
func (w *world) controller() {
	for _, l := range w.reps {
		if !l.leads || !l.proc || l.frozen {
			continue
		}
		w.curCluster = l.d.clusterID
		o := plan.ClusterObservation{
			LocalID: l.d.memberID, LeaderID: l.d.memberID, Desired: w.desired,
			Members:           w.mapMembers(l.d.members, true),
			PreferLeaderAfter: 5 * time.Second, CatchUpSlack: plan.CatchUpSlack,
			Revision: int64(len(l.d.log)),
		}
		a := plan.Next(o)
		if a.Kind == plan.None {
			if w.cfg.Trace {
				w.tracef("  controller %d: none: %s", l.ord, a.Reason)
			}
			return
		}
		w.tracef("  controller %d: %s %x: %s", l.ord, a.Kind, a.Target, a.Reason)
		i, ok := l.d.listed(a.Target)
		if !ok {
			return
		}
		switch a.Kind {
		case plan.Promote:
			if v := w.byMember(l.d.clusterID, a.Target); v == nil || v.leader != l.d.memberID {
				w.tracef("  etcd: promote refused: learner not ready")
				return
			}
			l.d.members[i].learner = false
			l.d.log = append(l.d.log, w.newEntry())
			w.settle()
		case plan.Remove:
			w.checkRemoval(l, a.Target, "the controller's removal")
			if why := w.etcdRemoveRefusal(l, a.Target); why != "" {
				w.tracef("  etcd: remove refused: %s", why)
				return
			}
			w.removeMember(l, i)
		case plan.MoveLeader:
			if v := w.byMember(l.d.clusterID, a.Target); v != nil && v.leader == l.d.memberID && v.d.isVoter(a.Target) {
				l.leads, v.leads = false, true
				w.settle()
			}
		}
		return
	}
}
