// Package plan holds every membership, recovery and start-up decision
// vetcd makes, as pure functions of an observation: the caller observes
// the world into a value, plan returns one decision with its reason, and
// the caller acts. Nothing here reads a clock (time is passed in), a file or
// the network, and it imports only the standard library (make lint checks
// it), so each rule is a table test.
//
// Where to look:
//   - recovery.go and health.go: what happens when a member dies, is
//     corrupt or raises an alarm (the rules, and the clocks that turn the
//     controller's passes into "silent for 2 minutes").
//   - cluster.go: what the leader's controller does to the member list
//     (promote, remove, move leadership), in the order Next lists.
//   - replica.go: what a replica does with its own data and etcd process
//     (restart, join, rejoin, bootstrap, rebuild, halt, wait).
//   - record.go: the cluster record, its generations and claims.
//   - leave.go: a surplus replica's own removal on a scale-down.
//   - quorum.go: the guards every removal is checked against.
//   - migrate.go, restore.go, upgrade.go, verify.go: the migration's
//     cut-over, restores, storage upgrades and the start-up data check.
//   - backoff.go: the pace of every retry loop.
package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// NoOrdinal marks a member whose replica is unknown to the topology. It
// equals topology.NoOrdinal (checked by a test there); it is written here
// again so that plan links the standard library only, not the topology
// sources and their clients.
const NoOrdinal = -1

// Member is one etcd member as observed, mapped to a replica ordinal.
type Member struct {
	ID        uint64
	Name      string
	PeerURL   string
	Ordinal   int // NoOrdinal when no replica owns the peer URL
	IsLearner bool
	// Started means the member has published its name: its process ran.
	Started bool
	// Healthy means its status answered in this observation.
	Healthy bool
	// HealthyFor is how long it has answered without a gap (0 when not
	// healthy). The observer keeps the clock; plan only compares.
	HealthyFor time.Duration
	// AppliedIndex is its raft applied index when Healthy.
	AppliedIndex uint64
	// UnhealthyFor is how long it has not answered (0 while it answers).
	UnhealthyFor time.Duration
	// StalledFor is, for a learner, how long its applied index has not
	// moved while it is behind the leader (or, unstarted, since it was
	// first seen).
	StalledFor time.Duration
	// DBSize and DBSizeInUse are its backend's size and live part, in bytes.
	DBSize, DBSizeInUse int64
}

// Voters returns the members that vote (not learners).
func Voters(ms []Member) []Member {
	var out []Member
	for _, m := range ms {
		if !m.IsLearner {
			out = append(out, m)
		}
	}
	return out
}

// Quorum is the number of votes a raft group of n voters needs.
func Quorum(n int) int { return n/2 + 1 }

// Fingerprint identifies a member list by its IDs and roles. An action
// carries the fingerprint it was decided on; the actor refuses to act if the
// list has changed since (the precondition of STYLE.md §1).
func Fingerprint(ms []Member) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		role := "v"
		if m.IsLearner {
			role = "l"
		}
		parts = append(parts, fmt.Sprintf("%x%s", m.ID, role))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// Find returns the member with the given ID.
func Find(ms []Member, id uint64) (Member, bool) { return find(ms, id) }

func find(ms []Member, id uint64) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}
