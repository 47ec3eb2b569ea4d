package plan

import (
	"strings"
	"testing"
	"time"
)

const (
	cid   = 0xc1
	other = 0xc2
)

// voter and learner build members of cluster cid with ID 0x10+ordinal.
func voter(ord int) Member {
	return Member{ID: uint64(0x10 + ord), Name: name(ord), Ordinal: ord, Started: true, Healthy: true}
}

func learner(ord int) Member {
	m := voter(ord)
	m.IsLearner = true
	return m
}

func name(ord int) string { return "vetcd-" + string(rune('0'+ord)) }

func reachable(ms ...Member) Cluster { return Cluster{Reachable: true, ClusterID: cid, Members: ms} }

func running(ord int, members ...Member) Local {
	return Local{Data: DataValid, Running: true, ClusterID: cid, MemberID: uint64(0x10 + ord), Leader: 0x10, Members: members, AppliedIndex: 100}
}

// leaderless has seen no leader for d, and its applied index has settled.
func leaderless(l Local, d time.Duration) Local {
	l.Leader = 0
	l.LeaderlessFor = d
	l.AppliedStableFor = RebuildSettle
	return l
}

func peer(ord int, applied uint64) Peer {
	return Peer{Ordinal: ord, Reachable: true, HasData: true, ClusterID: cid, MemberID: uint64(0x10 + ord), AppliedIndex: applied}
}

// survivor is a running peer whose applied index has settled.
func survivor(ord int, applied uint64) Peer {
	return survivorStableFor(ord, applied, RebuildSettle)
}

// survivorStableFor is a running peer whose applied index has not moved
// for d (0: the peer did not say).
func survivorStableFor(ord int, applied uint64, d time.Duration) Peer {
	p := peer(ord, applied)
	p.Running = true
	p.AppliedStableFor = d
	return p
}

func runningPeer(ord int) Peer {
	p := peer(ord, 100)
	p.Running = true
	return p
}

