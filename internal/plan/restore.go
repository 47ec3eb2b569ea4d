package plan

import (
	"fmt"
	"strconv"
	"strings"
)

// A restore requested through config (restore.from) is coordinated through
// the cluster record, which every replica reads whatever its own config
// says, so that the old cluster stops everywhere before a new one is
// founded from the snapshot:
//
//  1. A replica whose config names a snapshot that the record has not seen
//     yet verifies the snapshot, then swaps the record for a request naming
//     itself: "restore requested by replica N from URL at T".
//  2. Every replica that sees a pending request stops its etcd member and
//     keeps its data (Halt).
//  3. The requesting replica, once every other desired replica is confirmed
//     stopped, restores the snapshot into a fresh data dir (old data moved
//     aside) and founds the new cluster alone (Restore). It then records
//     "cluster ID restored from URL by replica N ...".
//  4. The others find data of another cluster than the record's and rejoin
//     the new cluster as learners.
//
// The requester founds the new cluster, not ordinal 0, because it is the
// replica known to hold the config (credentials, keys) the restore needs.

// RestoreRequestPrefix starts a cluster record that requests a restore.
const RestoreRequestPrefix = "restore requested by replica "

// RestoreRequest is a pending restore read from the cluster record.
type RestoreRequest struct {
	// By is the ordinal of the replica that performs the restore.
	By int
	// From is the snapshot URL.
	From string
}

// RestoreRequestRecord is the cluster record that requests a restore.
func RestoreRequestRecord(by int, from, at string) string {
	return fmt.Sprintf("%s%d from %s at %s", RestoreRequestPrefix, by, from, at)
}

// ParseRestoreRequest reads a pending restore from a cluster record.
func ParseRestoreRequest(record string) (RestoreRequest, bool) {
	rest, ok := strings.CutPrefix(record, RestoreRequestPrefix)
	if !ok {
		return RestoreRequest{}, false
	}
	f := strings.Fields(rest)
	if len(f) < 3 || f[1] != "from" {
		return RestoreRequest{}, false
	}
	by, err := strconv.Atoi(f[0])
	if err != nil || by < 0 {
		return RestoreRequest{}, false
	}
	return RestoreRequest{By: by, From: f[2]}, true
}

// RestoredRecord is the cluster record of a cluster founded from a
// snapshot.
func RestoredRecord(clusterID uint64, from string, by int, revision, bump int64, at string) string {
	return fmt.Sprintf("cluster %x restored from %s by replica %d (revision %d, bumped by %d) at %s", clusterID, from, by, revision, bump, at)
}

// RecordRestoredFrom returns the snapshot URL a record says the cluster
// was restored from, or "".
func RecordRestoredFrom(record string) string {
	_, rest, ok := strings.Cut(record, " restored from ")
	if !ok || !strings.HasPrefix(record, "cluster ") {
		return ""
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// RecordClusterID returns the cluster ID a record names ("cluster ID ..."),
// if any.
func RecordClusterID(record string) (uint64, bool) {
	f := strings.Fields(record)
	if len(f) < 2 || f[0] != "cluster" {
		return 0, false
	}
	id, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil || id == 0 {
		return 0, false
	}
	return id, true
}

// RestoreNeeded reports whether a replica whose config asks for a restore
// from url must request it: not when the record already requests it or
// says the cluster was restored from it.
func RestoreNeeded(record, url string) bool {
	if url == "" {
		return false
	}
	if r, ok := ParseRestoreRequest(record); ok && r.From == url {
		return false
	}
	return RecordRestoredFrom(record) != url
}

// restoreNext decides a replica's step while a restore is pending.
func restoreNext(o ReplicaObservation, req RestoreRequest) ReplicaDecision {
	if o.Local.Running {
		return decide(Halt, "restore from %s requested by replica %d: stopping this member so that the old cluster stops serving", req.From, req.By)
	}
	if req.By != o.Ordinal {
		return decide(Wait, "restore from %s pending: replica %d restores it; this replica rejoins afterwards", req.From, req.By)
	}
	for _, p := range o.Peers {
		if p.Ordinal == o.Ordinal {
			continue
		}
		switch {
		case p.Reachable && p.Running:
			return decide(Wait, "restore from %s: waiting for replica %d to stop its member", req.From, p.Ordinal)
		case !p.Reachable && !o.Gone[p.Ordinal]:
			return decide(Wait, "restore from %s: replica %d does not answer and is not confirmed gone; not founding a cluster beside it", req.From, p.Ordinal)
		}
	}
	return decide(Restore, "restore from %s: every other replica has stopped its member", req.From)
}
