package plan

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	const url = "s3://bucket/snaps/vetcd-c1?endpoint=minio:9000"
	typed := Record{ClusterID: 0xabc, Generation: 3, Members: []ID{0x10}, Made: &Made{How: OriginRebuilt, FromMember: 0x10, AppliedIndex: 42}}
	tests := []struct {
		name       string
		in         string
		want       Record
		wantLegacy bool
		wantErr    string
	}{
		{name: "no record", in: ""},
		{name: "typed record round-trips", in: typed.Encode(), want: typed},
		{name: "prose founded record converts to generation 1", in: "cluster e3c22db0480411dc founded by vetcd-0 at 2026-11-24T00:00:00Z",
			want: Record{ClusterID: 0xe3c22db0480411dc, Generation: 1, Made: &Made{How: OriginConverted, Note: "cluster e3c22db0480411dc founded by vetcd-0 at 2026-11-24T00:00:00Z"}}, wantLegacy: true},
		{name: "prose restored record keeps its URL", in: "cluster 9f restored from " + url + " by replica 1 (revision 7, bumped by 1000000000) at T",
			want: Record{ClusterID: 0x9f, Generation: 1, Made: &Made{How: OriginConverted, Note: "cluster 9f restored from " + url + " by replica 1 (revision 7, bumped by 1000000000) at T"}, Restored: []string{url}}, wantLegacy: true},
		{name: "prose founding intent is ordinal 0's founding claim", in: "founding vetcd-0 at 2026-11-24T00:00:00Z",
			want: Record{Claim: &Claim{Kind: ClaimFound, Holder: 0, HolderName: "vetcd-0"}}, wantLegacy: true},
		{name: "prose restore request is a restore claim", in: "restore requested by replica 2 from " + url + " at T",
			want: Record{Generation: 1, Made: &Made{How: OriginConverted, Note: "restore requested by replica 2 from " + url + " at T"}, Claim: &Claim{Kind: ClaimRestore, Holder: 2, URL: url}}, wantLegacy: true},
		{name: "garbage is refused, not guessed", in: "cluster zz founded", wantErr: "neither a typed record"},
		{name: "a newer version is refused", in: `{"version": 9, "generation": 1}`, wantErr: "newer vetcd"},
		{name: "broken JSON is refused", in: `{"version": 1, "generation": `, wantErr: "cluster record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, legacy, err := ParseRecord(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRecord error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Version = 0
			if got.Encode() != tt.want.Encode() || legacy != tt.wantLegacy {
				t.Errorf("ParseRecord = %s (legacy %v)\nwant %s (legacy %v)", got.Encode(), legacy, tt.want.Encode(), tt.wantLegacy)
			}
		})
	}
}

func TestGenerationVerdict(t *testing.T) {
	rebuilt := Record{ClusterID: cid, Generation: 2, Members: []ID{0x10}, Made: &Made{How: OriginRebuilt}}
	converted := Record{ClusterID: cid, Generation: 1, Made: &Made{How: OriginConverted}}
	founded := Record{ClusterID: cid, Generation: 1, Members: []ID{0x10}, Made: &Made{How: OriginFounded}}
	tests := []struct {
		name           string
		rec            Record
		member, gen    uint64
		cluster        uint64
		want           Verdict
		wantGeneration uint64
	}{
		{name: "no record: nothing can be superseded", rec: Record{}, cluster: cid, member: 0x12, gen: 0, want: Current},
		{name: "data of the current generation", rec: rebuilt, cluster: cid, member: 0x15, gen: 2, want: Current, wantGeneration: 2},
		{name: "the rebuild's survivor before its marker caught up", rec: rebuilt, cluster: cid, member: 0x10, gen: 1, want: Current, wantGeneration: 2},
		{name: "finding 1: a voter dropped by the rebuild, same cluster ID", rec: rebuilt, cluster: cid, member: 0x12, gen: 1, want: Superseded, wantGeneration: 1},
		{name: "data with no marker after a rebuild", rec: rebuilt, cluster: cid, member: 0x12, gen: 0, want: Superseded},
		{name: "data of an earlier vetcd adopts a converted record's generation", rec: converted, cluster: cid, member: 0x12, gen: 0, want: Current, wantGeneration: 1},
		// A replica read the record before the founder recorded the
		// cluster, saw the cluster answer, and joined with no generation
		// to mark: its data can only be of generation 1.
		{name: "a joiner that read the record before the founding was recorded", rec: founded, cluster: cid, member: 0x12, gen: 0, want: Current, wantGeneration: 1},
		{name: "data of another cluster", rec: rebuilt, cluster: other, member: 0x12, gen: 2, want: OtherCluster, wantGeneration: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, g := GenerationVerdict(tt.rec, tt.cluster, tt.member, tt.gen)
			if v != tt.want || (tt.wantGeneration != 0 && g != tt.wantGeneration) {
				t.Errorf("GenerationVerdict = %s, %d; want %s, %d", v, g, tt.want, tt.wantGeneration)
			}
		})
	}
}

