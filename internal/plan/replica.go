package plan

import (
	"fmt"
	"slices"
	"time"
)

// DataState is what a replica finds in its own data dir.
type DataState int

// Data states, from the replica's inspection of its data dir.
const (
	// DataEmpty: no member data (first start, or the volume is gone).
	DataEmpty DataState = iota
	// DataValid: a WAL and a readable backend.
	DataValid
	// DataCorrupt: member data that etcd cannot start on (db missing or
	// unreadable, WAL unreadable).
	DataCorrupt
	// DataLeft: this member left the cluster on a scale-down (a tombstone
	// was written); its data must never start again with its old identity.
	DataLeft
)

func (d DataState) String() string {
	switch d {
	case DataEmpty:
		return "empty"
	case DataValid:
		return "valid"
	case DataCorrupt:
		return "corrupt"
	case DataLeft:
		return "left"
	}
	return fmt.Sprintf("DataState(%d)", int(d))
}

// Mode is what a replica does next with its etcd member.
type Mode int

// Replica modes. Restart, Join, Rejoin, Bootstrap and Rebuild are the start
// modes of DESIGN.md; Keep and Wait are the steady and the blocked states.
const (
	// Wait: do nothing now and look again; Reason says what is awaited.
	Wait Mode = iota
	// Keep: etcd runs and nothing needs to change.
	Keep
	// Restart: start etcd on the existing, valid member data.
	Restart
	// Join: add this replica as a learner and start with empty data.
	Join
	// Rejoin: move the data dir aside, then Join.
	Rejoin
	// Bootstrap: found a new one-member cluster. Only ordinal 0, only when
	// no cluster was ever founded here.
	Bootstrap
	// Rebuild: restart this member with ForceNewCluster, because a
	// scale-down left too few voters for a quorum. Dangerous: see Rebuild
	// rule in ReplicaNext.
	Rebuild
	// Halt: stop the etcd member and keep its data, because a restore is
	// pending (see restore.go).
	Halt
	// Restore: found a new cluster from the requested snapshot.
	Restore
	// Upgrade: the data is older than etcd 3.6 (see storageGate); restore
	// it by snapshot into a fresh data dir, keep the old one aside, and
	// found the cluster from it. Ordinal 0 only.
	Upgrade
)

