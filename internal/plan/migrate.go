package plan

import "fmt"

// FollowRevision summarises one revision of a cluster that follows a
// deployed etcd, after the last source revision it copied: what changed
// in it, read from the cluster's own history.
type FollowRevision struct {
	Revision int64
	// Copied: the revision writes the migration marker, so a follower (or
	// a cut-over) made it, not a client.
	Copied bool
	// Puts counts puts of keys.
	Puts int
	// Deletes counts deletes of keys that had no lease.
	Deletes int
	// LeaseDeletes counts deletes of keys that had a lease, or whose
	// previous value is unknown: a lease that ended on the cluster itself
	// deletes exactly such keys, so they prove nothing about clients.
	LeaseDeletes int
}

// FollowVerdict is what a following cluster's own revisions say.
type FollowVerdict int

const (
	// FollowInSync: no revision of the cluster's own; keep following.
	FollowInSync FollowVerdict = iota
	// FollowClientsMoved: a client wrote to the cluster; the cut-over.
	FollowClientsMoved
	// FollowSelfDiverged: the cluster's revision moved without any sign of
	// a client (a lease expired or was revoked on it, or its history is
	// gone): not a cut-over, and the source's next revision can no longer
	// be copied at its own revision. Following must stop, loudly.
	FollowSelfDiverged
)

func (v FollowVerdict) String() string {
	switch v {
	case FollowInSync:
		return "in-sync"
	case FollowClientsMoved:
		return "clients-moved"
	case FollowSelfDiverged:
		return "self-diverged"
	}
	return fmt.Sprintf("FollowVerdict(%d)", int(v))
}

// FollowJudgement is a FollowVerdict with the revision that decided it
// and the reason, for logs and the marker.
type FollowJudgement struct {
	Verdict  FollowVerdict
	Revision int64
	Reason   string
}

// JudgeFollow decides whether a following cluster was cut over, from its
// revisions after the last copied source revision, in order. complete
// says the list reaches the cluster's current revision (false: its
// history was compacted, or only a prefix was read).
//
// The cut-over is recognized only by a positive sign that clients moved:
// a revision of the cluster's own with a put, or a delete of a key that
// had no lease. vetcd itself never makes such a revision; a lease ending
// on the cluster only deletes leased keys. A mismatch of revisions alone
// is never a cut-over: it is FollowSelfDiverged.
func JudgeFollow(revs []FollowRevision, complete bool) FollowJudgement {
	own := 0
	var first int64
	for _, r := range revs {
		if r.Copied {
			continue
		}
		if own == 0 {
			first = r.Revision
		}
		own++
		if r.Puts > 0 || r.Deletes > 0 {
			return FollowJudgement{Verdict: FollowClientsMoved, Revision: r.Revision,
				Reason: fmt.Sprintf("revision %d is a client's write (%d puts, %d deletes of keys without a lease): clients moved over", r.Revision, r.Puts, r.Deletes)}
		}
	}
	switch {
	case own > 0:
		return FollowJudgement{Verdict: FollowSelfDiverged, Revision: first,
			Reason: fmt.Sprintf("%d revisions of the cluster's own from %d only delete leased keys (a lease ended on this cluster, not a client's write)", own, first)}
	case !complete:
		return FollowJudgement{Verdict: FollowSelfDiverged,
			Reason: "the cluster's revision moved but its history after the last copied revision is gone (compacted): no client's write can be seen"}
	}
	return FollowJudgement{Verdict: FollowInSync}
}
