package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The cluster record is the one document every replica reads before it
// serves: which cluster exists here, which generation of it is current, and
// which exclusive change (founding, rebuild, restore) is in flight. It lives
// outside etcd (a file beside the local replicas; a ConfigMap on
// Kubernetes) and is only ever replaced by compare-and-swap, so two
// replicas cannot both win a claim.
//
// A generation is one continuous history of the cluster's data. Founding
// starts generation 1; every rebuild (ForceNewCluster keeps the cluster ID
// but drops the other members) and every restore starts the next one. Data
// written in an older generation must never serve again: the replicas that
// hold it were left behind by the change, and their voters could still form
// a quorum of the old member list (issue 15, finding 1).

// RecordVersion is the format version this code writes. A record of a newer
// version is refused, not guessed at.
const RecordVersion = 1

// ID is an etcd member or cluster ID, written in hex as etcd prints it.
type ID uint64

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(strconv.FormatUint(uint64(id), 16)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 16, 64)
	if err != nil {
		return fmt.Errorf("id %q: %w", b, err)
	}
	*id = ID(v)
	return nil
}

func (id ID) String() string { return strconv.FormatUint(uint64(id), 16) }

// Origin says how a generation was made.
type Origin string

// Origins of a generation.
const (
	OriginFounded  Origin = "founded"
	OriginRebuilt  Origin = "rebuilt"
	OriginRestored Origin = "restored"
	OriginUpgraded Origin = "upgraded"
	// OriginConverted: the record was converted from the prose record of
	// an earlier vetcd; the generation is 1 and the data of that cluster
	// carries no generation marker yet.
	OriginConverted Origin = "converted"
)

// Made is how the current generation came to be.
type Made struct {
	How Origin    `json:"how"`
	By  string    `json:"by,omitempty"` // replica name
	At  time.Time `json:"at,omitzero"`
	// FromMember and AppliedIndex: a rebuild's survivor and its applied
	// index when it forced the new cluster.
	FromMember   ID     `json:"fromMember,omitempty"`
	AppliedIndex uint64 `json:"appliedIndex,omitempty"`
	// URL, Revision and Bump: a restore's snapshot, its revision and how
	// far the revision was moved forward.
	URL      string `json:"url,omitempty"`
	Revision int64  `json:"revision,omitempty"`
	Bump     int64  `json:"bump,omitempty"`
	// Note: the prose record a converted record was read from.
	Note string `json:"note,omitempty"`
}

// ClaimKind names an exclusive change in flight.
type ClaimKind string

// Claim kinds.
const (
	ClaimFound   ClaimKind = "found"
	ClaimRebuild ClaimKind = "rebuild"
	ClaimRestore ClaimKind = "restore"
)

// Claim is an exclusive change in flight. Only its holder acts on it; the
// others wait. A holder that restarts finds its own claim and finishes it
// (see FinishClaim); a holder that is gone for good is replaced by the rule
// in ClaimStale.
type Claim struct {
	Kind       ClaimKind `json:"kind"`
	Holder     int       `json:"holder"` // ordinal
	HolderName string    `json:"holderName,omitempty"`
	At         time.Time `json:"at"`
	// URL: the snapshot a restore claim restores.
	URL string `json:"url,omitempty"`
	// Member and FromMembers: the member a rebuild claim forces, and the
	// fingerprint of the member list it forces from.
	Member      ID     `json:"member,omitempty"`
	FromMembers string `json:"fromMembers,omitempty"`
	// ServedRevision: the live cluster's revision when a restore was
	// claimed, so that the restore moves the revision above it.
	ServedRevision int64 `json:"servedRevision,omitempty"`
}

// Record is the typed cluster record. The zero Record means no cluster was
// ever founded here.
type Record struct {
	Version   int `json:"version"`
	ClusterID ID  `json:"clusterID,omitempty"`
	// Generation is 0 until a cluster is founded, then bumped by every
	// rebuild and restore.
	Generation uint64 `json:"generation"`
	// Members are the members the current generation was made with: the
	// founder, the rebuild's survivor, the restorer. Members that join
	// later carry the generation in their own marker.
	Members []ID  `json:"members,omitempty"`
	Made    *Made `json:"made,omitempty"`
	// MaxRevision is the highest revision this cluster is known to have
	// served; a restore moves the revision above it (safety rule 7).
	MaxRevision int64 `json:"maxRevision,omitempty"`
	// MaxRevisionAt is when the leader last raised MaxRevision
	// (RaiseMaxRevision).
	MaxRevisionAt time.Time `json:"maxRevisionAt,omitzero"`
	// Restored lists every snapshot URL a restore completed from, so that
	// a config that still names one never restores it again (finding 8).
	Restored []string `json:"restored,omitempty"`
	Claim    *Claim   `json:"claim,omitempty"`
}

// ErrRecordVersion means the record was written by a newer vetcd.
var ErrRecordVersion = errors.New("plan: cluster record written by a newer vetcd")

