// Package topology tells a replica who it is, which replicas should exist,
// and whether a replica that should no longer exist is really gone.
//
// A replica never decides membership from its own view alone: the desired
// replica count and the "surplus replicas are gone" fact come from outside
// (the local supervisor's file, or a StatefulSet in Kubernetes), so that two
// replicas reading the same source reach the same decision.
package topology

import (
	"context"
	"errors"
	"fmt"
)

// Replica is one replica's identity and endpoints.
type Replica struct {
	Name       string `json:"name"`
	Ordinal    int    `json:"ordinal"`
	ClientURL  string `json:"clientURL"`
	PeerURL    string `json:"peerURL"`
	AgentURL   string `json:"agentURL"`
	MetricsURL string `json:"metricsURL,omitempty"`
}

// Source is what a replica needs to know about the set of replicas. It is
// implemented by the file written by `vetcd up` (File) and by a Kubernetes
// StatefulSet with its pods and the record's ConfigMap (Kubernetes).
type Source interface {
	// Self is this replica's identity; it never changes for a process.
	Self() Replica
	// Desired is the number of replicas that should exist (ordinals
	// 0..n-1), like a StatefulSet's spec.replicas.
	Desired(ctx context.Context) (int, error)
	// Lookup returns the identity and endpoints of the replica with the
	// given ordinal, whether or not it is desired, so that a replica can
	// reach surplus peers while they leave.
	Lookup(ctx context.Context, ordinal int) (Replica, bool, error)
	// Gone reports whether the replica with this ordinal is confirmed not
	// running (its process exited, its pod object was deleted). A replica
	// that is still terminating is not gone.
	Gone(ctx context.Context, ordinal int) (bool, error)
	// ClusterRecord returns the record of a founded cluster, or "" when no
	// cluster was ever founded here. It is the bootstrap guard: an empty
	// ordinal 0 never founds a second cluster while a record exists.
	ClusterRecord(ctx context.Context) (string, error)
	// SwapClusterRecord replaces the record with record only if the source
	// still holds old ("" for none), and reports whether it did. The record
	// is only ever written this way, so that of two replicas claiming a
	// change at once exactly one wins.
	SwapClusterRecord(ctx context.Context, old, record string) (bool, error)
}

// ErrNoTopology means the topology source holds no data yet.
var ErrNoTopology = errors.New("topology: no topology file")

// ValidateReplicas checks a replica list for the mistakes that would make
// membership decisions wrong: duplicate ordinals, names or URLs.
func ValidateReplicas(rs []Replica) error {
	ords := map[int]bool{}
	names := map[string]bool{}
	urls := map[string]bool{}
	for _, r := range rs {
		if r.Ordinal < 0 {
			return fmt.Errorf("topology: replica %q: negative ordinal %d", r.Name, r.Ordinal)
		}
		if ords[r.Ordinal] {
			return fmt.Errorf("topology: ordinal %d listed twice", r.Ordinal)
		}
		if names[r.Name] {
			return fmt.Errorf("topology: name %q listed twice", r.Name)
		}
		for _, u := range []string{r.ClientURL, r.PeerURL, r.AgentURL} {
			if u == "" {
				return fmt.Errorf("topology: replica %q: missing URL", r.Name)
			}
			if urls[u] {
				return fmt.Errorf("topology: URL %s listed twice", u)
			}
			urls[u] = true
		}
		ords[r.Ordinal] = true
		names[r.Name] = true
	}
	return nil
}

// maxOrdinalScan bounds the ordinals looked up to build a Directory.
const maxOrdinalScan = 64

// Directory maps peer URLs to the replicas that own them, so that etcd
// members are matched to replicas by URL rather than by parsing names.
type Directory map[string]Replica

// NoOrdinal is the ordinal of a member that no replica owns.
const NoOrdinal = -1

// Lookuper finds a replica by ordinal; every Source is one.
type Lookuper interface {
	Lookup(ctx context.Context, ordinal int) (Replica, bool, error)
}

// snapshotter is a Lookuper that can answer all the lookups of one
// LookupAll from one read of its source: Static reads and parses its file
// once per pass instead of once per ordinal (the largest share of an idle
// replica's own CPU in the profile, BENCHMARKS.md, Footprint).
type snapshotter interface {
	snapshot() (Lookuper, error)
}

// LookupAll builds the Directory of the replicas src knows, from ordinal 0
// up to the first unknown ordinal (at most 64).
func LookupAll(ctx context.Context, src Lookuper) (Directory, error) {
	if s, ok := src.(snapshotter); ok {
		snap, err := s.snapshot()
		if err != nil {
			return nil, err
		}
		src = snap
	}
	dir := Directory{}
	for i := 0; i < maxOrdinalScan; i++ {
		r, ok, err := src.Lookup(ctx, i)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		dir[r.PeerURL] = r
	}
	return dir, nil
}

// Ordinal returns the ordinal of the replica owning one of peerURLs, or
// NoOrdinal.
func (d Directory) Ordinal(peerURLs []string) int {
	for _, u := range peerURLs {
		if r, ok := d[u]; ok {
			return r.Ordinal
		}
	}
	return NoOrdinal
}

// ByOrdinal returns the replica with the given ordinal.
func (d Directory) ByOrdinal(ordinal int) (Replica, bool) {
	for _, r := range d {
		if r.Ordinal == ordinal {
			return r, true
		}
	}
	return Replica{}, false
}