func TestReplicaNext(t *testing.T) {
	three := []Member{voter(0), voter(1), voter(2)}
	tests := []struct {
		name   string
		o      ReplicaObservation
		want   Mode
		reason string // substring of the reason
	}{
		// Empty data dir.
		{
			name: "first start: ordinal 0 with no data, no peers with data, no record bootstraps",
			o:    ReplicaObservation{Ordinal: 0, Desired: 3, Peers: []Peer{{Ordinal: 1, Reachable: true}, {Ordinal: 2}}},
			want: Bootstrap,
		},
		{
			name:   "first start: ordinal 1 waits for ordinal 0",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3},
			want:   Wait,
			reason: "ordinal 0",
		},
		{
			name: "empty replica joins a live cluster",
			o:    ReplicaObservation{Ordinal: 2, Desired: 3, Cluster: reachable(voter(0), voter(1))},
			want: Join,
		},
		{
			name: "empty ordinal 0 joins the live cluster instead of bootstrapping",
			o:    ReplicaObservation{Ordinal: 0, Desired: 3, Cluster: reachable(voter(1), voter(2)), Record: founded(cid)},
			want: Join,
		},
		{
			name:   "empty ordinal 0 never bootstraps beside a peer holding data, even without quorum",
			o:      ReplicaObservation{Ordinal: 0, Desired: 3, Peers: []Peer{peer(1, 50)}},
			want:   Wait,
			reason: "never founding a second cluster",
		},
		{
			name:   "empty ordinal 0 never bootstraps when a cluster record exists",
			o:      ReplicaObservation{Ordinal: 0, Desired: 1, Record: founded(cid)},
			want:   Wait,
			reason: "restore a snapshot",
		},
		{
			name:   "empty surplus replica does not join",
			o:      ReplicaObservation{Ordinal: 3, Desired: 3, Cluster: reachable(three...)},
			want:   Wait,
			reason: "not desired",
		},
		// Valid data.
		{
			name: "valid data, etcd down, no cluster visible: restart",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x11}},
			want: Restart,
		},
		{
			name: "valid data, still a member of the live cluster: restart",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x11}, Cluster: reachable(three...)},
			want: Restart,
		},
		{
			name: "valid data behind the cluster's compaction cannot be verified by etcd: rejoin",
			o: ReplicaObservation{Ordinal: 2, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x12, Revision: 40},
				Cluster: func() Cluster {
					c := reachable(three...)
					c.Unverifiable = "the cluster has compacted past revision 40"
					return c
				}()},
			want:   Rejoin,
			reason: "compacted past revision 40",
		},
		{
			name: "valid data compacted differently from the peers cannot be verified: rejoin",
			o: ReplicaObservation{Ordinal: 2, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x12, Revision: 40, CompactRevision: 10},
				Cluster: func() Cluster {
					c := reachable(three...)
					c.Unverifiable = "peers compacted to 30, this data to 10"
					return c
				}()},
			want:   Rejoin,
			reason: "cannot be verified",
		},
		{
			name: "unverifiable data while etcd runs on it: not this rule",
			o: ReplicaObservation{Ordinal: 2, Desired: 3, Local: running(2, three...),
				Cluster: func() Cluster {
					c := reachable(three...)
					c.Unverifiable = "peers compacted to 30, this data to 10"
					return c
				}()},
			want: Keep,
		},
		{
			name: "surplus replica behind the compaction waits",
			o: ReplicaObservation{Ordinal: 2, Desired: 2, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x12, Revision: 40},
				Cluster: func() Cluster {
					c := reachable(three...)
					c.Unverifiable = "the cluster has compacted past revision 40"
					return c
				}()},
			want:   Wait,
			reason: "surplus",
		},
		{
			name: "valid data, no quorum answers yet but two running peers hold one: wait to verify",
			o: ReplicaObservation{Ordinal: 0, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x10, Revision: 40, DownFor: time.Second},
				Peers: []Peer{runningPeer(1), runningPeer(2)}},
			want:   Wait,
			reason: "check the data against it",
		},
		{
			name: "valid data, peers hold a quorum but the wait is over: restart",
			o: ReplicaObservation{Ordinal: 0, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x10, Revision: 40, DownFor: VerifyWait},
				Peers: []Peer{runningPeer(1), runningPeer(2)}},
			want: Restart,
		},
		{
			name: "valid data, one running peer cannot form a quorum without this one: restart",
			o: ReplicaObservation{Ordinal: 0, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x10, Revision: 40, DownFor: time.Second},
				Peers: []Peer{runningPeer(1), peer(2, 90)}},
			want: Restart,
		},
		{
			name: "valid data, running peers are surplus replicas: restart",
			o: ReplicaObservation{Ordinal: 0, Desired: 1, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x10, Revision: 40, DownFor: time.Second},
				Peers: []Peer{runningPeer(1), runningPeer(2)}},
			want: Restart,
		},
		{
			name: "valid data not behind the compaction restarts",
			o:    ReplicaObservation{Ordinal: 2, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x12, Revision: 40}, Cluster: reachable(three...)},
			want: Restart,
		},
		{
			name:   "valid data of a member removed from outside: rejoin",
			o:      ReplicaObservation{Ordinal: 2, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x12}, Cluster: reachable(voter(0), voter(1))},
			want:   Rejoin,
			reason: "removed",
		},
		{
			name:   "running member removed from outside: rejoin",
			o:      ReplicaObservation{Ordinal: 2, Desired: 3, Local: leaderless(running(2, three...), time.Second), Cluster: reachable(voter(0), voter(1))},
			want:   Rejoin,
			reason: "removed",
		},
		{
			name:   "valid data of another cluster: rejoin",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Local: Local{Data: DataValid, ClusterID: other, MemberID: 0x11}, Cluster: reachable(three...)},
			want:   Rejoin,
			reason: "belongs to cluster",
		},
		{
			name:   "removed surplus replica does not rejoin",
			o:      ReplicaObservation{Ordinal: 2, Desired: 2, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x12}, Cluster: reachable(voter(0), voter(1))},
			want:   Wait,
			reason: "surplus",
		},
		{
			name: "running with a leader: keep",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, Local: running(1, three...)},
			want: Keep,
		},
		{
			name:   "etcd refuses to start on this data again and again: rejoin",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x11, StartFailures: 3, StartError: "found data inconsistency with peers"}, Cluster: reachable(three...)},
			want:   Rejoin,
			reason: "inconsistency",
		},
		{
			name: "failed starts without a live cluster: keep trying, keep the data",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x11, StartFailures: 9}},
			want: Restart,
		},
		{
			name:   "a failed start left the data locked: rejoin at once",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x11, StartFailures: 1, StartError: "found data inconsistency with peers", DataLocked: true}, Cluster: reachable(three...)},
			want:   Rejoin,
			reason: "inconsistency",
		},
		{
			name:   "locked data and no live cluster: wait, never restart into etcd's fatal lock error",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Local: Local{Data: DataValid, ClusterID: cid, MemberID: 0x11, StartFailures: 1, DataLocked: true}},
			want:   Wait,
			reason: "locked",
		},
		// Left and corrupt.
		{
			name: "left on scale-down and desired again: rejoin",
			o:    ReplicaObservation{Ordinal: 2, Desired: 3, Local: Local{Data: DataLeft, ClusterID: cid, MemberID: 0x12}, Cluster: reachable(voter(0), voter(1))},
			want: Rejoin,
		},
		{
			name: "left and not desired: wait",
			o:    ReplicaObservation{Ordinal: 2, Desired: 1, Local: Local{Data: DataLeft}, Cluster: reachable(voter(0))},
			want: Wait,
		},
		{
			name:   "corrupt data with a live cluster: rejoin",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Local: Local{Data: DataCorrupt, DataProblem: "db missing"}, Cluster: reachable(three...)},
			want:   Rejoin,
			reason: "db missing",
		},
		{
			name:   "corrupt data and no quorum anywhere: keep the data and wait",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Local: Local{Data: DataCorrupt, DataProblem: "db missing"}},
			want:   Wait,
			reason: "keeping the data",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ReplicaNext(tc.o)
			if got.Mode != tc.want {
				t.Fatalf("mode = %v (%s), want %v", got.Mode, got.Reason, tc.want)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("reason %q does not contain %q", got.Reason, tc.reason)
			}
		})
	}
}

