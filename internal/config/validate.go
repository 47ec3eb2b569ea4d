package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/vetcd/vetcd/internal/storage/storageurl"
)

// Validate checks c and returns every problem found, joined (errors.Join);
// each names the key and the value, e.g. `dataDir: required` or
// `clientURL "http://x": must be https`.
//
// Validate has a pointer receiver because it also fills the derived fields:
// Ordinal from a trailing "-N" in Name, Name as DefaultNamePrefix+Ordinal,
// ListenClientURL from ClientURL and ListenPeerURL from PeerURL. Calling it
// again is harmless. `enabled: false` is valid: the caller decides what to
// do with a disabled replica. ExtraArgs are checked with ValidateExtraArgs
// (mind its note on etcd's process-wide raft timeouts).
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}

	switch clean := filepath.Clean(c.DataDir); {
	case c.DataDir == "":
		add("dataDir: required")
	case filepath.Dir(clean) == clean:
		add("dataDir %q: must not be a root directory: vetcd keeps its markers in the parent directory", c.DataDir)
	}

	kube := c.Topology.Source == TopologyKubernetes
	if kube {
		errs = append(errs, c.kubernetesIdentity(os.Getenv)...)
	}
	errs = append(errs, c.deriveIdentity()...)
	if kube && c.OrdinalValue() >= 0 {
		errs = append(errs, c.deriveKubernetes(os.Getenv)...)
	}

	errs = append(errs, checkURL("clientURL", c.ClientURL, true, false))
	errs = append(errs, checkURL("peerURL", c.PeerURL, true, false))
	errs = append(errs, checkURL("agentURL", c.AgentURL, true, false))
	errs = append(errs, checkURL("listenClientURL", c.ListenClientURL, false, false))
	errs = append(errs, checkURL("listenPeerURL", c.ListenPeerURL, false, false))
	errs = append(errs, checkURL("metricsURL", c.MetricsURL, false, true))
	errs = append(errs, checkURL("listenAgentURL", c.ListenAgentURL, false, false))
	errs = append(errs, checkURL("listenMetricsURL", c.ListenMetricsURL, false, true))
	if c.ListenClientURL == "" {
		c.ListenClientURL = c.ClientURL
	}
	if c.ListenPeerURL == "" {
		c.ListenPeerURL = c.PeerURL
	}

	errs = append(errs, c.Snapshots.validate()...)
	errs = append(errs, c.Restore.validate()...)
	errs = append(errs, c.MigrateFrom.validate()...)
	errs = append(errs, c.validateDeployedEtcd()...)
	errs = append(errs, c.Upgrade.validate()...)

	if c.TLS.CAFile == "" {
		add("tls.caFile: required")
	}
	if c.TLS.CertFile == "" {
		add("tls.certFile: required")
	}
	if c.TLS.KeyFile == "" {
		add("tls.keyFile: required")
	}

	switch c.Topology.Source {
	case TopologyStatic:
		if c.Topology.File == "" {
			add("topology.file: required when topology.source is %q", TopologyStatic)
		}
		if c.Topology.Kubernetes != nil {
			errs = append(errs, errKubernetesOnly)
		}
	case TopologyKubernetes:
		if c.Topology.File != "" {
			add("topology.file %q: only for topology.source %q", c.Topology.File, TopologyStatic)
		}
	default:
		add("topology.source %q: must be %q or %q", c.Topology.Source, TopologyStatic, TopologyKubernetes)
	}

	for _, d := range []struct {
		key string
		val time.Duration
	}{
		{"controller.interval", c.Controller.Interval},
		{"recovery.unresponsiveAfter", c.Recovery.UnresponsiveAfter},
		{"recovery.learnerStuckAfter", c.Recovery.LearnerStuckAfter},
		{"shutdown.leaveTimeout", c.Shutdown.LeaveTimeout},
	} {
		if d.val <= 0 {
			add("%s %q: must be positive", d.key, d.val)
		}
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level %q: must be debug, info, warn or error", c.Log.Level)
	}

	if err := ValidateExtraArgs(c.ExtraArgs); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.checkEmbedded()...)

	return errors.Join(errs...)
}

