package plan

import (
	"fmt"
	"strings"
)

// NeverCompacted is etcd's compaction revision of a store that was never
// compacted (mvcc's compactMainRev starts at -1, and HashKV reports it so).
const NeverCompacted int64 = -1

// HashPoint is where etcd's start-up corruption check hashes a member's
// data: the store's current revision, and the compaction revision it
// reports with that hash.
type HashPoint struct {
	Revision        int64
	CompactRevision int64
}

// StartHashPoint says where etcd's start-up corruption check will hash
// data that no etcd runs on, from what its backend holds: the newest main
// revision in the key bucket (0 if none), the finished compaction
// (finishedFound false if the meta bucket has none) and the scheduled one
// (0 if none). It mirrors what etcd's mvcc store.restore makes of the
// backend before that check runs, so that the revision asked of the peers
// and the compaction compared with theirs are like-for-like:
//
//   - the compaction starts at -1 and becomes the finished one if any;
//   - the current revision is the newest key's, but never below 1 (an
//     empty store), the compaction, or a scheduled compaction (a crash
//     between scheduling and finishing a compaction of a tombstone);
//   - a scheduled compaction newer than the finished one is resumed, which
//     sets the compaction revision to it.
func StartHashPoint(lastKeyRev, finished int64, finishedFound bool, scheduled int64) HashPoint {
	compact := NeverCompacted
	if finishedFound {
		compact = finished
	}
	rev := max(1, lastKeyRev, compact, scheduled)
	if scheduled != 0 && scheduled > compact {
		compact = scheduled
	}
	return HashPoint{Revision: rev, CompactRevision: compact}
}

// HashAnswer is the kind of a peer's answer to HashKV at a revision.
type HashAnswer int

// Peer answers to HashKV at the data's revision.
const (
	// HashUnknown: no definite answer (unreachable, timeout, other error).
	HashUnknown HashAnswer = iota
	// HashGiven: the peer hashed the revision; CompactRevision is the
	// compaction it hashed over.
	HashGiven
	// HashCompacted: the peer has compacted past the revision.
	HashCompacted
	// HashFutureRev: the peer has not reached the revision.
	HashFutureRev
)

// PeerHash is one peer's answer to HashKV at the local HashPoint's
// revision.
type PeerHash struct {
	Name            string
	Answer          HashAnswer
	CompactRevision int64 // HashGiven only
}

// Comparable reports whether etcd's start-up check can compare data at
// local with peer p's answer: p hashed the same revision over the same
// compaction. One such peer is enough, so the caller may stop asking the
// others.
func Comparable(local HashPoint, p PeerHash) bool {
	return p.Answer == HashGiven && p.CompactRevision == local.CompactRevision
}

// Unverifiable says why etcd's start-up corruption check cannot compare
// data at local with any of the peers' answers, or "" when it can. etcd
// compares hashes only with a peer that hashed the same revision over the
// same compaction; with any other answer its check passes without
// comparing, and damaged data would be served (chaos finding 5). It is ""
// too when no peer gave a definite answer: a flaky peer must never make a
// replica throw its data away.
func Unverifiable(local HashPoint, peers []PeerHash) string {
	var why []string
	for _, p := range peers {
		switch p.Answer {
		case HashGiven:
			if Comparable(local, p) {
				return ""
			}
			why = append(why, fmt.Sprintf("%s compacted to revision %d, this data to %d", p.Name, p.CompactRevision, local.CompactRevision))
		case HashCompacted:
			why = append(why, fmt.Sprintf("%s has compacted past revision %d", p.Name, local.Revision))
		case HashFutureRev:
			why = append(why, fmt.Sprintf("%s has not reached revision %d", p.Name, local.Revision))
		}
	}
	return strings.Join(why, "; ")
}