func TestReplicaNextRebuild(t *testing.T) {
	after := 5 * time.Second
	three := []Member{voter(0), voter(1), voter(2)}
	five := []Member{voter(0), voter(1), voter(2), voter(3), voter(4)}
	gone := func(ords ...int) map[int]bool {
		m := map[int]bool{}
		for _, o := range ords {
			m[o] = true
		}
		return m
	}
	tests := []struct {
		name   string
		o      ReplicaObservation
		want   Mode
		reason string
	}{
		{
			name:   "3 to 1, surplus gone, leaderless long enough: rebuild",
			o:      ReplicaObservation{Ordinal: 0, Desired: 1, Local: leaderless(running(0, three...), after), Gone: gone(1, 2), RebuildAfter: after},
			want:   Rebuild,
			reason: "below quorum",
		},
		{
			name: "3 to 1 but not leaderless for long: keep",
			o:    ReplicaObservation{Ordinal: 0, Desired: 1, Local: leaderless(running(0, three...), time.Second), Gone: gone(1, 2), RebuildAfter: after},
			want: Keep,
		},
		{
			name:   "3 to 1 while a surplus replica may still run: wait",
			o:      ReplicaObservation{Ordinal: 0, Desired: 1, Local: leaderless(running(0, three...), after), Gone: gone(2), RebuildAfter: after},
			want:   Wait,
			reason: "surplus replica 1",
		},
		{
			name: "3 to 2 loses no quorum: no rebuild, wait for the peer",
			o:    ReplicaObservation{Ordinal: 0, Desired: 2, Local: leaderless(running(0, three...), after), Gone: gone(2), Peers: []Peer{survivor(1, 90)}, RebuildAfter: after},
			want: Keep,
		},
		{
			name: "two of three down with desired 3: no quorum, but never a rebuild",
			o:    ReplicaObservation{Ordinal: 0, Desired: 3, Local: leaderless(running(0, three...), time.Hour), Gone: gone(1, 2), RebuildAfter: after},
			want: Keep,
		},
		{
			name: "5 to 2, surplus gone, this survivor most up to date: rebuild",
			o: ReplicaObservation{Ordinal: 0, Desired: 2, Local: leaderless(running(0, five...), after), Gone: gone(2, 3, 4),
				Peers: []Peer{survivor(1, 99)}, RebuildAfter: after},
			want: Rebuild,
		},
		{
			name: "5 to 2, the other survivor is ahead: it rebuilds, this one waits",
			o: ReplicaObservation{Ordinal: 0, Desired: 2, Local: leaderless(running(0, five...), after), Gone: gone(2, 3, 4),
				Peers: []Peer{survivor(1, 101)}, RebuildAfter: after},
			want:   Wait,
			reason: "replica 1 (applied 101) is the most up to date",
		},
		{
			name: "5 to 2, this survivor's applied index still moves: wait before comparing (chaos finding 6)",
			o: ReplicaObservation{Ordinal: 0, Desired: 2, Local: func() Local {
				l := leaderless(running(0, five...), after)
				l.AppliedStableFor = RebuildSettle / 2
				return l
			}(), Gone: gone(2, 3, 4), Peers: []Peer{survivor(1, 90)}, RebuildAfter: after},
			want:   Wait,
			reason: "settle",
		},
		{
			name: "3 to 1 with the surplus killed while this member leads: rebuild without waiting for check-quorum to step it down",
			o: ReplicaObservation{Ordinal: 0, Desired: 1, Local: func() Local {
				l := running(0, voter(0), voter(1), voter(2))
				l.BelowQuorumFor = after
				return l
			}(), Gone: gone(1, 2), RebuildAfter: after},
			want: Rebuild,
		},
		{
			name: "3 to 1 while this member leads, a surplus voter still running (leaving): no rebuild",
			o: ReplicaObservation{Ordinal: 0, Desired: 1, Local: func() Local {
				l := running(0, voter(0), voter(1), voter(2))
				l.BelowQuorumFor = after
				return l
			}(), Gone: gone(1), RebuildAfter: after},
			want:   Wait,
			reason: "waiting for surplus replica 2 to be gone",
		},
		{
			name: "a leader that just saw the scale-down waits RebuildAfter",
			o: ReplicaObservation{Ordinal: 0, Desired: 1, Local: func() Local {
				l := running(0, voter(0), voter(1), voter(2))
				l.BelowQuorumFor = after / 2
				return l
			}(), Gone: gone(1, 2), RebuildAfter: after},
			want: Keep,
		},
		{
			name: "3 to 1, the lone survivor rebuilds without waiting for its index to settle: nothing to compare",
			o: ReplicaObservation{Ordinal: 0, Desired: 1, Local: func() Local {
				l := leaderless(running(0, voter(0), voter(1), voter(2)), after)
				l.AppliedStableFor = 0
				return l
			}(), Gone: gone(1, 2), RebuildAfter: after},
			want: Rebuild,
		},
		{
			name: "5 to 2, the other survivor's applied index still moves: wait before comparing (chaos finding 6)",
			o: ReplicaObservation{Ordinal: 0, Desired: 2, Local: leaderless(running(0, five...), after), Gone: gone(2, 3, 4),
				Peers: []Peer{survivorStableFor(1, 90, RebuildSettle/2)}, RebuildAfter: after},
			want:   Wait,
			reason: "waiting for replica 1's applied index (90) to settle",
		},
		{
			name: "5 to 2, the other survivor's agent does not say whether its index settled: wait",
			o: ReplicaObservation{Ordinal: 0, Desired: 2, Local: leaderless(running(0, five...), after), Gone: gone(2, 3, 4),
				Peers: []Peer{survivorStableFor(1, 90, 0)}, RebuildAfter: after},
			want:   Wait,
			reason: "to settle",
		},
		{
			name: "5 to 2, the other survivor's etcd is down: its data dir's index cannot move, compare it",
			o: ReplicaObservation{Ordinal: 0, Desired: 2, Local: leaderless(running(0, five...), after), Gone: gone(2, 3, 4),
				Peers: []Peer{peer(1, 99)}, RebuildAfter: after},
			want: Rebuild,
		},
		{
			name: "5 to 2, tie: the lowest ordinal rebuilds",
			o: ReplicaObservation{Ordinal: 1, Desired: 2, Local: leaderless(running(1, five...), after), Gone: gone(2, 3, 4),
				Peers: []Peer{survivor(0, 100)}, RebuildAfter: after},
			want:   Wait,
			reason: "replica 0",
		},
		{
			name: "5 to 2, the other survivor's agent is silent: wait",
			o: ReplicaObservation{Ordinal: 0, Desired: 2, Local: leaderless(running(0, five...), after), Gone: gone(2, 3, 4),
				Peers: []Peer{{Ordinal: 1}}, RebuildAfter: after},
			want:   Wait,
			reason: "agent",
		},
		{
			name: "already rebuilt from this member list: never force twice",
			o: func() ReplicaObservation {
				l := leaderless(running(0, three...), after)
				l.RebuiltFrom = Fingerprint(three)
				return ReplicaObservation{Ordinal: 0, Desired: 1, Local: l, Gone: gone(1, 2), RebuildAfter: after}
			}(),
			want:   Wait,
			reason: "already rebuilt",
		},
		{
			name:   "a voter owned by no replica blocks the rebuild",
			o:      ReplicaObservation{Ordinal: 0, Desired: 1, Local: leaderless(running(0, voter(0), Member{ID: 0x99, Ordinal: NoOrdinal, Started: true}, voter(2)), after), Gone: gone(2), RebuildAfter: after},
			want:   Wait,
			reason: "no known replica",
		},
		{
			name: "a learner survivor does not rebuild",
			o:    ReplicaObservation{Ordinal: 0, Desired: 1, Local: leaderless(running(0, learner(0), voter(1), voter(2)), after), Gone: gone(1, 2), RebuildAfter: after},
			want: Keep,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ReplicaNext(tc.o)
			if got.Mode != tc.want {
				t.Fatalf("mode = %v (%s), want %v", got.Mode, got.Reason, tc.want)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("reason %q does not contain %q", got.Reason, tc.reason)
			}
		})
	}
}