// The findings of issue 15 that are decisions, as ReplicaNext cases.
func TestReplicaNextGenerations(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	five := []Member{voter(0), voter(1), voter(2), voter(3), voter(4)}
	rebuilt := Record{ClusterID: cid, Generation: 2, Members: []ID{0x10}, Made: &Made{How: OriginRebuilt, By: "vetcd-0"}}
	// A dropped voter's data: member 0x12 of generation 1.
	dropped := Local{Data: DataValid, ClusterID: cid, MemberID: 0x12, Generation: 1, Revision: 40, DownFor: time.Second}
	// Its old peers 3 and 4 run on their old data too: before the fix
	// they and it were a quorum of the old five (peersHoldQuorum).
	oldPeers := []Peer{{Ordinal: 0}, {Ordinal: 1}, runningPeer(3), runningPeer(4)}
	rebuildClaim := func(holder int, at time.Time) Record {
		r := Record{ClusterID: cid, Generation: 1, Members: []ID{0x10}}
		r.Claim = &Claim{Kind: ClaimRebuild, Holder: holder, At: at, Member: ID(0x10 + holder)}
		return r
	}
	tests := []struct {
		name   string
		o      ReplicaObservation
		want   Mode
		reason string
	}{
		{
			name:   "finding 1: a replica dropped by a rebuild never restarts its data, even with its old peers up",
			o:      ReplicaObservation{Ordinal: 2, Desired: 5, Now: now, Record: rebuilt, Local: dropped, Peers: oldPeers},
			want:   Wait,
			reason: "superseded by generation 2",
		},
		{
			name:   "finding 1: once the rebuilt cluster answers, the dropped replica rejoins it with fresh data",
			o:      ReplicaObservation{Ordinal: 2, Desired: 5, Now: now, Record: rebuilt, Local: dropped, Cluster: reachable(voter(0), voter(1))},
			want:   Rejoin,
			reason: "superseded",
		},
		{
			name:   "finding 5: a dropped member still running (paused, partitioned) stops as soon as it reads the record",
			o:      ReplicaObservation{Ordinal: 2, Desired: 5, Now: now, Record: rebuilt, Local: func() Local { l := running(2, five...); l.Generation = 1; return l }()},
			want:   Halt,
			reason: "never serves again",
		},
		{
			name:   "a surplus dropped replica never rejoins",
			o:      ReplicaObservation{Ordinal: 4, Desired: 2, Now: now, Record: rebuilt, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x14, Generation: 1}, Cluster: reachable(voter(0))},
			want:   Wait,
			reason: "surplus",
		},
		{
			name:   "finding 2: the other survivor waits while one holds the rebuild claim, whatever its disk says",
			o:      ReplicaObservation{Ordinal: 1, Desired: 2, Now: now, Record: rebuildClaim(0, now), Local: leaderless(running(1, five...), time.Minute), Peers: []Peer{{Ordinal: 0, Reachable: true, HasData: true, ClusterID: cid, MemberID: 0x10}}, Gone: map[int]bool{2: true, 3: true, 4: true}},
			want:   Wait,
			reason: "holds the rebuild claim",
		},
		{
			// The exact state of finding 2 on a357f7d, where the second
			// survivor decided to rebuild too: the winner's forced start
			// runs, so its agent reports Running=false and the applied
			// index of its disk inspection from before.
			name: "finding 2: while the winner's forced start runs, the other survivor does not rebuild",
			o: ReplicaObservation{Ordinal: 1, Desired: 2, Now: now, RebuildAfter: 2 * time.Second, Record: rebuildClaim(0, now),
				Local: func() Local {
					l := leaderless(running(1, five...), time.Minute)
					l.AppliedStableFor = time.Minute
					return l
				}(),
				Peers: []Peer{{Ordinal: 0, Reachable: true, HasData: true, ClusterID: cid, MemberID: 0x10, AppliedIndex: 90}},
				Gone:  map[int]bool{2: true, 3: true, 4: true}},
			want:   Wait,
			reason: "holds the rebuild claim",
		},
		{
			name: "a rebuild claim whose holder lost its data is stale after a minute",
			o: ReplicaObservation{Ordinal: 1, Desired: 2, Now: now, Record: rebuildClaim(0, now.Add(-2*ClaimStaleAfter)),
				Local: Local{Data: DataEmpty}, Peers: []Peer{{Ordinal: 0, Reachable: true}}},
			want:   Wait,
			reason: "founded here",
		},
		{
			name:   "finding 7: data of the recorded cluster never rejoins a cluster the record does not name",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Now: now, Record: founded(cid), Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x11, Generation: 1}, Cluster: Cluster{Reachable: true, ClusterID: other, Members: []Member{voter(0)}}},
			want:   Wait,
			reason: "never rejoining a cluster the record does not name",
		},
		{
			name:   "finding 7: an empty replica never joins a cluster whose founding is not recorded yet",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Now: now, Record: Record{Claim: &Claim{Kind: ClaimFound, Holder: 0}}, Local: Local{Data: DataEmpty}, Cluster: reachable(voter(0))},
			want:   Wait,
			reason: "has not recorded its founding",
		},
		{
			name:   "finding 7: an empty replica never joins a cluster the record does not name",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Now: now, Record: founded(other), Local: Local{Data: DataEmpty}, Cluster: reachable(voter(0))},
			want:   Wait,
			reason: "never joining a cluster the record does not name",
		},
		{
			name:   "finding 7: ordinal 0 retries its own unfinished founding when nobody holds data",
			o:      ReplicaObservation{Ordinal: 0, Desired: 3, Now: now, Record: Record{Claim: &Claim{Kind: ClaimFound, Holder: 0}}, Local: Local{Data: DataEmpty}, Peers: []Peer{{Ordinal: 1, Reachable: true}}},
			want:   Bootstrap,
			reason: "founding again",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ReplicaNext(tt.o)
			if d.Mode != tt.want || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("ReplicaNext = %s (%s), want %s (%q)", d.Mode, d.Reason, tt.want, tt.reason)
			}
		})
	}
}