func (m Mode) String() string {
	switch m {
	case Wait:
		return "wait"
	case Keep:
		return "keep"
	case Restart:
		return "restart"
	case Join:
		return "join"
	case Rejoin:
		return "rejoin"
	case Bootstrap:
		return "bootstrap"
	case Rebuild:
		return "rebuild"
	case Halt:
		return "halt"
	case Restore:
		return "restore"
	case Upgrade:
		return "upgrade"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Local is the replica's view of itself.
type Local struct {
	Data DataState
	// DataProblem says why the data is corrupt (DataCorrupt only).
	DataProblem string
	// ClusterID and MemberID come from the data (DataValid) or the
	// running server.
	ClusterID, MemberID uint64
	// Running means etcd runs on this data now.
	Running bool
	// Leader is the leader the running member sees (0: none).
	Leader uint64
	// LeaderlessFor is how long the running member has seen no leader.
	LeaderlessFor time.Duration
	// BelowQuorumFor is how long the member list the running member holds
	// has had fewer desired voters than a quorum (DesiredBelowQuorum; 0
	// when it has not).
	BelowQuorumFor time.Duration
	// AppliedStableFor is how long the running member's applied index has
	// not moved.
	AppliedStableFor time.Duration
	// Members is the member list held in the running member's own state,
	// mapped to ordinals. It needs no quorum to read.
	Members []Member
	// AppliedIndex is the running member's applied index.
	AppliedIndex uint64
	// Revision is the newest revision in the data, or the one the running
	// member serves.
	Revision int64
	// CompactRevision is the data's last compaction (etcd down only).
	CompactRevision int64
	// Generation is the cluster generation this member's data belongs to,
	// from the marker written when the member joined, founded, rebuilt or
	// restored (0: no marker for this member).
	Generation uint64
	// RebuiltFrom is the Fingerprint of the member list this member was
	// already force-rebuilt from ("" if never): a rebuild happens once.
	RebuiltFrom string
	// StartFailures counts consecutive failed starts of etcd on this data,
	// and StartError is the last one's error (e.g. etcd's initial
	// corruption check finding the data inconsistent with its peers).
	StartFailures int
	StartError    string
	// DataLocked means etcd cannot be started on this data in this
	// process any more: a failed start left its WAL locked.
	DataLocked bool
	// Storage is the storage version of valid data etcd does not run on,
	// for the upgrade gate (storageGate).
	Storage Storage
	// DownFor is how long this replica has had no running etcd (0 while
	// etcd runs).
	DownFor time.Duration
}

// MaxStartFailures is how many consecutive failed starts on the same data
// make a replica treat that data as corrupt.
const MaxStartFailures = 3

// RebuildSettle is how long a survivor's applied index must stay put before
// it is compared with the others' to pick the one that rebuilds.
const RebuildSettle = 2 * time.Second

// VerifyWait bounds how long a replica with valid data waits for the live
// cluster to answer when peers of its cluster run and could form a quorum
// without it, so that its data is checked against them (Unverifiable)
// before etcd serves it. After that it restarts unchecked, as etcd would.
const VerifyWait = 30 * time.Second

// Peer is what another replica's agent endpoint reported.
type Peer struct {
	Ordinal   int
	Reachable bool
	HasData   bool
	ClusterID uint64
	MemberID  uint64
	// AppliedIndex is the peer's applied index (from its running member or
	// from its data dir).
	AppliedIndex uint64
	// Running means the peer's etcd member runs.
	Running bool
	// AppliedStableFor is how long a running peer's applied index has not
	// moved, as the peer measured it (0 if it still moves or the peer did
	// not say). A rebuild compares indices only once both sides settled.
	AppliedStableFor time.Duration
}

// Cluster is the live cluster as seen through a member that has quorum (a
// linearizable member list succeeded).
type Cluster struct {
	Reachable bool
	ClusterID uint64
	Members   []Member
	// Unverifiable says why etcd's start-up corruption check could not
	// compare this replica's data with any peer's ("" if it can, or if
	// that could not be found out). etcd compares hashes at the data's
	// revision only with a peer that still has that revision and has
	// compacted to the same revision; otherwise its check passes without
	// comparing, and damaged data would be served. It is looked up only
	// for valid data that etcd does not run on.
	Unverifiable string
}

// ReplicaObservation is everything ReplicaNext decides on.
type ReplicaObservation struct {
	Ordinal int
	// Desired is the topology's replica count.
	Desired int
	Local   Local
	// Peers are the other replicas the topology knows of.
	Peers []Peer
	// Cluster is the live cluster, if one answered.
	Cluster Cluster
	// Record is the cluster record (record.go): the bootstrap guard, the
	// current generation every replica's data is checked against before
	// it serves, and the exclusive claim in flight.
	Record Record
	// Now is the time of the observation; only claims' ages are measured
	// against it.
	Now time.Time
	// Gone holds, per ordinal, whether that replica is confirmed not
	// running (process exited, pod deleted).
	Gone map[int]bool
	// RebuildAfter is how long a running member must see no leader before
	// a rebuild is considered. It must exceed an election timeout, so a
	// rebuild never races an election.
	RebuildAfter time.Duration
}

// ReplicaDecision is what the replica does next and why.
type ReplicaDecision struct {
	Mode   Mode
	Reason string
}

func decide(m Mode, format string, args ...any) ReplicaDecision {
	return ReplicaDecision{Mode: m, Reason: fmt.Sprintf(format, args...)}
}

// ReplicaNext decides a replica's next step from its own data, its peers'
// agents and the live cluster. The rules, in DESIGN.md's words:
//
//   - restart: valid data and still a member.
//   - join: empty data and a cluster exists.
//   - rejoin: data exists but the cluster removed this member, the data
//     belongs to another cluster, the member left on a scale-down, or the
//     data is corrupt, and a cluster with quorum is there to join.
//   - bootstrap: ordinal 0, empty data, no peer holds data and no cluster
//     record exists. Never beside a live cluster.
//   - rebuild: see rebuildCheck.
//   - halt and restore: a restore requested in the cluster record stops
//     every member, and the requester founds the new cluster from the
//     snapshot (see restore.go). Valid data of a cluster other than the
//     one the record names never restarts: it waits to rejoin.
//
// A replica whose ordinal is at or above the desired count never joins: it
// is on its way out.
func ReplicaNext(o ReplicaObservation) ReplicaDecision {
	rec := o.Record
	if cl := rec.Claim; cl != nil {
		switch {
		case cl.Kind == ClaimRestore:
			return restoreNext(o, *cl)
		case cl.Kind == ClaimRebuild && cl.Holder != o.Ordinal && !claimStale(o, *cl):
			if o.Local.Running && o.Local.Leader != 0 {
				return decide(Keep, "running; replica %d holds a rebuild claim", cl.Holder)
			}
			return decide(Wait, "replica %d holds the rebuild claim (since %s); only it acts until it finishes", cl.Holder, cl.At.UTC().Format(time.RFC3339))
		}
	}
	surplus := o.Ordinal >= o.Desired
	c := o.Cluster
	switch o.Local.Data {
	case DataValid:
		if !o.Local.Running {
			if d, ok := storageGate(o); ok {
				return d
			}
		}
		switch v, _ := GenerationVerdict(rec, o.Local.ClusterID, o.Local.MemberID, o.Local.Generation); v {
		case Superseded:
			return supersededNext(o)
		case OtherCluster:
			if o.Local.Running {
				return decide(Halt, "this member runs data of cluster %x, but the record names cluster %x: stopping it so that the old cluster never serves beside the recorded one", o.Local.ClusterID, rec.ClusterID)
			}
			if !c.Reachable {
				// The cluster was founded anew (a restore) since this data
				// was written: starting it would bring the old cluster back.
				return decide(Wait, "data belongs to cluster %x, but cluster %x was founded since; waiting for it to answer to rejoin, keeping the data", o.Local.ClusterID, rec.ClusterID)
			}
		}
		if c.Reachable && c.ClusterID != o.Local.ClusterID && rec.Founded() && uint64(rec.ClusterID) == o.Local.ClusterID {
			// Finding 7: this data is of the recorded cluster; whatever
			// answers instead was founded by mistake and must not take
			// the data's place.
			return decide(Wait, "data belongs to the recorded cluster %x, but cluster %x answers; never rejoining a cluster the record does not name, keeping the data", o.Local.ClusterID, c.ClusterID)
		}
		if c.Reachable && c.ClusterID != o.Local.ClusterID {
			if surplus {
				return decide(Wait, "data belongs to cluster %x, the live cluster is %x; surplus replica, not rejoining", o.Local.ClusterID, c.ClusterID)
			}
			return decide(Rejoin, "data belongs to cluster %x, the live cluster is %x", o.Local.ClusterID, c.ClusterID)
		}
		if c.Reachable {
			if _, ok := find(c.Members, o.Local.MemberID); !ok {
				if surplus {
					return decide(Wait, "member %x was removed from the cluster; surplus replica, not rejoining", o.Local.MemberID)
				}
				return decide(Rejoin, "member %x was removed from the cluster", o.Local.MemberID)
			}
		}
		if c.Reachable && c.Unverifiable != "" && !o.Local.Running {
			// etcd's start-up corruption check would pass without
			// comparing anything, and damaged data would be served.
			if surplus {
				return decide(Wait, "data at revision %d cannot be verified (%s); surplus replica, not rejoining", o.Local.Revision, c.Unverifiable)
			}
			return decide(Rejoin, "data at revision %d cannot be verified by etcd's start-up check (%s), so it is replaced by a fresh copy", o.Local.Revision, c.Unverifiable)
		}
		if !o.Local.Running && (o.Local.DataLocked || o.Local.StartFailures >= MaxStartFailures) {
			switch {
			case c.Reachable && !surplus:
				return decide(Rejoin, "etcd failed to start on this data %d times (%s)", o.Local.StartFailures, o.Local.StartError)
			case o.Local.DataLocked:
				return decide(Wait, "etcd failed to start on this data (%s) and left it locked; waiting for a cluster with quorum to rejoin, keeping the data", o.Local.StartError)
			}
		}
		if !o.Local.Running && !c.Reachable && o.Local.DownFor < VerifyWait && peersHoldQuorum(o) {
			// The peers are about to answer (an election, most likely):
			// restarting now would skip the check of the data against
			// them, and etcd's own start-up check passes when it cannot
			// compare.
			return decide(Wait, "valid data of member %x; peers of its cluster run and can form a quorum without it: waiting up to %s for the cluster to answer, to check the data against it before serving it", o.Local.MemberID, VerifyWait)
		}
		if !o.Local.Running {
			return decide(Restart, "valid data of member %x", o.Local.MemberID)
		}
		if d, ok := rebuildCheck(o); ok {
			return d
		} else if d.Reason != "" {
			return d
		}
		return decide(Keep, "running")
	case DataLeft:
		if surplus {
			return decide(Wait, "this replica left the cluster on a scale-down and is not desired")
		}
		if c.Reachable {
			return decide(Rejoin, "this replica left the cluster on a scale-down and is desired again")
		}
		return decide(Wait, "this replica left the cluster; waiting for a cluster with quorum to join")
	case DataCorrupt:
		if surplus {
			return decide(Wait, "data is corrupt (%s); surplus replica, not rejoining", o.Local.DataProblem)
		}
		if c.Reachable {
			return decide(Rejoin, "data is corrupt: %s", o.Local.DataProblem)
		}
		return decide(Wait, "data is corrupt (%s) and no cluster with quorum is reachable; keeping the data", o.Local.DataProblem)
	}

	// DataEmpty.
	if surplus {
		return decide(Wait, "no data and ordinal %d is not desired (desired %d)", o.Ordinal, o.Desired)
	}
	if c.Reachable {
		switch {
		case rec.Founded() && c.ClusterID != uint64(rec.ClusterID):
			return decide(Wait, "no data; cluster %x answers, but the record names cluster %x; never joining a cluster the record does not name", c.ClusterID, rec.ClusterID)
		case !rec.Founded() && rec.Claim != nil && rec.Claim.Kind == ClaimFound:
			// Finding 7: until the founder has recorded its cluster, a
			// replica that joined it could later be lost to a second
			// founding.
			return decide(Wait, "no data; cluster %x answers, but replica %d has not recorded its founding yet; waiting for the record before joining", c.ClusterID, rec.Claim.Holder)
		}
		return decide(Join, "no data; cluster %x is live", c.ClusterID)
	}
	for _, p := range o.Peers {
		if p.Reachable && p.HasData {
			return decide(Wait, "no data, and replica %d holds data of cluster %x but no quorum answers; never founding a second cluster", p.Ordinal, p.ClusterID)
		}
	}
	if rec.Founded() || rec.Generation > 0 {
		return decide(Wait, "no data, and cluster %x was founded here (generation %d) but no member answers; never founding a second cluster (if every replica lost its data, restore a snapshot)", rec.ClusterID, rec.Generation)
	}
	if o.Ordinal != 0 {
		return decide(Wait, "no cluster yet; waiting for ordinal 0 to found it")
	}
	if rec.Claim != nil && rec.Claim.Holder != o.Ordinal {
		return decide(Wait, "replica %d holds a %s claim; not founding beside it", rec.Claim.Holder, rec.Claim.Kind)
	}
	if rec.Claim != nil {
		return decide(Bootstrap, "no data, no peer holds data, and this replica's founding never started etcd: founding again")
	}
	return decide(Bootstrap, "no data, no cluster record, no peer holds data")
}

// rebuildCheck decides whether this running, leaderless member must rebuild
// the cluster alone with ForceNewCluster. All of these must hold:
//
//  1. it has seen no leader for RebuildAfter, or it leads (or led) and its
//     member list has had too few desired voters for RebuildAfter;
//  2. it is a voter;
//  3. the voters whose replicas are desired are fewer than a quorum of all
//     voters (the scale-down broke quorum);
//  4. every other voter is confirmed gone (a surplus replica that may still
//     run could hold newer entries, or form a quorum of its own);
//  5. every other desired voter's agent answered, for the same cluster, and
//     this member has the highest applied index (ties: lowest ordinal), so
//     the survivor that holds the most committed entries rebuilds. The
//     indices are compared only once they have stopped moving, this
//     member's and every running peer's (RebuildSettle): with no quorum
//     nothing new commits, so settled indices are final, and every
//     survivor compares the same numbers and picks the same one;
//  6. it was not already rebuilt from this very member list.
//
// It returns ok=false with a Wait decision when a rebuild is needed but
// blocked, and ok=false with an empty decision when none is needed.
func rebuildCheck(o ReplicaObservation) (ReplicaDecision, bool) {
	l := o.Local
	switch {
	case l.Leader == 0 && (l.LeaderlessFor >= o.RebuildAfter || l.BelowQuorumFor >= o.RebuildAfter):
	case l.Leader != 0 && l.Leader == l.MemberID && l.BelowQuorumFor >= o.RebuildAfter:
		// Still leader, or just stepped down: every other voter is
		// confirmed gone (checked below), so nothing more can commit and
		// no election can succeed; there is no need to wait for raft's
		// check-quorum to step it down (about two election timeouts), nor
		// an election timeout more after that.
	default:
		return ReplicaDecision{}, false
	}
	voters := Voters(l.Members)
	self, ok := find(voters, l.MemberID)
	if !ok {
		return ReplicaDecision{}, false
	}
	var desired, other []Member
	for _, v := range voters {
		if v.Ordinal != NoOrdinal && v.Ordinal < o.Desired {
			desired = append(desired, v)
		} else {
			other = append(other, v)
		}
	}
	if len(desired) >= Quorum(len(voters)) {
		// Quorum can come back from desired replicas: wait for them.
		return ReplicaDecision{}, false
	}
	for _, v := range other {
		if v.Ordinal == NoOrdinal {
			return decide(Wait, "quorum lost, but voter %x belongs to no known replica; not rebuilding", v.ID), false
		}
		if !o.Gone[v.Ordinal] {
			return decide(Wait, "quorum lost (%d of %d voters desired); waiting for surplus replica %d to be gone before rebuilding", len(desired), len(voters), v.Ordinal), false
		}
	}
	if l.AppliedStableFor < RebuildSettle && len(desired) > 1 {
		// Right after quorum loss a member still applies what was
		// committed: two survivors comparing indices that still move
		// can each see itself ahead, and both rebuild (chaos finding 6).
		// A lone desired voter has no one to compare with, and
		// ForceNewCluster keeps what it committed either way: it does
		// not wait (abrupt 3→1 is RebuildSettle faster).
		return decide(Wait, "quorum lost; waiting for the applied index (%d) to settle before comparing it with the other survivors'", l.AppliedIndex), false
	}
	best := self
	bestIndex := l.AppliedIndex
	for _, v := range desired {
		if v.ID == self.ID {
			continue
		}
		i := slices.IndexFunc(o.Peers, func(p Peer) bool { return p.Ordinal == v.Ordinal })
		if i < 0 || !o.Peers[i].Reachable {
			return decide(Wait, "quorum lost; waiting for replica %d's agent to compare progress before rebuilding", v.Ordinal), false
		}
		p := o.Peers[i]
		if p.ClusterID != l.ClusterID || p.MemberID != v.ID {
			return decide(Wait, "quorum lost; replica %d reports member %x of cluster %x, expected member %x; not rebuilding", v.Ordinal, p.MemberID, p.ClusterID, v.ID), false
		}
		if p.Running && p.AppliedStableFor < RebuildSettle {
			// The peer's index as its agent reported it may be behind
			// what it will have applied: compare final indices only, so
			// that every survivor picks the same one.
			return decide(Wait, "quorum lost; waiting for replica %d's applied index (%d) to settle before comparing it with this member's", v.Ordinal, p.AppliedIndex), false
		}
		if p.AppliedIndex > bestIndex || (p.AppliedIndex == bestIndex && v.Ordinal < best.Ordinal) {
			best, bestIndex = v, p.AppliedIndex
		}
	}
	if best.ID != self.ID {
		return decide(Wait, "quorum lost; replica %d (applied %d) is the most up to date and rebuilds", best.Ordinal, bestIndex), false
	}
	fp := Fingerprint(l.Members)
	if l.RebuiltFrom == fp {
		return decide(Wait, "quorum lost, but this member was already rebuilt from member list %s; not forcing again", fp), false
	}
	return decide(Rebuild, "desired %d keeps %d of %d voters, below quorum %d; surplus replicas are gone; this member has the highest applied index %d",
		o.Desired, len(desired), len(voters), Quorum(len(voters)), l.AppliedIndex), true
}

// DesiredBelowQuorum reports whether the voters in members whose replicas
// are desired are fewer than a quorum of all voters: only then can a
// rebuild be due.
func DesiredBelowQuorum(members []Member, desired int) bool {
	voters := Voters(members)
	n := 0
	for _, v := range voters {
		if v.Ordinal != NoOrdinal && v.Ordinal < desired {
			n++
		}
	}
	return len(voters) > 0 && n < Quorum(len(voters))
}

// peersHoldQuorum reports whether the desired peers running etcd on this
// replica's cluster are a quorum of the desired replicas by themselves.
func peersHoldQuorum(o ReplicaObservation) bool {
	n := 0
	for _, p := range o.Peers {
		if p.Running && p.ClusterID == o.Local.ClusterID && p.Ordinal != o.Ordinal && p.Ordinal < o.Desired {
			n++
		}
	}
	return n >= Quorum(o.Desired)
}

// supersededNext decides for data of a generation that a rebuild or restore
// replaced (GenerationVerdict): it never serves again. A running member
// stops; stopped data is moved aside when the current cluster answers (the
// replica rejoins it as a new member), and kept until then.
func supersededNext(o ReplicaObservation) ReplicaDecision {
	l, rec := o.Local, o.Record
	what := fmt.Sprintf("data of member %x is of generation %d of cluster %x, superseded by generation %d (%s)",
		l.MemberID, l.Generation, l.ClusterID, rec.Generation, madeHow(rec))
	switch {
	case l.Running:
		return decide(Halt, "%s: stopping it so that it never serves again", what)
	case o.Ordinal >= o.Desired:
		return decide(Wait, "%s; surplus replica, not rejoining", what)
	case o.Cluster.Reachable && o.Cluster.ClusterID == uint64(rec.ClusterID):
		return decide(Rejoin, "%s: rejoining the current generation with fresh data", what)
	}
	return decide(Wait, "%s; waiting for the current cluster to answer to rejoin it, keeping the data", what)
}

func madeHow(rec Record) string {
	if rec.Made == nil {
		return "unknown"
	}
	if rec.Made.By != "" {
		return string(rec.Made.How) + " by " + rec.Made.By
	}
	return string(rec.Made.How)
}

// claimStale applies ClaimStale to the observation's view of the holder.
func claimStale(o ReplicaObservation, c Claim) bool {
	var holder Peer
	for _, p := range o.Peers {
		if p.Ordinal == c.Holder {
			holder = p
		}
	}
	return ClaimStale(c, holder, o.Gone[c.Holder], o.Now)
}

// FinishClaim returns the record that completes or releases this replica's
// own claim, and true, when the claim's work is done or can no longer
// happen:
//
//   - found: etcd runs on the founded cluster; the record names it as
//     generation 1 with this member.
//   - rebuild: the forced start ran (this member is the only voter of the
//     claimed member's cluster); the record starts the next generation
//     with this member. If instead a leader came back with other voters,
//     the rebuild is no longer needed and the claim is released.
//
// A restore claim is completed by the restore itself, which knows the
// snapshot's revision and bump.
func FinishClaim(o ReplicaObservation, name string) (Record, bool) {
	rec, l := o.Record, o.Local
	c := rec.Claim
	if c == nil || c.Holder != o.Ordinal || !l.Running {
		return rec, false
	}
	switch c.Kind {
	case ClaimFound:
		if l.Leader == 0 {
			return rec, false
		}
		return NextGeneration(rec, ID(l.ClusterID), ID(l.MemberID), Made{How: OriginFounded, By: name, At: o.Now}), true
	case ClaimRebuild:
		voters := Voters(l.Members)
		if l.MemberID == uint64(c.Member) && len(voters) == 1 && voters[0].ID == l.MemberID && l.Leader == l.MemberID {
			return RebuiltRecord(rec, l, name, o.Now), true
		}
		if l.Leader != 0 && len(voters) > 1 {
			next := rec
			next.Claim = nil
			return next, true // quorum came back: nothing to rebuild
		}
	}
	return rec, false
}

// RebuiltRecord is the record once member l, forced to start alone, leads
// the next generation of its cluster (the cluster ID is kept by
// ForceNewCluster), with the applied index it was rebuilt from.
func RebuiltRecord(rec Record, l Local, name string, now time.Time) Record {
	return NextGeneration(rec, ID(l.ClusterID), ID(l.MemberID),
		Made{How: OriginRebuilt, By: name, At: now, FromMember: ID(l.MemberID), AppliedIndex: l.AppliedIndex})
}

// MarkerGeneration returns the generation to write in this member's marker
// and true when it differs from the marker's: a running member of the
// current generation whose marker is missing or behind (the founder, the
// rebuild's survivor, data adopted from a converted record).
func MarkerGeneration(o ReplicaObservation) (uint64, bool) {
	l := o.Local
	if !l.Running || l.Leader == 0 || !o.Record.Founded() {
		return 0, false
	}
	v, gen := GenerationVerdict(o.Record, l.ClusterID, l.MemberID, l.Generation)
	if v != Current || gen == 0 || gen == l.Generation {
		return 0, false
	}
	return gen, true
}
