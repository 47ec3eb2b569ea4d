// Package local is the `vetcd up` supervisor: the StatefulSet of one
// machine. It keeps one `vetcd serve` process per desired replica, restarts
// one that exits, sends SIGTERM to every surplus replica at once on a
// scale-down (podManagementPolicy: Parallel), and records in the topology
// file which processes run, so that replicas can tell "gone" from "slow".
package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/topology"
)

// MaxReplicas bounds a local cluster: the port scheme and the certificate
// SANs cover this many.
const MaxReplicas = 32

// DefaultBasePort puts vetcd-0 on etcd's own ports (2379 client, 2380 peer).
const DefaultBasePort = 2379

// Layout names the files of a local cluster directory. Tests and users rely
// on DIR/<replica>/data and DIR/<replica>/pid.
type Layout struct{ Dir string }

// Settings persists what `vetcd up` chose at creation, so a second `vetcd
// up` on the same DIR resumes the same cluster on the same ports.
type Settings struct {
	Host     string `json:"host"`
	BasePort int    `json:"basePort"`
	// PeerProxy makes each replica listen for peers on BASE+10N+PeerProxyPortOffset
	// while it still advertises BASE+10N+1, so that a test can put a TCP proxy
	// on the advertised port and cut a member's peer traffic (the chaos suite
	// does). vetcd up never sets it; only a local.json written beforehand does.
	PeerProxy bool `json:"peerProxy,omitempty"`
}

// PeerProxyPortOffset is where a replica listens for peers, above its base
// port, when Settings.PeerProxy is set.
const PeerProxyPortOffset = 5

func (l Layout) settingsPath() string { return filepath.Join(l.Dir, "local.json") }

// TopologyPath is the static topology file.
func (l Layout) TopologyPath() string { return filepath.Join(l.Dir, "topology.json") }

// PKIDir holds the CA and certificates.
func (l Layout) PKIDir() string { return filepath.Join(l.Dir, "pki") }

// PKI names the certificate files.
func (l Layout) PKI() pki.Files { return pki.FilesIn(l.PKIDir()) }

// ReplicaName is the name of the replica with ordinal i.
func ReplicaName(i int) string { return "vetcd-" + strconv.Itoa(i) }

// ReplicaDir is DIR/<replica>.
func (l Layout) ReplicaDir(i int) string { return filepath.Join(l.Dir, ReplicaName(i)) }

// DataDir is the replica's etcd data dir.
func (l Layout) DataDir(i int) string { return filepath.Join(l.ReplicaDir(i), "data") }

// PIDPath holds the pid of the replica's `vetcd serve` process.
func (l Layout) PIDPath(i int) string { return filepath.Join(l.ReplicaDir(i), "pid") }

// ConfigPath is the replica's generated config.
func (l Layout) ConfigPath(i int) string { return filepath.Join(l.ReplicaDir(i), "config.yaml") }

// LogPath is the replica's log.
func (l Layout) LogPath(i int) string { return filepath.Join(l.ReplicaDir(i), "serve.log") }

// RestartsPath counts the supervisor's restarts of the replica.
func (l Layout) RestartsPath(i int) string { return filepath.Join(l.ReplicaDir(i), "restarts") }

func (l Layout) lockPath() string { return filepath.Join(l.Dir, "up.lock") }

// ReadSettings reads local.json; ok is false when the DIR holds no cluster.
func (l Layout) ReadSettings() (s Settings, ok bool, err error) {
	b, err := os.ReadFile(l.settingsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("read %s: %w", l.settingsPath(), err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, false, fmt.Errorf("parse %s: %w", l.settingsPath(), err)
	}
	return s, true, nil
}

func (l Layout) writeSettings(s Settings) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return topology.WriteAtomic(l.settingsPath(), b, 0o600)
}

// Replica is the identity and endpoints of ordinal i under settings s.
func (s Settings) Replica(i int) topology.Replica {
	p := s.BasePort + 10*i
	host := s.Host
	return topology.Replica{
		Name:       ReplicaName(i),
		Ordinal:    i,
		ClientURL:  fmt.Sprintf("https://%s:%d", host, p),
		PeerURL:    fmt.Sprintf("https://%s:%d", host, p+1),
		AgentURL:   fmt.Sprintf("https://%s:%d", host, p+2),
		MetricsURL: fmt.Sprintf("http://%s:%d", host, p+3),
	}
}

// ClientEndpoints lists the client URLs of the desired replicas, read from
// the topology file.
func (l Layout) ClientEndpoints() ([]string, error) {
	f, err := topology.ReadFile(l.TopologyPath())
	if err != nil {
		return nil, err
	}
	var eps []string
	for i := 0; i < f.Desired; i++ {
		if r, ok := f.Replica(i); ok {
			eps = append(eps, r.ClientURL)
		}
	}
	return eps, nil
}

// CheckDir refuses a DIR that cannot hold a local cluster, before anything
// is written: a regular file, or a non-empty directory that is not a vetcd
// cluster dir.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--dir %s: not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("--dir %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "local.json")); err != nil {
		return fmt.Errorf("--dir %s: not empty and not a vetcd cluster dir (no local.json); choose an empty or new directory", dir)
	}
	return nil
}
