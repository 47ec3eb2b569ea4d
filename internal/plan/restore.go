package plan

// A restore requested through config (restore.from) is coordinated through
// the cluster record, which every replica reads whatever its own config
// says, so that the old cluster stops everywhere before a new one is
// founded from the snapshot:
//
//  1. A replica whose config names a snapshot that the record has not seen
//     yet verifies the snapshot, then claims the restore in the record
//     (compare-and-swap; RestoreNeeded in record.go).
//  2. Every replica that sees a pending request stops its etcd member and
//     keeps its data (Halt).
//  3. The requesting replica, once every other desired replica is confirmed
//     stopped, restores the snapshot into a fresh data dir (old data moved
//     aside) and founds the new cluster alone (Restore). It then records
//     the new cluster as the next generation, with the URL among the
//     restored ones, and releases the claim.
//  4. The others find data of another cluster than the record's and rejoin
//     the new cluster as learners.
//
// The requester founds the new cluster, not ordinal 0, because it is the
// replica known to hold the config (credentials, keys) the restore needs.

// restoreNext decides a replica's step while a restore is pending.
func restoreNext(o ReplicaObservation, req Claim) ReplicaDecision {
	if o.Local.Running {
		return decide(Halt, "restore from %s requested by replica %d: stopping this member so that the old cluster stops serving", req.URL, req.Holder)
	}
	if req.Holder != o.Ordinal {
		return decide(Wait, "restore from %s pending: replica %d restores it; this replica rejoins afterwards", req.URL, req.Holder)
	}
	for _, p := range o.Peers {
		if p.Ordinal == o.Ordinal {
			continue
		}
		switch {
		case p.Reachable && p.Running:
			return decide(Wait, "restore from %s: waiting for replica %d to stop its member", req.URL, p.Ordinal)
		case !p.Reachable && !o.Gone[p.Ordinal]:
			return decide(Wait, "restore from %s: replica %d does not answer and is not confirmed gone; not founding a cluster beside it", req.URL, p.Ordinal)
		}
	}
	return decide(Restore, "restore from %s: every other replica has stopped its member", req.URL)
}