// TestReplicaNextNeverTwoClusters checks safety rule 2 over many
// observations: whenever any peer holds data, a cluster answers, or a
// record exists, no replica bootstraps; and only ordinal 0 ever does.
func TestReplicaNextNeverTwoClusters(t *testing.T) {
	for ord := 0; ord < 4; ord++ {
		for desired := 0; desired < 5; desired++ {
			for _, peerData := range []bool{false, true} {
				for _, live := range []bool{false, true} {
					for _, rec := range []Record{{}, founded(cid), {Claim: &Claim{Kind: ClaimFound, Holder: 1}}, {Claim: &Claim{Kind: ClaimRestore, Holder: 2}}} {
						o := ReplicaObservation{Ordinal: ord, Desired: desired, Record: rec}
						if peerData {
							o.Peers = []Peer{peer((ord+1)%4, 1)}
						}
						if live {
							o.Cluster = reachable(voter((ord + 1) % 4))
						}
						d := ReplicaNext(o)
						if d.Mode != Bootstrap {
							continue
						}
						if ord != 0 || peerData || live || !rec.Empty() || desired == 0 {
							t.Errorf("bootstrap with ordinal=%d desired=%d peerData=%v live=%v record=%+v", ord, desired, peerData, live, rec)
						}
					}
				}
			}
		}
	}
}

// founded is the record of cluster id, generation 1, founded by member
// 0x10 (ordinal 0).
func founded(id uint64) Record {
	return Record{ClusterID: ID(id), Generation: 1, Members: []ID{0x10}, Made: &Made{How: OriginFounded, By: "vetcd-0"}}
}