func TestFinishClaim(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	base := Record{ClusterID: cid, Generation: 1, Members: []ID{0x10}}
	claim := func(kind ClaimKind, holder int) Record {
		r := base
		r.Claim = &Claim{Kind: kind, Holder: holder, Member: ID(0x10 + holder)}
		return r
	}
	forced := running(1, voter(1))
	forced.Leader = 0x11
	tests := []struct {
		name    string
		o       ReplicaObservation
		wantOK  bool
		wantGen uint64
		claim   bool
	}{
		{name: "the rebuild's forced start ran: next generation with the survivor", o: ReplicaObservation{Ordinal: 1, Now: now, Record: claim(ClaimRebuild, 1), Local: forced}, wantOK: true, wantGen: 2},
		{name: "not forced yet: nothing to record", o: ReplicaObservation{Ordinal: 1, Now: now, Record: claim(ClaimRebuild, 1), Local: leaderless(running(1, voter(0), voter(1), voter(2)), time.Second)}, claim: true, wantGen: 1},
		{name: "quorum came back: the claim is released, same generation", o: ReplicaObservation{Ordinal: 1, Now: now, Record: claim(ClaimRebuild, 1), Local: running(1, voter(0), voter(1), voter(2))}, wantOK: true, wantGen: 1},
		{name: "another replica's claim is not ours to finish", o: ReplicaObservation{Ordinal: 2, Now: now, Record: claim(ClaimRebuild, 1), Local: forced}, claim: true, wantGen: 1},
		{name: "a founding whose member serves is recorded", o: ReplicaObservation{Ordinal: 0, Now: now, Record: Record{Claim: &Claim{Kind: ClaimFound}}, Local: running(0, voter(0))}, wantOK: true, wantGen: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FinishClaim(tt.o, "vetcd-x")
			if ok != tt.wantOK || got.Generation != tt.wantGen || (got.Claim != nil) != tt.claim {
				t.Errorf("FinishClaim = %s, %v; want generation %d, ok %v, claim left %v", got.Encode(), ok, tt.wantGen, tt.wantOK, tt.claim)
			}
		})
	}
}

