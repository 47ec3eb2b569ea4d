package config

import (
	"errors"
	"fmt"
	"path/filepath"
)

// KineDefaultDB is the file name kine gives its SQLite database
// (./db/state.db by default; k3s and vCluster keep it as state.db too).
const KineDefaultDB = "state.db"

// MigrateFrom names the store a new cluster takes its data from when its
// first replica founds it (and only then: a cluster migrates once, which a
// marker in etcd records). Sources exclude each other.
//
// The kine SQLite source is SQLite or KineDir. The deployed-etcd source
// (the external-etcd migration) adds its own fields to this struct, e.g.
// Endpoints []string `yaml:"endpoints,omitempty"` and a TLS section, and
// its checks to validate below, next to the SQLite ones.
type MigrateFrom struct {
	// SQLite is kine's SQLite database file (absolute path). It must
	// exist when the cluster is founded, unless SQLite + ".migrated"
	// shows it was migrated already.
	SQLite string `yaml:"sqlite,omitempty"`
	// KineDir is a directory where kine may have left its default
	// database, KineDefaultDB: if that file is there when the cluster is
	// founded it is migrated, otherwise the cluster starts empty.
	KineDir string `yaml:"kineDir,omitempty"`
	// Endpoints are the client URLs (http:// or https://) of a deployed
	// etcd to migrate from; migrateFromDeployedEtcd must be true. See
	// migrateetcd.go.
	Endpoints []string `yaml:"endpoints,omitempty"`
	// TLS is the client TLS towards Endpoints; every field is optional.
	TLS MigrateTLS `yaml:"tls,omitempty"`
}

// SQLiteSource returns the kine database to migrate at founding and
// whether the config named that file itself (SQLite) rather than a place
// to look (KineDir); "" when no SQLite source is configured.
func (m MigrateFrom) SQLiteSource() (path string, explicit bool) {
	switch {
	case m.SQLite != "":
		return m.SQLite, true
	case m.KineDir != "":
		return filepath.Join(m.KineDir, KineDefaultDB), false
	}
	return "", false
}

// validate checks the migrateFrom section.
func (m MigrateFrom) validate() []error {
	var errs []error
	if m.SQLite != "" && m.KineDir != "" {
		errs = append(errs, errors.New("migrateFrom.sqlite and migrateFrom.kineDir: use one"))
	}
	for _, f := range []struct{ key, val string }{{"migrateFrom.sqlite", m.SQLite}, {"migrateFrom.kineDir", m.KineDir}} {
		if f.val != "" && !filepath.IsAbs(f.val) {
			errs = append(errs, fmt.Errorf("%s %q: must be an absolute path", f.key, f.val))
		}
	}
	return errs
}
