package plan

import (
	"strings"
	"testing"
)

func TestRestoreRecords(t *testing.T) {
	const url = "s3://bucket/snaps/vetcd-c1-20261124?endpoint=minio:9000"
	req := RestoreRequestRecord(2, url, "2026-11-24T01:00:00Z")
	done := RestoredRecord(0xabc, url, 2, 1234, 1_000_000_000, "2026-11-24T01:00:05Z")
	tests := []struct {
		record      string
		wantReq     bool
		wantBy      int
		wantFrom    string
		wantID      uint64
		wantIDOK    bool
		restoredURL string
		needed      bool // RestoreNeeded(record, url)
	}{
		{record: "", needed: true},
		{record: "founding vetcd-0 at 2026-11-24T00:00:00Z", needed: true},
		{record: "cluster e3c22db0480411dc founded by vetcd-0 at 2026-11-24T00:00:00Z", wantID: 0xe3c22db0480411dc, wantIDOK: true, needed: true},
		{record: req, wantReq: true, wantBy: 2, wantFrom: url, needed: false},
		{record: done, wantID: 0xabc, wantIDOK: true, restoredURL: url, needed: false},
		// The local CLI's record names the URL the same way.
		{record: "cluster 9f restored from file:///b/s1 (revision 7, bumped by 1000000000) at T", wantID: 0x9f, wantIDOK: true, restoredURL: "file:///b/s1", needed: true},
		{record: "restore requested by replica x from u at t", needed: true},
		{record: "restore requested by replica 1 to u at t", needed: true},
		{record: "cluster zz founded", needed: true},
	}
	for _, tt := range tests {
		t.Run(tt.record, func(t *testing.T) {
			r, ok := ParseRestoreRequest(tt.record)
			if ok != tt.wantReq || (ok && (r.By != tt.wantBy || r.From != tt.wantFrom)) {
				t.Errorf("ParseRestoreRequest = %+v, %t; want by %d from %q, %t", r, ok, tt.wantBy, tt.wantFrom, tt.wantReq)
			}
			id, ok := RecordClusterID(tt.record)
			if ok != tt.wantIDOK || id != tt.wantID {
				t.Errorf("RecordClusterID = %x, %t; want %x, %t", id, ok, tt.wantID, tt.wantIDOK)
			}
			if got := RecordRestoredFrom(tt.record); got != tt.restoredURL {
				t.Errorf("RecordRestoredFrom = %q, want %q", got, tt.restoredURL)
			}
			if got := RestoreNeeded(tt.record, url); got != tt.needed {
				t.Errorf("RestoreNeeded = %t, want %t", got, tt.needed)
			}
		})
	}
	if RestoreNeeded("", "") {
		t.Error("RestoreNeeded with no URL configured must be false")
	}
}

func TestReplicaNextRestore(t *testing.T) {
	const url = "file:///backups/s1"
	req := RestoreRequestRecord(1, url, "T")
	three := []Member{voter(0), voter(1), voter(2)}
	stopped := func(ord int) Peer { return peer(ord, 100) }
	runningPeer := func(ord int) Peer { p := peer(ord, 100); p.Running = true; return p }
	valid := func(ord int) Local {
		return Local{Data: DataValid, ClusterID: cid, MemberID: uint64(0x10 + ord), AppliedIndex: 100}
	}
	tests := []struct {
		name   string
		o      ReplicaObservation
		want   Mode
		reason string
	}{
		{
			name:   "a running member halts when a restore is requested, whoever requested it",
			o:      ReplicaObservation{Ordinal: 0, Desired: 3, ClusterRecord: req, Local: running(0, three...), Cluster: reachable(three...)},
			want:   Halt,
			reason: "stopping this member",
		},
		{
			name: "the requester halts its own member first",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, ClusterRecord: req, Local: running(1, three...)},
			want: Halt,
		},
		{
			name:   "a stopped replica that did not request waits, even with a live cluster to rejoin",
			o:      ReplicaObservation{Ordinal: 2, Desired: 3, ClusterRecord: req, Local: valid(2), Cluster: reachable(three...)},
			want:   Wait,
			reason: "replica 1 restores it",
		},
		{
			name: "ordinal 0 with empty data waits for the requester instead of bootstrapping",
			o:    ReplicaObservation{Ordinal: 0, Desired: 3, ClusterRecord: req, Local: Local{Data: DataEmpty}},
			want: Wait,
		},
		{
			name:   "the requester waits while a peer's member still runs",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, ClusterRecord: req, Local: valid(1), Peers: []Peer{stopped(0), runningPeer(2)}},
			want:   Wait,
			reason: "replica 2 to stop",
		},
		{
			name:   "the requester waits for a silent peer that is not confirmed gone",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, ClusterRecord: req, Local: valid(1), Peers: []Peer{stopped(0), {Ordinal: 2}}, Gone: map[int]bool{2: false}},
			want:   Wait,
			reason: "not confirmed gone",
		},
		{
			name: "the requester restores once every peer is stopped or gone",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, ClusterRecord: req, Local: valid(1), Peers: []Peer{stopped(0), {Ordinal: 2}}, Gone: map[int]bool{2: true}},
			want: Restore,
		},
		{
			name: "the requester restores with no data at all (every volume lost)",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, ClusterRecord: req, Local: Local{Data: DataEmpty}, Peers: []Peer{{Ordinal: 0, Reachable: true}, {Ordinal: 2, Reachable: true}}},
			want: Restore,
		},
		{
			name:   "after the restore, old data never restarts while the new cluster is not reachable",
			o:      ReplicaObservation{Ordinal: 2, Desired: 3, ClusterRecord: RestoredRecord(other, url, 1, 9, 1000, "T"), Local: valid(2)},
			want:   Wait,
			reason: "was founded since",
		},
		{
			name: "after the restore, old data rejoins the new cluster",
			o: ReplicaObservation{Ordinal: 2, Desired: 3, ClusterRecord: RestoredRecord(other, url, 1, 9, 1000, "T"), Local: valid(2),
				Cluster: Cluster{Reachable: true, ClusterID: other, Members: []Member{voter(1)}}},
			want: Rejoin,
		},
		{
			name: "data of the recorded cluster restarts as before",
			o:    ReplicaObservation{Ordinal: 2, Desired: 3, ClusterRecord: RestoredRecord(cid, url, 1, 9, 1000, "T"), Local: valid(2)},
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
