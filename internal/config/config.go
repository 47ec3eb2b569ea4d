// Package config is the configuration of one vetcd replica: one YAML file,
// decoded strictly, with defaults, validation, and the translation of the
// user's extra etcd flags onto an embed.Config.
//
// Strictness is the point: an unknown key, a value of the wrong type or an
// unknown etcd flag is an error that names the key (and the line), never a
// setting silently dropped. A vCluster values file section
// (controlPlane.backingStore.etcd.embedded) is accepted as is.
//
// Nothing in this package keeps state between calls. Every function is safe
// to call from several goroutines, with one caveat for non-empty extraArgs:
// checking or applying them resets two process-wide etcd variables (see
// ApplyExtraArgs), and Config.Validate checks them.
package config

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults. They are constants so that docs, tests and callers agree.
const (
	// DefaultSnapshotCount is etcd's --snapshot-count used when
	// snapshotCount is below 1 (etcd's own default).
	DefaultSnapshotCount = 10000
	// DefaultTopologySource is the topology source when none is set.
	DefaultTopologySource = TopologyStatic
	// DefaultControllerInterval is how often the leader's controller
	// observes the cluster.
	DefaultControllerInterval = time.Second
	// DefaultUnresponsiveAfter is how long a member may be unreachable
	// before the controller replaces it.
	DefaultUnresponsiveAfter = 2 * time.Minute
	// DefaultLearnerStuckAfter is how long a learner may make no progress
	// before the controller replaces it.
	DefaultLearnerStuckAfter = 5 * time.Minute
	// DefaultLeaveTimeout is how long a surplus replica tries to leave the
	// cluster cleanly on SIGTERM.
	DefaultLeaveTimeout = 30 * time.Second
	// DefaultLogLevel is the log level when none is set.
	DefaultLogLevel = "info"
	// DefaultNamePrefix is the member name prefix: the default name of the
	// replica with ordinal N is DefaultNamePrefix + "N".
	DefaultNamePrefix = "vetcd-"
)

// Topology sources.
const (
	// TopologyStatic reads the desired replicas from a file (topology.file),
	// as written by `vetcd up`.
	TopologyStatic = "static"
	// TopologyKubernetes reads them from a StatefulSet's spec.replicas and
	// its pods (topology.kubernetes).
	TopologyKubernetes = "kubernetes"
)