// Founded reports whether the record names a cluster.
func (r Record) Founded() bool { return r.ClusterID != 0 }

// Empty reports whether no cluster was ever founded here and none is
// being founded.
func (r Record) Empty() bool { return !r.Founded() && r.Generation == 0 && r.Claim == nil }

// HasMember reports whether id is one of the members the current
// generation was made with.
func (r Record) HasMember(id uint64) bool { return slices.Contains(r.Members, ID(id)) }

// Encode renders the record as the document stored in the topology source.
func (r Record) Encode() string {
	r.Version = RecordVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil { // only plain fields: cannot happen
		panic(fmt.Sprintf("plan: encode cluster record: %v", err))
	}
	return string(b)
}

// ParseRecord reads a stored record. "" is the zero Record. A record in the
// prose format of vetcd before generations ("cluster ID founded by …",
// "restore requested by replica N from URL at T", "founding …") is
// converted; legacy reports whether it was, so that the caller writes the
// typed form back once.
func ParseRecord(s string) (r Record, legacy bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Record{}, false, nil
	}
	if strings.HasPrefix(s, "{") {
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			return Record{}, false, fmt.Errorf("plan: cluster record: %w", err)
		}
		if r.Version > RecordVersion {
			return Record{}, false, fmt.Errorf("%w (version %d, this vetcd reads up to %d): upgrade this replica", ErrRecordVersion, r.Version, RecordVersion)
		}
		return r, false, nil
	}
	r, err = parseProse(s)
	return r, err == nil, err
}

// The prose records of vetcd before generations.
const (
	legacyFounding = "founding "
	legacyRequest  = "restore requested by replica "
)

func parseProse(s string) (Record, error) {
	f := strings.Fields(s)
	switch {
	case strings.HasPrefix(s, legacyFounding):
		// A founding that never recorded its cluster: only ordinal 0
		// founds (or upgrades), so it holds the claim.
		name := ""
		if len(f) > 1 {
			name = f[1]
		}
		return Record{Claim: &Claim{Kind: ClaimFound, Holder: 0, HolderName: name}}, nil
	case strings.HasPrefix(s, legacyRequest):
		rest := strings.Fields(strings.TrimPrefix(s, legacyRequest))
		if len(rest) < 3 || rest[1] != "from" {
			break
		}
		by, err := strconv.Atoi(rest[0])
		if err != nil || by < 0 {
			break
		}
		// The cluster the request was made in is not in the prose: the
		// restore's outcome founds a new one anyway.
		return Record{Generation: 1, Made: &Made{How: OriginConverted, Note: s},
			Claim: &Claim{Kind: ClaimRestore, Holder: by, URL: rest[2]}}, nil
	case len(f) >= 2 && f[0] == "cluster":
		id, err := strconv.ParseUint(f[1], 16, 64)
		if err != nil || id == 0 {
			break
		}
		r := Record{ClusterID: ID(id), Generation: 1, Members: nil, Made: &Made{How: OriginConverted, Note: s}}
		if _, rest, ok := strings.Cut(s, " restored from "); ok {
			if u := strings.Fields(rest); len(u) > 0 {
				r.Restored = []string{u[0]}
			}
		}
		return r, nil
	}
	return Record{}, fmt.Errorf("plan: cluster record %q is neither a typed record nor one of vetcd's earlier formats", s)
}

// Verdict is how a replica's data stands against the record.
type Verdict int

// Verdicts of GenerationVerdict.
const (
	// Current: the data belongs to the recorded cluster's current
	// generation (or nothing is recorded that could say otherwise).
	Current Verdict = iota
	// Superseded: the data belongs to the recorded cluster but to a
	// generation that a rebuild or restore has replaced, or to no known
	// generation. It must never serve again.
	Superseded
	// OtherCluster: the data belongs to a cluster the record does not
	// name.
	OtherCluster
)