// deriveIdentity fills Ordinal from Name or Name from Ordinal, and reports
// a missing or inconsistent identity.
func (c *Config) deriveIdentity() []error {
	suffix, hasSuffix := nameOrdinal(c.Name)
	switch {
	case c.Ordinal == nil && c.Name == "":
		return []error{errors.New(`ordinal: required: set ordinal, or a name ending in "-N"`)}
	case c.Ordinal == nil && !hasSuffix:
		return []error{fmt.Errorf(`ordinal: required: name %q does not end in "-N"; set ordinal`, c.Name)}
	case c.Ordinal == nil:
		c.Ordinal = &suffix
		return nil
	case *c.Ordinal < 0:
		return []error{fmt.Errorf("ordinal %d: must not be negative", *c.Ordinal)}
	case c.Name == "":
		c.Name = DefaultNamePrefix + strconv.Itoa(*c.Ordinal)
		return nil
	case hasSuffix && suffix != *c.Ordinal:
		return []error{fmt.Errorf("ordinal %d: name %q ends in -%d", *c.Ordinal, c.Name, suffix)}
	}
	return nil
}

// checkURL checks one URL key: it must parse, be https (or, with
// httpAllowed, http), and be scheme://host:port with nothing else. An empty
// value is an error only if required. It returns nil if all is well.
func checkURL(key, value string, required, httpAllowed bool) error {
	if value == "" {
		if required {
			return fmt.Errorf("%s: required", key)
		}
		return nil
	}
	u, err := url.Parse(value)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("%s %q: %w", key, value, err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && httpAllowed:
	case httpAllowed:
		return fmt.Errorf("%s %q: must be http or https", key, value)
	default:
		return fmt.Errorf("%s %q: must be https", key, value)
	}
	if u.User != nil {
		return fmt.Errorf("%s %q: must not contain user info", key, value)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("%s %q: must be %s://host:port, without a path or query", key, value, u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return fmt.Errorf("%s %q: must have host:port", key, value)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%s %q: port must be 1-65535", key, value)
	}
	return nil
}

// checkEmbedded reports where the vCluster embedded section disagrees with
// the top-level fields. Parse merges the two, so this only fails for a
// Config built or changed in Go; it keeps Marshal's output parseable.
func (c *Config) checkEmbedded() []error {
	e := c.embedded()
	if e == nil {
		return nil
	}
	var errs []error
	if e.Enabled != nil && *e.Enabled != c.IsEnabled() {
		errs = append(errs, fmt.Errorf("%s.enabled %t: differs from enabled %t", embeddedPath, *e.Enabled, c.IsEnabled()))
	}
	if e.MigrateFromDeployedEtcd != nil && *e.MigrateFromDeployedEtcd != c.MigrateFromDeployedEtcd {
		errs = append(errs, fmt.Errorf("%s.migrateFromDeployedEtcd %t: differs from migrateFromDeployedEtcd %t",
			embeddedPath, *e.MigrateFromDeployedEtcd, c.MigrateFromDeployedEtcd))
	}
	if e.SnapshotCount != nil && *e.SnapshotCount != c.SnapshotCount {
		errs = append(errs, fmt.Errorf("%s.snapshotCount %d: differs from snapshotCount %d", embeddedPath, *e.SnapshotCount, c.SnapshotCount))
	}
	if e.ExtraArgs != nil && !slices.Equal(e.ExtraArgs, c.ExtraArgs) {
		errs = append(errs, fmt.Errorf("%s.extraArgs %s: differs from extraArgs %s", embeddedPath, quoteAll(e.ExtraArgs), quoteAll(c.ExtraArgs)))
	}
	return errs
}

// validate checks the snapshot schedule, target and retention.
func (s Snapshots) validate() []error {
	var errs []error
	if s.Schedule == "" {
		if s.Target != "" {
			errs = append(errs, fmt.Errorf("snapshots.target %q: set snapshots.schedule too, or remove the target", s.Target))
		}
		return errs
	}
	if _, err := cron.ParseStandard(s.Schedule); err != nil {
		errs = append(errs, fmt.Errorf("snapshots.schedule %q: %w", s.Schedule, err))
	}
	switch loc, err := storageurl.Parse(s.Target); {
	case s.Target == "":
		errs = append(errs, errors.New("snapshots.target: required with snapshots.schedule"))
	case err != nil:
		errs = append(errs, fmt.Errorf("snapshots.target: %w", err))
	case loc.Name != "":
		errs = append(errs, fmt.Errorf("snapshots.target %q: must be a prefix ending in /", s.Target))
	}
	if s.Retention < 0 {
		errs = append(errs, fmt.Errorf("snapshots.retention %d: must be 0 (keep all) or more", s.Retention))
	}
	e := s.Encryption
	if e.PassphraseFile != "" && e.PassphraseEnv != "" {
		errs = append(errs, errors.New("snapshots.encryption: passphraseFile and passphraseEnv: use one"))
	}
	if (e.PassphraseFile != "" || e.PassphraseEnv != "") && e.RecipientsFile != "" {
		errs = append(errs, errors.New("snapshots.encryption: a passphrase and recipientsFile cannot be combined"))
	}
	return errs
}
