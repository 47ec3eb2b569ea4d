// Package sim is a deterministic simulator of a vetcd cluster: N replicas
// whose decisions are made by the real rules of internal/plan
// (plan.ReplicaNext, plan.FinishClaim, plan.RaiseMaxRevision,
// plan.MarkerGeneration, plan.RebuiltRecord, plan.NextGeneration, and the
// leader's plan.Next), acting on an in-memory model of etcd members, of the
// topology (desired count, processes, agents) and of the cluster record, under
// a scheduler driven by one seed.
//
// What is real and what is modeled, plainly:
//   - The decisions are real: every choice a replica or the leader's
//     controller makes comes from internal/plan, unchanged.
//   - The replica actors are MODELED, because internal/replica is not yet
//     behind an etcd seam: actors.go mirrors modes.go, record.go and
//     observe.go step by step, in the same order (rebuild = claim by
//     compare-and-swap → forced start → rebuild marker → generation marker →
//     record the next generation by compare-and-swap; bootstrap = claim the
//     founding → start → marker → record; join = member add as learner →
//     start → marker; rejoin = move the data aside → join; halt = stop
//     etcd). Each of those steps is one scheduler event, so a crash, a
//     freeze or another replica's pass can fall between any two of them.
//     When the actors change, this model must follow them.
//   - etcd is MODELED (model.go): per member its cluster ID, member ID,
//     member list, log of entry IDs, generation marker and rebuild marker;
//     elections by quorum of the member's own voter list among running,
//     unfrozen members that list it, votes only for a log at least as long;
//     a write is acknowledged by a leader and reaches every running,
//     unfrozen member of its group at once (only stopped or frozen members
//     lag); ForceNewCluster keeps the cluster ID and the log and makes the
//     member the only voter; a removed member that runs stops.
//
// Time is a simulated clock the scheduler advances; nothing reads the wall
// clock and the core loop runs no goroutines, so a seed replays exactly.
// The scheduler injects, at every step: kills (data kept), process
// restarts, freezes and thaws, scale changes (1..N; a quorum-breaking
// scale-down kills the surplus at once), lost record writes (the
// compare-and-swap fails after it was applied, or is lost), late
// observations (a replica acts on an observation some passes old) and so
// replicas that act while another holds a claim.
//
// The invariants (sim.go: check, write, checkForcedLoss, checkRemoval) are
// checked after every step; a violation
// reports the seed and a shrunk schedule that replays it (Replay).
package sim
