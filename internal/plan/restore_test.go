package plan

import (
	"strings"
	"testing"
)

func TestReplicaNextRestore(t *testing.T) {
	const url = "file:///backups/s1"
	req := Record{ClusterID: cid, Generation: 1, Claim: &Claim{Kind: ClaimRestore, Holder: 1, URL: url}}
	restored := func(id uint64) Record {
		return Record{ClusterID: ID(id), Generation: 2, Members: []ID{0x99}, Made: &Made{How: OriginRestored, URL: url}, Restored: []string{url}}
	}
	three := []Member{voter(0), voter(1), voter(2)}
	stopped := func(ord int) Peer { return peer(ord, 100) }
	runningPeer := func(ord int) Peer { p := peer(ord, 100); p.Running = true; return p }
	valid := func(ord int) Local {
		return Local{Data: DataValid, ClusterID: cid, MemberID: uint64(0x10 + ord), AppliedIndex: 100, Generation: 2}
	}
	tests := []struct {
		name   string
		o      ReplicaObservation
		want   Mode
		reason string
	}{
		{
			name:   "a running member halts when a restore is requested, whoever requested it",
			o:      ReplicaObservation{Ordinal: 0, Desired: 3, Record: req, Local: running(0, three...), Cluster: reachable(three...)},
			want:   Halt,
			reason: "stopping this member",
		},
		{
			name: "the requester halts its own member first",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, Record: req, Local: running(1, three...)},
			want: Halt,
		},
		{
			name:   "a stopped replica that did not request waits, even with a live cluster to rejoin",
			o:      ReplicaObservation{Ordinal: 2, Desired: 3, Record: req, Local: valid(2), Cluster: reachable(three...)},
			want:   Wait,
			reason: "replica 1 restores it",
		},
		{
			name: "ordinal 0 with empty data waits for the requester instead of bootstrapping",
			o:    ReplicaObservation{Ordinal: 0, Desired: 3, Record: req, Local: Local{Data: DataEmpty}},
			want: Wait,
		},
		{
			name:   "the requester waits while a peer's member still runs",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Record: req, Local: valid(1), Peers: []Peer{stopped(0), runningPeer(2)}},
			want:   Wait,
			reason: "replica 2 to stop",
		},
		{
			name:   "the requester waits for a silent peer that is not confirmed gone",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Record: req, Local: valid(1), Peers: []Peer{stopped(0), {Ordinal: 2}}, Gone: map[int]bool{2: false}},
			want:   Wait,
			reason: "not confirmed gone",
		},
		{
			name: "the requester restores once every peer is stopped or gone",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, Record: req, Local: valid(1), Peers: []Peer{stopped(0), {Ordinal: 2}}, Gone: map[int]bool{2: true}},
			want: Restore,
		},
		{
			name: "the requester restores with no data at all (every volume lost)",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, Record: req, Local: Local{Data: DataEmpty}, Peers: []Peer{{Ordinal: 0, Reachable: true}, {Ordinal: 2, Reachable: true}}},
			want: Restore,
		},
		{
			name:   "after the restore, old data never restarts while the new cluster is not reachable",
			o:      ReplicaObservation{Ordinal: 2, Desired: 3, Record: restored(other), Local: valid(2)},
			want:   Wait,
			reason: "was founded since",
		},
		{
			name: "after the restore, old data rejoins the new cluster",
			o: ReplicaObservation{Ordinal: 2, Desired: 3, Record: restored(other), Local: valid(2),
				Cluster: Cluster{Reachable: true, ClusterID: other, Members: []Member{voter(1)}}},
			want: Rejoin,
		},
		{
			name: "a member still running the old cluster after the restore stops",
			o:    ReplicaObservation{Ordinal: 2, Desired: 3, Record: restored(other), Local: running(2, three...)},
			want: Halt,
		},
		{
			name: "data of the recorded cluster and generation restarts as before",
			o:    ReplicaObservation{Ordinal: 2, Desired: 3, Record: restored(cid), Local: valid(2)},
			want: Restart,
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
