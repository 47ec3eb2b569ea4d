package config

import (
	"errors"
	"fmt"
	"net/url"
)

// MigrateTLS is the client TLS vetcd uses towards a deployed etcd it
// migrates from. Every field is optional: without CAFile the system roots
// verify an https source; CertFile and KeyFile go together (client
// certificate auth); an http:// source uses none of them.
type MigrateTLS struct {
	CAFile   string `yaml:"caFile,omitempty"`
	CertFile string `yaml:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile,omitempty"`
}

// validateDeployedEtcd checks migrateFromDeployedEtcd against
// migrateFrom.endpoints and migrateFrom.tls: endpoints need the flag (so a
// leftover source never migrates by surprise), and the kine SQLite source
// excludes both. The flag alone is valid config (a vCluster values file
// sets it without saying where the etcd is); a replica that founds a
// cluster with it and no endpoints refuses to found an empty one.
func (c Config) validateDeployedEtcd() []error {
	var errs []error
	m := c.MigrateFrom
	if !c.MigrateFromDeployedEtcd && len(m.Endpoints) > 0 {
		errs = append(errs, errors.New("migrateFrom.endpoints: set, but migrateFromDeployedEtcd is false; set it to true to migrate, or remove the endpoints"))
	}
	if len(m.Endpoints) > 0 && (m.SQLite != "" || m.KineDir != "") {
		errs = append(errs, errors.New("migrateFrom.endpoints and migrateFrom.sqlite/kineDir: use one source"))
	}
	for i, e := range m.Endpoints {
		u, err := url.Parse(e)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("migrateFrom.endpoints[%d] %q: %w", i, e, err))
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/"):
			errs = append(errs, fmt.Errorf("migrateFrom.endpoints[%d] %q: want http://host:port or https://host:port", i, e))
		case u.User != nil:
			errs = append(errs, fmt.Errorf("migrateFrom.endpoints[%d]: credentials in the URL are not supported; use migrateFrom.tls", i))
		}
	}
	if (m.TLS.CertFile == "") != (m.TLS.KeyFile == "") {
		errs = append(errs, errors.New("migrateFrom.tls.certFile and migrateFrom.tls.keyFile: set both or neither"))
	}
	return errs
}
