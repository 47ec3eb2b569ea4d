package plan

import (
	"strings"
	"testing"
)

func TestStorageGate(t *testing.T) {
	v35, v36, v37, v38 := StorageVersion{}, StorageVersion{3, 6}, StorageVersion{3, 7}, StorageVersion{3, 8}
	stopped := func(s Storage) Local {
		s.Binary = v37
		return Local{Data: DataValid, ClusterID: cid, MemberID: 0x10, Storage: s}
	}
	tests := []struct {
		name   string
		o      ReplicaObservation
		want   Mode
		reason string
	}{
		{
			name: "3.7 data restarts in place",
			o:    ReplicaObservation{Ordinal: 0, Desired: 3, Local: stopped(Storage{Version: v37})},
			want: Restart,
		},
		{
			name: "3.6 data restarts in place (etcd upgrades it to 3.7)",
			o:    ReplicaObservation{Ordinal: 1, Desired: 3, Local: stopped(Storage{Version: v36})},
			want: Restart,
		},
		{
			name: "our own data without a version yet (stopped in its first seconds) restarts",
			o:    ReplicaObservation{Ordinal: 0, Desired: 3, Local: stopped(Storage{Version: v35, Ours: true})},
			want: Restart,
		},
		{
			name:   "3.5 data on ordinal 0 with no live cluster is upgraded",
			o:      ReplicaObservation{Ordinal: 0, Desired: 3, Local: stopped(Storage{Version: v35}), Peers: []Peer{peer(1, 5)}},
			want:   Upgrade,
			reason: "snapshot and restore",
		},
		{
			name:   "3.5 data on ordinal 0 beside a live cluster rejoins, never starting in place",
			o:      ReplicaObservation{Ordinal: 0, Desired: 3, Local: stopped(Storage{Version: v35}), Cluster: reachable(voter(1), voter(2))},
			want:   Rejoin,
			reason: "never started in place",
		},
		{
			name:   "3.5 data on ordinal 1 waits for ordinal 0's upgrade",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Local: stopped(Storage{Version: v35})},
			want:   Wait,
			reason: "ordinal 0",
		},
		{
			name:   "3.5 data on ordinal 1 rejoins the upgraded cluster",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Local: stopped(Storage{Version: v35}), Cluster: reachable(voter(0))},
			want:   Rejoin,
			reason: "old data kept aside",
		},
		{
			name:   "3.5 data on a surplus replica is left alone",
			o:      ReplicaObservation{Ordinal: 3, Desired: 3, Local: stopped(Storage{Version: v35}), Cluster: reachable(voter(0))},
			want:   Wait,
			reason: "surplus",
		},
		{
			name:   "3.5 data with upgrades refused in config waits with the fix",
			o:      ReplicaObservation{Ordinal: 0, Desired: 3, Local: stopped(Storage{Version: v35, RefuseUpgrade: true})},
			want:   Wait,
			reason: "upgrade.oldData: restore",
		},
		{
			name:   "newer data (a downgrade) is refused on ordinal 0",
			o:      ReplicaObservation{Ordinal: 0, Desired: 3, Local: stopped(Storage{Version: v38})},
			want:   Wait,
			reason: "a downgrade",
		},
		{
			name:   "newer data is refused even beside a live cluster: nothing is moved aside",
			o:      ReplicaObservation{Ordinal: 1, Desired: 3, Local: stopped(Storage{Version: v38}), Cluster: Cluster{Reachable: true, ClusterID: other}},
			want:   Wait,
			reason: "left untouched",
		},
		{
			name:   "newer data is refused even if vetcd created the member",
			o:      ReplicaObservation{Ordinal: 0, Desired: 1, Local: stopped(Storage{Version: v38, Ours: true})},
			want:   Wait,
			reason: "newer than this vetcd's etcd 3.7",
		},
		{
			name: "a running member is not gated",
			o: ReplicaObservation{Ordinal: 0, Desired: 1, Local: func() Local {
				l := running(0, voter(0))
				l.Storage = Storage{Version: v38, Binary: v37}
				return l
			}()},
			want: Keep,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := ReplicaNext(tc.o)
			if d.Mode != tc.want || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("ReplicaNext = %v (%s); want %v with %q", d.Mode, d.Reason, tc.want, tc.reason)
			}
		})
	}
}

func TestStorageVersionOrder(t *testing.T) {
	if !(StorageVersion{}).Less(MinInPlace) || (StorageVersion{3, 6}).Less(MinInPlace) || !(StorageVersion{3, 7}).Less(StorageVersion{4, 0}) {
		t.Fatal("StorageVersion order is wrong")
	}
	if (StorageVersion{}).String() != "none" || (StorageVersion{3, 7}).String() != "3.7" {
		t.Fatal("StorageVersion strings")
	}
}