func (v Verdict) String() string {
	switch v {
	case Current:
		return "current"
	case Superseded:
		return "superseded"
	case OtherCluster:
		return "other-cluster"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// GenerationVerdict checks data of (clusterID, memberID) marked with
// generation gen (0: no marker) against the record. It also returns the
// generation the data belongs to, for the marker: a member the record
// lists, or unmarked data while the cluster is in its first generation, is
// adopted into the record's generation.
func GenerationVerdict(rec Record, clusterID, memberID, gen uint64) (Verdict, uint64) {
	if !rec.Founded() {
		return Current, gen
	}
	if uint64(rec.ClusterID) != clusterID {
		return OtherCluster, gen
	}
	switch {
	case gen >= rec.Generation && gen != 0:
		return Current, gen
	case rec.HasMember(memberID):
		return Current, rec.Generation
	case gen == 0 && rec.Generation == 1:
		// Data of this cluster with no marker while the cluster is still
		// in its first generation can only be of that generation: data of
		// a vetcd before generations (a converted record), or a member
		// that joined after reading the record before the founder had
		// recorded the cluster (its observation read the record, then saw
		// the cluster answer), so it had no generation to mark. A rebuild
		// or a restore ends generation 1, so such data is superseded then.
		return Current, 1
	}
	return Superseded, gen
}

// ClaimStaleAfter is how long a claim whose holder is gone, or lost its
// data, stays before another replica may take its place.
const ClaimStaleAfter = time.Minute

// ClaimStale reports whether a claim held by another replica may be
// overwritten: its holder is confirmed gone (or answers with no data) and
// the claim is older than ClaimStaleAfter. A holder that comes back finds
// its claim and finishes it, so the wait only matters when it does not.
func ClaimStale(c Claim, holder Peer, gone bool, now time.Time) bool {
	if now.Sub(c.At) < ClaimStaleAfter {
		return false
	}
	return gone || (holder.Reachable && !holder.HasData)
}

// NextBump is the revision bump of a restore of a snapshot at revision rev:
// at least minBump, and enough to leave minBump of headroom above every
// revision the cluster is known to have served, so that a second restore of
// the same (or an older) snapshot never moves the revision backwards and
// every watcher sees a compaction and relists (safety rule 7).
func NextBump(rec Record, served, rev, minBump int64) int64 {
	top := max(rec.MaxRevision, served)
	if rec.Claim != nil {
		top = max(top, rec.Claim.ServedRevision)
	}
	if top < rev {
		return minBump
	}
	return max(minBump, top-rev+minBump)
}

// MaxRevisionEvery is how often the leader raises the record's MaxRevision
// to the revision it serves. A restore from a snapshot moves the revision
// above MaxRevision and above what any member still holds; when every
// member's data is gone, MaxRevision is all that is left, so it lags the
// served revision by at most this long (a watcher that saw a revision
// written in that minute would also need the restore's minimum bump of
// safety rule 7 to be passed by). Once a minute keeps the writes to a
// Kubernetes object rare.
const MaxRevisionEvery = time.Minute

// RaiseMaxRevision returns the record with MaxRevision raised to the
// revision this replica's member serves, and true, when the replica should
// write it: its member runs and leads, the record names the member's
// cluster at the generation its data belongs to, no claim is in flight (a
// claim's holder owns the record until it finishes), the revision is above
// the recorded one, and the last raise is MaxRevisionEvery old.
func RaiseMaxRevision(o ReplicaObservation) (Record, bool) {
	rec, l := o.Record, o.Local
	if !l.Running || l.Leader == 0 || l.Leader != l.MemberID || rec.Claim != nil || !rec.Founded() {
		return rec, false
	}
	if v, _ := GenerationVerdict(rec, l.ClusterID, l.MemberID, l.Generation); v != Current {
		return rec, false
	}
	if l.Revision <= rec.MaxRevision || (!rec.MaxRevisionAt.IsZero() && o.Now.Sub(rec.MaxRevisionAt) < MaxRevisionEvery) {
		return rec, false
	}
	next := rec
	next.MaxRevision, next.MaxRevisionAt = l.Revision, o.Now.UTC()
	return next, true
}

// RestoreNeeded reports whether a replica whose config asks for a restore
// from url must request it: not when a restore from it completed before
// (a replica whose config still names an old snapshot during a rolling
// change must not undo a newer restore), and not while any claim is in
// flight (it finishes first; the replica looks again afterwards).
func RestoreNeeded(rec Record, url string) bool {
	if url == "" || slices.Contains(rec.Restored, url) {
		return false
	}
	return rec.Claim == nil
}

// NextGeneration is the record once a claim's work is done: member alone
// is the only voter of the next generation of cluster clusterID (the same
// ID after a rebuild, a new one after a founding, an upgrade or a restore),
// made as made says, with no claim. Founding, rebuild, upgrade and restore
// all finish through it, so that their records differ only in Made.
func NextGeneration(rec Record, clusterID, member ID, made Made) Record {
	next := rec
	next.Claim = nil
	next.ClusterID = clusterID
	next.Generation = rec.Generation + 1
	next.Members = []ID{member}
	made.At = made.At.UTC()
	next.Made = &made
	return next
}

// RestoredRecord is the record of a cluster restored from url into member
// memberID of cluster clusterID: the next generation, made of that member
// alone, with the revision it now serves from, the URL among the restored
// ones, and no claim.
func RestoredRecord(rec Record, clusterID, memberID uint64, by, url string, rev, bump int64, now time.Time) Record {
	next := NextGeneration(rec, ID(clusterID), ID(memberID), Made{How: OriginRestored, By: by, At: now, URL: url, Revision: rev, Bump: bump})
	next.MaxRevision = max(rec.MaxRevision, rev+bump)
	if !slices.Contains(next.Restored, url) {
		next.Restored = append(slices.Clone(next.Restored), url)
	}
	return next
}
