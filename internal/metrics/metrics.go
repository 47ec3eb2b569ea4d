// Package metrics holds vetcd's own Prometheus metrics. Every automatic
// action is counted here with its reason class (safety rule 5).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the vetcd_* metrics of one replica. They live in their own
// registry so that two replicas in one process (tests, a control-plane
// binary) never collide; etcd's own metrics stay in the default registry.
type Metrics struct {
	Registry *prometheus.Registry

	// Decisions counts the replica's start-mode decisions that led to an
	// action, by mode.
	Decisions *prometheus.CounterVec
	// Actions counts the controller's membership actions by kind and
	// result (ok, error, refused).
	Actions *prometheus.CounterVec
	// Rebuilds counts ForceNewCluster rebuilds done by this replica.
	Rebuilds prometheus.Counter
	// Recoveries counts recovery actions by reason.
	Recoveries *prometheus.CounterVec
	// Desired is the topology's desired replica count.
	Desired prometheus.Gauge
	// Members counts members by role (voter, learner) as the leader sees them.
	Members *prometheus.GaugeVec
	// CorruptionUnresolved is 1 while a CORRUPT alarm is raised that the
	// leader's controller will not resolve by itself: etcd's cluster-wide
	// alarm (member 0), or members' hashes with no majority agreeing. Only
	// a person can pick the data to keep; alert on it.
	CorruptionUnresolved prometheus.Gauge
	// Ready is 1 while this replica's member serves with quorum.
	Ready prometheus.Gauge
	// Scheduled snapshots: last success time, duration and size, failures.
	SnapshotLastSuccess prometheus.Gauge
	SnapshotDuration    prometheus.Gauge
	SnapshotSize        prometheus.Gauge
	SnapshotFailures    prometheus.Counter
	// SnapshotInterval is the longest time between two runs of the
	// snapshot schedule (0 without one): the monitoring mixin's RPO alert
	// compares the newest snapshot's age with it, whatever the schedule.
	SnapshotInterval prometheus.Gauge
	// CertificateExpiry is when the certificates this replica loaded stop
	// being valid, by certificate ("member", "ca": the CA that signed the
	// member's). Expired TLS is a failure vetcd cannot recover from by
	// itself; the mixin alerts 14 days ahead.
	CertificateExpiry *prometheus.GaugeVec
}

// New creates and registers the metrics.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vetcd_replica_decisions_total",
			Help: "Start-mode decisions acted on by this replica (restart, join, rejoin, bootstrap, rebuild).",
		}, []string{"mode"}),
		Actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vetcd_membership_actions_total",
			Help: "Membership actions of the leader's controller, by action and result.",
		}, []string{"action", "result"}),
		Rebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vetcd_rebuilds_total",
			Help: "ForceNewCluster rebuilds after a quorum-breaking scale-down done by this replica.",
		}),
		Recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vetcd_recoveries_total",
			Help: "Recovery actions, by reason.",
		}, []string{"reason"}),
		Desired: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vetcd_desired_replicas",
			Help: "Desired replica count from the topology.",
		}),
		Members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vetcd_members",
			Help: "Members by role, as observed by the leader's controller.",
		}, []string{"role"}),
		CorruptionUnresolved: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vetcd_corruption_unresolved",
			Help: "1 while a CORRUPT alarm is raised that vetcd will not resolve by itself (cluster-wide alarm, or no majority of members' hashes agrees): a person must decide.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vetcd_ready",
			Help: "1 while this replica's member serves with quorum.",
		}),
	}
	m.SnapshotLastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vetcd_snapshot_last_success_timestamp_seconds",
		Help: "Unix time of the last scheduled snapshot that succeeded on this replica.",
	})
	m.SnapshotDuration = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vetcd_snapshot_last_duration_seconds",
		Help: "How long the last successful scheduled snapshot took.",
	})
	m.SnapshotSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vetcd_snapshot_last_size_bytes",
		Help: "Size of the plain etcd db of the last successful scheduled snapshot.",
	})
	m.SnapshotFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vetcd_snapshot_failures_total",
		Help: "Scheduled snapshots that failed on this replica.",
	})
	m.SnapshotInterval = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vetcd_snapshot_schedule_interval_seconds",
		Help: "Longest time between two runs of the snapshot schedule; 0 when snapshots are not scheduled.",
	})
	m.CertificateExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vetcd_tls_certificate_expiry_timestamp_seconds",
		Help: "Unix time at which a certificate this replica loaded expires: certificate=member (its own) or ca (the CA that signed it).",
	}, []string{"certificate"})
	m.Registry.MustRegister(m.Decisions, m.Actions, m.Rebuilds, m.Recoveries, m.Desired, m.Members, m.CorruptionUnresolved, m.Ready,
		m.SnapshotLastSuccess, m.SnapshotDuration, m.SnapshotSize, m.SnapshotFailures, m.SnapshotInterval, m.CertificateExpiry)
	return m
}

// Gatherer combines vetcd's metrics with etcd's and the Go runtime's, which
// etcd registers in the default registry.
func (m *Metrics) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{m.Registry, prometheus.DefaultGatherer}
}
