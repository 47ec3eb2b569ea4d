package config

import "fmt"

// What a replica does with a data dir older than etcd 3.6 (upgrade.oldData).
const (
	// UpgradeRestore (the default) upgrades it by snapshot and restore into
	// a fresh data dir, keeping the old dir aside. It is never started in
	// place: etcd 3.5 data carries membership-migration bugs.
	UpgradeRestore = "restore"
	// UpgradeRefuse leaves it untouched and waits, saying why, for a
	// person to decide.
	UpgradeRefuse = "refuse"
)

// Upgrade says how a replica treats data written by an older etcd. Data of
// etcd 3.6 or 3.7 always starts in place (etcd upgrades 3.6 to 3.7 by
// itself); data newer than vetcd's etcd (a downgrade) is always refused.
type Upgrade struct {
	// OldData is UpgradeRestore (default, "") or UpgradeRefuse.
	OldData string `yaml:"oldData,omitempty"`
}

// RefuseOldData reports whether old data must be left alone.
func (u Upgrade) RefuseOldData() bool { return u.OldData == UpgradeRefuse }

func (u Upgrade) validate() []error {
	switch u.OldData {
	case "", UpgradeRestore, UpgradeRefuse:
		return nil
	}
	return []error{fmt.Errorf("upgrade.oldData %q: want %s or %s", u.OldData, UpgradeRestore, UpgradeRefuse)}
}