// Config is the whole vetcd replica configuration (YAML, camelCase keys).
//
// Build one with Default or Parse, then call Validate, which also fills the
// derived fields (Name, Ordinal, ListenClientURL, ListenPeerURL). Load does
// all three. A Config is a plain value: copy it freely, but note that the
// pointer and slice fields share their targets between copies.
type Config struct {
	// Enabled turns the embedded etcd on; nil means true. `enabled: false`
	// is valid config: the caller decides what to do with it.
	Enabled *bool `yaml:"enabled,omitempty"`
	// MigrateFromDeployedEtcd migrates the data of a deployed (external)
	// etcd into the embedded cluster at first start.
	MigrateFromDeployedEtcd bool `yaml:"migrateFromDeployedEtcd,omitempty"`
	// SnapshotCount is etcd's --snapshot-count; below 1 means
	// DefaultSnapshotCount (see EffectiveSnapshotCount).
	SnapshotCount int64 `yaml:"snapshotCount"`
	// ExtraArgs are etcd server flags, one "--flag=value" (or "--bool-flag")
	// per entry, applied by ApplyExtraArgs. Flags that vetcd owns are
	// refused; see ValidateExtraArgs.
	ExtraArgs []string `yaml:"extraArgs,omitempty"`

	// Name is the etcd member name; default DefaultNamePrefix + ordinal.
	Name string `yaml:"name,omitempty"`
	// Ordinal is this replica's index (0..n-1), as in a StatefulSet. nil:
	// derived from a trailing "-N" in Name; Validate fails if neither is set.
	Ordinal *int `yaml:"ordinal,omitempty"`
	// DataDir is etcd's data dir (required). vetcd keeps its own markers
	// next to it, in filepath.Dir(DataDir), so that moving the data dir
	// aside keeps them.
	DataDir string `yaml:"dataDir"`

	// ClientURL is the advertised client URL, https://host:port (required).
	ClientURL string `yaml:"clientURL"`
	// PeerURL is the advertised peer URL, https://host:port (required).
	PeerURL string `yaml:"peerURL"`
	// ListenClientURL is where etcd listens for clients; default ClientURL.
	ListenClientURL string `yaml:"listenClientURL,omitempty"`
	// ListenPeerURL is where etcd listens for peers; default PeerURL.
	ListenPeerURL string `yaml:"listenPeerURL,omitempty"`
	// AgentURL is this replica's agent endpoint (https, mTLS), required: it
	// answers peers even while etcd is down.
	AgentURL string `yaml:"agentURL"`
	// MetricsURL is http(s)://host:port serving /metrics, /healthz and
	// /readyz; empty turns it off.
	MetricsURL string `yaml:"metricsURL,omitempty"`
	// ListenAgentURL is where the agent endpoint listens; empty means
	// AgentURL.
	ListenAgentURL string `yaml:"listenAgentURL,omitempty"`
	// ListenMetricsURL is where /metrics, /healthz and /readyz listen;
	// empty means MetricsURL.
	ListenMetricsURL string `yaml:"listenMetricsURL,omitempty"`

	// TLS is the one certificate used for client, peer and agent traffic.
	TLS TLS `yaml:"tls"`
	// Topology says where the desired replicas come from.
	Topology Topology `yaml:"topology"`
	// Controller tunes the leader-only controller.
	Controller Controller `yaml:"controller"`
	// Recovery tunes when failing members are replaced.
	Recovery Recovery `yaml:"recovery"`
	// Shutdown tunes what a replica does on SIGTERM.
	Shutdown Shutdown `yaml:"shutdown"`
	// Log configures vetcd's logger (which etcd logs through too).
	Log Log `yaml:"log"`
	// Snapshots takes scheduled snapshots on the leader.
	Snapshots Snapshots `yaml:"snapshots,omitempty"`
	// Restore founds the cluster anew from a snapshot, once per URL: the
	// way to restore where no CLI reaches the disks (Kubernetes).
	Restore Restore `yaml:"restore,omitempty"`
	// MigrateFrom names the store (kine SQLite; a deployed etcd) a new
	// cluster takes its data from when it is founded.
	MigrateFrom MigrateFrom `yaml:"migrateFrom,omitempty"`
	// Upgrade says what happens to data written by an etcd older than 3.6.
	Upgrade Upgrade `yaml:"upgrade,omitempty"`

	// ControlPlane accepts a vCluster values file section as is: only
	// controlPlane.backingStore.etcd.embedded is read, and Parse merges it
	// into the top-level fields. Kept after parsing so that the file
	// round-trips; Validate checks it agrees with the top-level fields.
	ControlPlane *ControlPlane `yaml:"controlPlane,omitempty"`
}

// TLS names the PEM files of the one certificate vetcd uses as server AND
// client certificate on the client, peer and agent ports (mTLS everywhere).
// All three are required.
type TLS struct {
	// CAFile is the CA that signed every replica's and client's certificate.
	CAFile string `yaml:"caFile"`
	// CertFile is this replica's certificate.
	CertFile string `yaml:"certFile"`
	// KeyFile is CertFile's private key.
	KeyFile string `yaml:"keyFile"`
}

// Topology says where the desired set of replicas comes from.
type Topology struct {
	// Source is TopologyStatic (default) or TopologyKubernetes.
	Source string `yaml:"source"`
	// File is the static topology file; required for TopologyStatic.
	File string `yaml:"file,omitempty"`
	// Kubernetes locates the StatefulSet for TopologyKubernetes and
	// derives the replica's identity and URLs (see kubernetes.go).
	Kubernetes *Kubernetes `yaml:"kubernetes,omitempty"`
}

// Controller tunes the leader-only controller.
type Controller struct {
	// Interval is the time between two observe-decide-act passes.
	Interval time.Duration `yaml:"interval"`
}

// Recovery tunes when the controller replaces a failing member. Tests set
// them low so that scenarios run in seconds.
type Recovery struct {
	// UnresponsiveAfter is how long a member may be unreachable before it
	// is replaced.
	UnresponsiveAfter time.Duration `yaml:"unresponsiveAfter"`
	// LearnerStuckAfter is how long a learner may make no progress before
	// it is replaced.
	LearnerStuckAfter time.Duration `yaml:"learnerStuckAfter"`
}