// Safety rule 7: a second restore of the same snapshot moves the revision
// above everything served, never back to the first restore's bump.
func TestNextBump(t *testing.T) {
	const min = 1_000_000_000
	first := NextBump(Record{}, 0, 500, min)
	if first != min {
		t.Fatalf("first restore bump %d, want %d", first, min)
	}
	served := 500 + first + 1234 // writes after the first restore
	rec := Record{MaxRevision: 500 + first}
	second := NextBump(rec, served, 500, min)
	if 500+second <= served {
		t.Fatalf("second restore lands at revision %d, not above the %d served", 500+second, served)
	}
	rec.Claim = &Claim{Kind: ClaimRestore, ServedRevision: served + 10}
	if b := NextBump(rec, 0, 500, min); 500+b <= served+10 {
		t.Fatalf("bump %d ignores the revision recorded with the claim", b)
	}
}

// Finding 8: a rolling change that leaves one replica's config on an old
// snapshot URL must not restore it again after a newer restore.
func TestRestoreNeeded(t *testing.T) {
	rec := Record{ClusterID: cid, Generation: 3, Restored: []string{"file:///a", "file:///b"}}
	for _, tt := range []struct {
		rec  Record
		url  string
		want bool
	}{
		{rec, "", false},
		{rec, "file:///a", false},
		{rec, "file:///b", false},
		{rec, "file:///c", true},
		{Record{Claim: &Claim{Kind: ClaimRestore, URL: "file:///c"}}, "file:///d", false},
		{Record{Claim: &Claim{Kind: ClaimRebuild}}, "file:///d", false},
	} {
		if got := RestoreNeeded(tt.rec, tt.url); got != tt.want {
			t.Errorf("RestoreNeeded(%+v, %q) = %v, want %v", tt.rec, tt.url, got, tt.want)
		}
	}
}

