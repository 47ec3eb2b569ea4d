package plan

import (
	"fmt"
	"time"
)

// The health tracker: the rules of recovery.go read durations ("silent for
// 2 minutes", "a learner that has not progressed for 5 minutes"), but the
// controller only ever sees one pass at a time. Health is the memory
// between passes that turns those snapshots into durations. It is the one
// place that says what "unhealthy", "progress" and "stalled" mean; the
// controller only feeds it and reports what it says.

// CatchUpSlack is how many entries behind the leader a member may be and
// still count as caught up (and so as progressing).
const CatchUpSlack = 100

// RecoveryTimeout is how long an unfinished recovery blocks the next one:
// long enough for the replaced replica to be seen silent, rejoin and catch
// up as a learner, and never under five minutes.
func RecoveryTimeout(unresponsiveAfter, learnerStuckAfter time.Duration) time.Duration {
	return max(2*unresponsiveAfter+learnerStuckAfter, 5*time.Minute)
}

// LearnerWatchAfter is how long a learner may not progress before the
// tracker lists it as watched (a learner catching up stalls for moments).
const LearnerWatchAfter = time.Second

// Watch is a member the health tracker has its eye on, as `vetcd status`
// shows it.
type Watch struct {
	Member string        `json:"member"`
	Reason string        `json:"reason"`
	For    time.Duration `json:"for"`
}

// Health remembers, across the controller's passes, when each member was
// last healthy and last progressed, the recovery in flight, and the NOSPACE
// compaction already made. The zero value is ready to use. It is not safe
// for concurrent use.
type Health struct {
	clocks map[uint64]*memberClock
	// recovery is the member replacement in flight.
	recovery *Recovery
	// recoveryAt is when it started.
	recoveryAt time.Time
	// compactedRev is the revision compacted to in this NOSPACE episode.
	compactedRev int64
}

type memberClock struct {
	firstSeen     time.Time
	healthySince  time.Time // zero while silent
	lastHealthy   time.Time // zero if never
	applied       uint64
	progressSince time.Time // when applied last moved
}

// HealthReport is what one Observe learned beyond the durations it filled.
type HealthReport struct {
	// Watching lists the members (and alarms) under watch.
	Watching []Watch
	// Soon says a join is in flight or a learner waits: the controller
	// should look again at once rather than after a whole interval, so a
	// caught-up learner is promoted within a poll step.
	Soon bool
	// Finished is the recovery that this pass found finished, if any.
	Finished *Recovery
}

// Observe fills o's per-member durations (HealthyFor, UnhealthyFor,
// StalledFor), the recovery in flight and NoSpaceCompacted from what it
// remembers, as of now, and remembers o for the next pass. Members no
// longer listed are forgotten.
func (h *Health) Observe(o *ClusterObservation, now time.Time) HealthReport {
	if h.clocks == nil {
		h.clocks = map[uint64]*memberClock{}
	}
	var rep HealthReport
	var leaderApplied uint64
	for _, m := range o.Members {
		if m.ID == o.LeaderID {
			leaderApplied = m.AppliedIndex
		}
	}
	seen := map[uint64]bool{}
	for i := range o.Members {
		m := &o.Members[i]
		seen[m.ID] = true
		clk, ok := h.clocks[m.ID]
		if !ok {
			clk = &memberClock{firstSeen: now, progressSince: now}
			h.clocks[m.ID] = clk
		}
		if m.Healthy {
			if clk.healthySince.IsZero() {
				clk.healthySince = now
			}
			clk.lastHealthy = now
			m.HealthyFor = now.Sub(clk.healthySince)
		} else {
			clk.healthySince = time.Time{}
			silentSince := clk.lastHealthy
			if silentSince.IsZero() {
				silentSince = clk.firstSeen
			}
			m.UnhealthyFor = now.Sub(silentSince)
			rep.Watching = append(rep.Watching, Watch{Member: displayName(*m), Reason: "not answering", For: m.UnhealthyFor.Round(time.Second)})
		}
		// Progress: the applied index moved, or a healthy member is
		// within the slack of the leader (a caught-up member need not
		// move while the cluster is idle).
		if m.AppliedIndex > clk.applied || m.AppliedIndex+o.CatchUpSlack >= leaderApplied && m.Healthy {
			clk.applied = max(clk.applied, m.AppliedIndex)
			clk.progressSince = now
		}
		if m.IsLearner || !m.Started {
			rep.Soon = true
		}
		if m.IsLearner {
			m.StalledFor = now.Sub(clk.progressSince)
			if m.StalledFor >= LearnerWatchAfter {
				rep.Watching = append(rep.Watching, Watch{Member: displayName(*m), Reason: "learner not progressing", For: m.StalledFor.Round(time.Second)})
			}
		}
	}
	for id := range h.clocks {
		if !seen[id] {
			delete(h.clocks, id)
		}
	}
	for _, a := range o.Alarms {
		w := Watch{Member: fmt.Sprintf("%x", a.MemberID), Reason: a.Name + " alarm"}
		if a.MemberID == 0 {
			w = Watch{Member: "cluster", Reason: "cluster-wide " + a.Name + " alarm (member 0)"}
		}
		rep.Watching = append(rep.Watching, w)
	}

	if r := h.recovery; r != nil {
		pr := *r
		pr.For = now.Sub(h.recoveryAt)
		if RecoveryDone(pr, *o) {
			rep.Finished = &pr
			h.recovery = nil
		} else {
			o.Recovery = &pr
		}
	}
	nospace := false
	for _, a := range o.Alarms {
		nospace = nospace || a.Name == AlarmNoSpace
	}
	if !nospace {
		h.compactedRev = 0
	}
	o.NoSpaceCompacted = h.compactedRev != 0
	return rep
}

// Done records an action the controller carried out at now: a recovery's
// removal of the member of replica ordinal starts the recovery in flight;
// a compaction is remembered for the rest of the NOSPACE episode.
func (h *Health) Done(a Action, ordinal int, now time.Time) {
	switch {
	case a.Kind == Remove && a.Recovery != "":
		h.recovery = &Recovery{Ordinal: ordinal, MemberID: a.Target, Reason: a.Recovery}
		h.recoveryAt = now
	case a.Kind == Compact:
		h.compactedRev = a.Revision
	}
}

// Reset forgets everything: a member that stops leading hands over to a
// new leader that starts counting afresh, which only delays a recovery,
// never hastens it.
func (h *Health) Reset() { *h = Health{} }

func displayName(m Member) string {
	if m.Name != "" {
		return m.Name
	}
	return fmt.Sprintf("%x", m.ID)
}