// Shutdown tunes what a replica does when asked to stop.
type Shutdown struct {
	// LeaveTimeout is how long a surplus replica tries to leave the cluster
	// cleanly on SIGTERM before it just stops.
	LeaveTimeout time.Duration `yaml:"leaveTimeout"`
}

// Snapshots schedules snapshots. They run on the leader only, one at a
// time; retention is scoped to this cluster's ID, so clusters that share a
// bucket never prune each other.
type Snapshots struct {
	// Schedule is a cron expression ("0 */6 * * *") or a descriptor
	// ("@hourly", "@every 30m"); empty turns scheduled snapshots off.
	Schedule string `yaml:"schedule,omitempty"`
	// Target is the URL prefix snapshots go to, e.g. file:///backups/.
	// Each is named vetcd-<cluster ID>-<UTC time>.
	Target string `yaml:"target,omitempty"`
	// Retention keeps the newest N snapshots of this cluster; 0 keeps all.
	Retention int `yaml:"retention,omitempty"`
	// Encryption encrypts them with age.
	Encryption SnapshotEncryption `yaml:"encryption,omitempty"`
}

// SnapshotEncryption names the age key sources for scheduled snapshots.
type SnapshotEncryption struct {
	PassphraseFile string `yaml:"passphraseFile,omitempty"`
	PassphraseEnv  string `yaml:"passphraseEnv,omitempty"`
	RecipientsFile string `yaml:"recipientsFile,omitempty"`
}

// Log configures vetcd's zap logger, which etcd logs through too.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
}

// Default returns a Config with every default filled in. The required
// fields (DataDir, the URLs, TLS, Topology.File) stay empty, and so do the
// fields Validate derives (Name, Ordinal, the listen URLs).
func Default() Config {
	return Config{
		SnapshotCount: DefaultSnapshotCount,
		Topology:      Topology{Source: DefaultTopologySource},
		Controller:    Controller{Interval: DefaultControllerInterval},
		Recovery: Recovery{
			UnresponsiveAfter: DefaultUnresponsiveAfter,
			LearnerStuckAfter: DefaultLearnerStuckAfter,
		},
		Shutdown: Shutdown{LeaveTimeout: DefaultLeaveTimeout},
		Log:      Log{Level: DefaultLogLevel},
	}
}

// Load reads the config file at path, parses it (Parse) and validates it
// (Validate). Every error names the file.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Marshal returns c as YAML in the form Parse reads (durations as strings
// such as "2m0s"); Parse(Marshal(c)) gives c back. Keys whose zero value
// is not their default (snapshotCount, the durations, log.level,
// topology.source) are always written, so that the round trip is exact.
// The local supervisor uses it to write each replica's config file.
func (c Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return buf.Bytes(), nil
}

// IsEnabled reports whether the embedded etcd is enabled (Enabled nil
// means true).
func (c Config) IsEnabled() bool {
	return c.Enabled == nil || *c.Enabled
}

// OrdinalValue returns this replica's ordinal: Ordinal if set, else the
// trailing "-N" of Name, else -1. After a successful Validate it is always
// Ordinal.
func (c Config) OrdinalValue() int {
	if c.Ordinal != nil {
		return *c.Ordinal
	}
	if n, ok := nameOrdinal(c.Name); ok {
		return n
	}
	return -1
}

// EffectiveSnapshotCount is the value for etcd's --snapshot-count:
// SnapshotCount, or DefaultSnapshotCount when it is below 1.
func (c Config) EffectiveSnapshotCount() uint64 {
	if c.SnapshotCount < 1 {
		return DefaultSnapshotCount
	}
	return uint64(c.SnapshotCount)
}

// nameOrdinal returns N for a name ending in "-N", N a non-negative decimal
// written without leading zeros (as StatefulSet pod names are).
func nameOrdinal(name string) (int, bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return 0, false
	}
	suffix := name[i+1:]
	n, err := strconv.Atoi(suffix)
	if err != nil || n < 0 || strconv.Itoa(n) != suffix {
		return 0, false
	}
	return n, true
}