// Every claim finishes through NextGeneration: the generation grows by one,
// the claim is gone, the member alone is the voter, and what is kept from
// the old record (restored URLs, highest revision) stays.
func TestNextGeneration(t *testing.T) {
	at := time.Date(2026, 12, 3, 14, 0, 0, 0, time.FixedZone("CET", 3600))
	old := Record{ClusterID: 0xa, Generation: 4, Members: []ID{1, 2, 3}, MaxRevision: 900,
		Restored: []string{"file:///s.db"}, Claim: &Claim{Kind: ClaimRebuild, Holder: 0, Member: 1}}
	tests := []struct {
		name    string
		rec     Record
		cluster ID
		want    uint64
	}{
		{"rebuild keeps the cluster ID", old, 0xa, 5},
		{"upgrade or restore into a new cluster ID", old, 0xb, 5},
		{"founding from an empty record", Record{Claim: &Claim{Kind: ClaimFound}}, 0xc, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NextGeneration(tt.rec, tt.cluster, 7, Made{How: OriginRebuilt, By: "vetcd-0", At: at})
			if got.Generation != tt.want || got.Claim != nil || got.ClusterID != tt.cluster ||
				len(got.Members) != 1 || got.Members[0] != 7 {
				t.Fatalf("NextGeneration = %+v, want generation %d of cluster %s with member 7 and no claim", got, tt.want, tt.cluster)
			}
			if got.MaxRevision != tt.rec.MaxRevision || len(got.Restored) != len(tt.rec.Restored) {
				t.Fatalf("NextGeneration lost MaxRevision or Restored: %+v", got)
			}
			if got.Made.At.Location() != time.UTC || !got.Made.At.Equal(at) {
				t.Fatalf("Made.At = %v, want %v in UTC", got.Made.At, at)
			}
			if tt.rec.Claim == nil {
				t.Fatalf("NextGeneration cleared the claim of the record it was given")
			}
		})
	}
}

func TestRaiseMaxRevision(t *testing.T) {
	now := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	rec := Record{Version: RecordVersion, ClusterID: 0xc, Generation: 2, Members: []ID{1}, MaxRevision: 500, MaxRevisionAt: now.Add(-2 * time.Minute)}
	leader := Local{Running: true, ClusterID: 0xc, MemberID: 1, Leader: 1, Generation: 2, Revision: 900}
	tests := []struct {
		name  string
		rec   func(Record) Record
		local func(Local) Local
		at    time.Time
		want  bool
	}{
		{"leader of the current generation, a minute after the last raise", nil, nil, now, true},
		{"first raise of a record that never had one", func(r Record) Record { r.MaxRevision, r.MaxRevisionAt = 0, time.Time{}; return r }, nil, now, true},
		{"raised less than a minute ago", nil, nil, rec.MaxRevisionAt.Add(30 * time.Second), false},
		{"a follower does not write", nil, func(l Local) Local { l.Leader = 2; return l }, now, false},
		{"no leader", nil, func(l Local) Local { l.Leader = 0; return l }, now, false},
		{"etcd down", nil, func(l Local) Local { l.Running = false; return l }, now, false},
		{"revision not above the recorded one", nil, func(l Local) Local { l.Revision = 500; return l }, now, false},
		{"a claim is in flight", func(r Record) Record { r.Claim = &Claim{Kind: ClaimRestore, Holder: 1}; return r }, nil, now, false},
		{"data of a superseded generation", nil, func(l Local) Local { l.MemberID, l.Leader, l.Generation = 9, 9, 1; return l }, now, false},
		{"another cluster", nil, func(l Local) Local { l.ClusterID = 0xd; return l }, now, false},
		{"no cluster founded yet", func(Record) Record { return Record{Version: RecordVersion} }, nil, now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, l := rec, leader
			if tt.rec != nil {
				r = tt.rec(r)
			}
			if tt.local != nil {
				l = tt.local(l)
			}
			got, ok := RaiseMaxRevision(ReplicaObservation{Record: r, Local: l, Now: tt.at})
			if ok != tt.want {
				t.Fatalf("RaiseMaxRevision = %v, want %v", ok, tt.want)
			}
			if ok && (got.MaxRevision != l.Revision || !got.MaxRevisionAt.Equal(tt.at) || got.Generation != r.Generation) {
				t.Fatalf("raised record %+v, want MaxRevision %d at %v, generation kept", got, l.Revision, tt.at)
			}
			if !ok && !reflect.DeepEqual(got, r) {
				t.Fatalf("record changed without a write: %+v", got)
			}
		})
	}
}
