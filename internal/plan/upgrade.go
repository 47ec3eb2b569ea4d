package plan

import "fmt"

// StorageVersion is the storage (schema) version of a data dir,
// major.minor. etcd 3.6 and newer record it in the backend's meta bucket;
// the zero value means none is recorded (etcd 3.5 or older wrote it).
type StorageVersion struct{ Major, Minor int }

// String is "3.6", or "none" for the zero value.
func (v StorageVersion) String() string {
	if v == (StorageVersion{}) {
		return "none"
	}
	return fmt.Sprintf("%d.%d", v.Major, v.Minor)
}

// Less orders versions.
func (v StorageVersion) Less(o StorageVersion) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	return v.Minor < o.Minor
}

// MinInPlace is the oldest storage version vetcd starts etcd on in place.
// etcd upgrades 3.6 data to 3.7 by itself; 3.5 data is never started in
// place (etcd 3.5's membership-migration bugs): it is upgraded by snapshot
// and restore instead.
var MinInPlace = StorageVersion{3, 6}

// Storage is what a replica observed about the storage version of its
// valid data dir, with the settings the gate needs.
type Storage struct {
	// Version is the recorded storage version (zero: none).
	Version StorageVersion
	// Ours means this data's member was created by this vetcd's etcd (a
	// marker beside the data dir says so). etcd records the storage
	// version a few seconds after a member first starts; data stopped
	// before that has none and is still not old.
	Ours bool
	// Binary is the storage version of vetcd's own etcd (3.7). Zero means
	// the storage version was not observed: no gate.
	Binary StorageVersion
	// RefuseUpgrade is the config's upgrade.oldData: refuse.
	RefuseUpgrade bool
}

// storageGate is the upgrade gate of a valid data dir that etcd does not
// run on. It returns ok=false when the data may start in place (3.6 or
// 3.7, or ours); otherwise the decision:
//
//   - newer than vetcd's etcd (a downgrade): Wait, refusing, never touching
//     the data, whatever else holds;
//   - older than 3.6: Upgrade (ordinal 0, no live cluster: snapshot and
//     restore into a fresh data dir, the old one kept aside); Rejoin when a
//     live cluster exists (the old data is kept aside too); Wait on other
//     ordinals until ordinal 0 has upgraded, on surplus replicas, and when
//     the config refuses upgrades.
func storageGate(o ReplicaObservation) (ReplicaDecision, bool) {
	s := o.Local.Storage
	if s.Binary == (StorageVersion{}) {
		return ReplicaDecision{}, false
	}
	if s.Binary.Less(s.Version) {
		return decide(Wait, "data dir has storage version %s, newer than this vetcd's etcd %s: refusing to start on it (a downgrade); "+
			"the data is left untouched: run a vetcd built with etcd %s or newer, or restore a snapshot into an empty data dir", s.Version, s.Binary, s.Version), true
	}
	if s.Ours || !s.Version.Less(MinInPlace) {
		return ReplicaDecision{}, false
	}
	old := fmt.Sprintf("data dir has storage version %s (etcd 3.5 or older)", s.Version)
	switch {
	case o.Ordinal >= o.Desired:
		return decide(Wait, "%s; surplus replica, not upgrading", old), true
	case s.RefuseUpgrade:
		return decide(Wait, "%s, which is never started in place, and upgrade.oldData is refuse: not upgrading; "+
			"set upgrade.oldData: restore to upgrade it by snapshot and restore (the old dir is kept aside), or restore a snapshot", old), true
	case o.Cluster.Reachable:
		return decide(Rejoin, "%s, never started in place; cluster %x is live: rejoining with fresh data, the old data kept aside", old, o.Cluster.ClusterID), true
	case o.Ordinal != 0:
		return decide(Wait, "%s; waiting for ordinal 0 to upgrade its data and found the cluster, then rejoining", old), true
	}
	return decide(Upgrade, "%s, never started in place: upgrading by snapshot and restore into a fresh %s data dir, the old one kept aside", old, s.Binary), true
}
