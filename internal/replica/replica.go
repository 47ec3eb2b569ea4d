// Package replica runs one vetcd replica: an embedded etcd member that
// chooses its own start mode, keeps itself in the cluster, and leaves
// cleanly when it is no longer desired.
//
// The loop is observe → plan.ReplicaNext → act. Every decision lives in
// package plan; this package only gathers facts and carries decisions out.
package replica

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/agent"
	"github.com/vetcd/vetcd/internal/cluster"
	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/etcdclient"
	"github.com/vetcd/vetcd/internal/metrics"
	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// Options are the collaborators of a Replica. Zero values are replaced by
// defaults built from the config.
type Options struct {
	Logger   *zap.Logger
	Topology topology.Source
	Metrics  *metrics.Metrics
}

// Replica is one running vetcd replica. Its methods are safe for
// concurrent use.
type Replica struct {
	cfg     config.Config
	lg      *zap.Logger
	topo    topology.Source
	metrics *metrics.Metrics
	self    topology.Replica
	markers markers

	serverTLS, clientTLS *tls.Config
	pool                 *etcdclient.Pool
	agents               *agent.Client
	controller           *cluster.Controller

	interval     time.Duration
	startTimeout time.Duration
	rebuildAfter time.Duration

	agentSrv *agent.Server
	httpSrv  *httpServer

	cancel   context.CancelFunc
	loopDone chan struct{}
	ready    chan struct{}
	readyOne sync.Once
	stopOnce sync.Once
	stopErr  error

	// closing tracks members still finishing embed's Close in the
	// background (see releaseUnready); shutdown waits for them.
	closing sync.WaitGroup

	mu              sync.Mutex
	etcd            *embed.Etcd
	disk            DataInfo // last inspection while etcd was down
	startFailures   int      // consecutive failed restarts on the same data
	startError      string
	snap            snapshotState
	leaderlessSince time.Time
	belowSince      time.Time // since when the member list has too few desired voters (plan.DesiredBelowQuorum)
	downSince       time.Time // when etcd was last seen not running (zero while it runs)
	appliedSeen     uint64    // the running member's applied index at the last look
	appliedSince    time.Time // when it last moved
	// restoreRetryAt and restoreBackoff pace retries of a restore.from
	// snapshot that failed to verify; only the loop goroutine uses them.
	restoreRetryAt time.Time
	restoreBackoff plan.Backoff
	last           plan.ReplicaDecision
}

// New validates the config and prepares a replica without starting
// anything.
func New(cfg config.Config, opts Options) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	lg := opts.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	lg = lg.With(zap.String("replica", cfg.Name), zap.Int("ordinal", cfg.OrdinalValue()))
	self := topology.Replica{
		Name:       cfg.Name,
		Ordinal:    cfg.OrdinalValue(),
		ClientURL:  cfg.ClientURL,
		PeerURL:    cfg.PeerURL,
		AgentURL:   cfg.AgentURL,
		MetricsURL: cfg.MetricsURL,
	}
	topo := opts.Topology
	if topo == nil {
		switch cfg.Topology.Source {
		case "", config.TopologyStatic:
			topo = topology.NewStatic(cfg.Topology.File, self)
		case config.TopologyKubernetes:
			k, err := topology.NewKubernetesFromConfig(cfg, lg.Named("topology"))
			if err != nil {
				return nil, err
			}
			topo = k
		default:
			return nil, fmt.Errorf("topology source %q is not available in this build", cfg.Topology.Source)
		}
	}
	m := opts.Metrics
	if m == nil {
		m = metrics.New()
	}
	serverTLS, err := pki.ServerConfig(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	clientTLS, err := pki.ClientConfig(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	caExpiry, certExpiry, err := pki.Expiry(cfg.TLS.CAFile, cfg.TLS.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	m.CertificateExpiry.WithLabelValues("ca").Set(float64(caExpiry.Unix()))
	m.CertificateExpiry.WithLabelValues("member").Set(float64(certExpiry.Unix()))
	r := &Replica{
		cfg:            cfg,
		lg:             lg,
		topo:           topo,
		metrics:        m,
		self:           self,
		markers:        markers{dir: parentDir(cfg.DataDir)},
		restoreBackoff: plan.Backoff{Initial: 5 * time.Second, Max: restoreRetryMax},
		serverTLS:      serverTLS,
		clientTLS:      clientTLS,
		pool:           etcdclient.NewPool(clientTLS, lg),
		agents:         agent.NewClient(clientTLS),
		interval:       cfg.Controller.Interval,
		startTimeout:   2 * time.Minute,
		// An election timeout (1s by default). The rebuild rule already
		// requires that no election can succeed (desired voters below
		// quorum, every other voter gone); this only lets raft settle.
		rebuildAfter: time.Second,
		loopDone:     make(chan struct{}),
		ready:        make(chan struct{}),
	}
	r.controller = cluster.New(cluster.Options{
		Logger:   lg.Named("controller"),
		Metrics:  m,
		Topology: topo,
		Pool:     controllerPool{r.pool},
		Local:    func() cluster.Local { return cluster.Embedded(r.localMember()) },

		UnresponsiveAfter: cfg.Recovery.UnresponsiveAfter,
		LearnerStuckAfter: cfg.Recovery.LearnerStuckAfter,
	})
	return r, nil
}

// Start binds the agent and metrics endpoints and starts the replica's
// loop and controller in the background. It returns once the endpoints
// listen; use Ready to wait for etcd.
func (r *Replica) Start(ctx context.Context) error {
	// Copies moved aside while the volume had room go first once it is
	// short, before etcd needs the room.
	if removed, why, err := pruneAside(r.cfg.DataDir, defaultAside()); err != nil {
		r.lg.Warn("could not prune moved-aside data dirs", zap.Error(err))
	} else if len(removed) > 0 {
		r.lg.Warn("deleted moved-aside data dirs", zap.Strings("removed", removed), zap.String("reason", why))
	}
	agentLn, err := listen(ctx, cmp.Or(r.cfg.ListenAgentURL, r.cfg.AgentURL))
	if err != nil {
		return fmt.Errorf("agent endpoint: %w", err)
	}
	r.agentSrv = agent.Serve(agentLn, r.serverTLS, r.agentState)
	if r.cfg.MetricsURL != "" {
		ln, err := listen(ctx, cmp.Or(r.cfg.ListenMetricsURL, r.cfg.MetricsURL))
		if err != nil {
			_ = r.agentSrv.Shutdown(ctx)
			return fmt.Errorf("metrics endpoint: %w", err)
		}
		r.httpSrv = r.serveHTTP(ln)
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	// A source that watches something (the Kubernetes informers) runs as
	// long as the loop.
	if s, ok := r.topo.(interface{ Start(context.Context) error }); ok {
		if err := s.Start(loopCtx); err != nil {
			cancel()
			_ = r.agentSrv.Shutdown(ctx)
			if r.httpSrv != nil {
				_ = r.httpSrv.Shutdown(ctx)
			}
			return fmt.Errorf("topology: %w", err)
		}
	}
	go r.run(loopCtx)
	r.lg.Info("replica started", zap.String("agent-url", r.cfg.AgentURL), zap.String("client-url", r.cfg.ClientURL))
	return nil
}

// Ready is closed once this replica's member has served as a voter with a
// leader for the first time.
func (r *Replica) Ready() <-chan struct{} { return r.ready }

// ClientURL is the advertised client URL of this replica's member.
func (r *Replica) ClientURL() string { return r.cfg.ClientURL }

// listen binds rawURL's host:port. A port still held by this replica's
// previous process (exiting as the new one starts) is retried for a while
// rather than failing the start.
func listen(ctx context.Context, rawURL string) (net.Listener, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ln, err := net.Listen("tcp", u.Host)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return ln, err
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// run is the replica's loop. It never exits on an error: every failure is
// logged, counted and retried with back-off (no crash loops).
func (r *Replica) run(ctx context.Context) {
	defer close(r.loopDone)
	// The loop owns the controller and the snapshot schedule: it starts
	// them and returns only after they have.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer r.goFollow(ctx)()
	wg.Go(func() { r.controller.Run(ctx, r.interval) })
	wg.Go(func() { r.runSnapshots(ctx) })
	back := plan.Backoff{Initial: 2 * r.interval, Max: 10 * time.Second}
	for {
		var wait time.Duration
		if err := r.step(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = back.Failed()
			r.lg.Warn("replica step failed; retrying", zap.Error(err), zap.Duration("retry-in", wait))
		} else {
			back.Succeeded()
			wait = r.interval
			if r.leaderless() {
				// Quorum may be lost: a rebuild, when one is due, waits
				// for rebuildAfter of this clock, and every pass of the
				// loop adds to the time the cluster takes no writes.
				wait = min(wait, leaderlessInterval)
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-r.stopNotify():
			timer.Stop()
		}
	}
}

// leaderlessInterval is the loop's pace while the running member sees no
// leader.
const leaderlessInterval = 100 * time.Millisecond

// leaderless reports whether the running member saw no leader, or a
// member list with too few desired voters, at the last look.
func (r *Replica) leaderless() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.etcd != nil && (!r.leaderlessSince.IsZero() || !r.belowSince.IsZero())
}

// belowQuorum notes whether the member list has too few desired voters now
// and returns for how long it has.
func (r *Replica) belowQuorum(below bool, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !below {
		r.belowSince = time.Time{}
		return 0
	}
	if r.belowSince.IsZero() {
		r.belowSince = now
	}
	return now.Sub(r.belowSince)
}

// stopNotify is closed when the running etcd stops by itself (for example
// because its member was removed). It is nil, never ready, while etcd is
// down.
func (r *Replica) stopNotify() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.etcd == nil {
		return nil
	}
	return r.etcd.Server.StopNotify()
}

// step is one pass of observe → decide → act.
func (r *Replica) step(ctx context.Context) error {
	r.reapStoppedEtcd()
	r.requestRestore(ctx)
	obs, raw, err := r.observe(ctx)
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	if err := r.tendRecord(ctx, obs, raw); err != nil {
		return err
	}
	d := plan.ReplicaNext(obs)
	r.record(d)
	switch d.Mode {
	case plan.Keep, plan.Wait:
		return nil
	case plan.Restart:
		return r.restart(ctx)
	case plan.Join:
		return r.join(ctx, obs.Cluster, obs.Record.Generation)
	case plan.Rejoin:
		return r.rejoin(ctx, obs.Cluster, obs.Record.Generation, d.Reason)
	case plan.Bootstrap:
		return r.bootstrap(ctx, obs.Record, raw)
	case plan.Rebuild:
		return r.rebuild(ctx, obs, raw, d.Reason)
	case plan.Upgrade:
		return r.upgrade(ctx, obs.Record, raw, d.Reason)
	case plan.Halt:
		r.stopEtcd()
		return nil
	case plan.Restore:
		return r.restoreSnapshot(ctx, obs, raw)
	}
	return fmt.Errorf("unknown mode %v", d.Mode)
}

// record logs a decision when it changes and counts the acting ones.
func (r *Replica) record(d plan.ReplicaDecision) {
	r.mu.Lock()
	changed := d != r.last
	r.last = d
	r.mu.Unlock()
	switch d.Mode {
	case plan.Keep:
		if changed {
			r.lg.Debug("replica decision", zap.Stringer("mode", d.Mode), zap.String("reason", d.Reason))
		}
	case plan.Wait:
		if changed {
			r.lg.Info("replica waits", zap.String("reason", d.Reason))
		}
	default:
		r.metrics.Decisions.WithLabelValues(d.Mode.String()).Inc()
		r.lg.Info("replica decision", zap.Stringer("mode", d.Mode), zap.String("reason", d.Reason))
	}
}

// reapStoppedEtcd closes an etcd that stopped by itself.
func (r *Replica) reapStoppedEtcd() {
	r.mu.Lock()
	e := r.etcd
	r.mu.Unlock()
	if e == nil {
		return
	}
	select {
	case <-e.Server.StopNotify():
	default:
		return
	}
	r.lg.Warn("etcd stopped by itself; deciding again")
	r.setEtcd(nil)
	// A member that has not published itself yet (it waits for a quorum
	// that may never come: the peers are halting too) is not ready, and
	// embed's Close waits for it to get ready: forever. That left a halted
	// replica running its old member after a restore (TestKubeRestoreFromSnapshot,
	// intermittent: "closing etcd server" and no "closed" for 3 minutes).
	select {
	case <-e.Server.ReadyNotify():
		e.Close()
	default:
		closeUnready(e)
	}
}

func (r *Replica) setEtcd(e *embed.Etcd) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.etcd = e
	r.leaderlessSince = time.Time{}
	r.belowSince = time.Time{}
	r.appliedSince = time.Time{}
	if e == nil {
		r.metrics.Ready.Set(0)
		return
	}
	go r.watchReady(e)
}

// watchReady closes Ready the first time the member serves.
func (r *Replica) watchReady(e *embed.Etcd) {
	select {
	case <-e.Server.ReadyNotify():
		r.readyOne.Do(func() {
			r.lg.Info("etcd member is serving", zap.String("member-id", e.Server.MemberID().String()))
			close(r.ready)
		})
	case <-e.Server.StopNotify():
	}
}

func (r *Replica) stopEtcd() {
	defer r.closing.Wait() // a member released by releaseUnready
	r.mu.Lock()
	e := r.etcd
	r.mu.Unlock()
	if e == nil {
		return
	}
	r.setEtcd(nil)
	// A member that has not published itself yet (it waits for a quorum
	// that may never come: the peers are halting too) is not ready, and
	// embed's Close waits for it to get ready: forever. That left a halted
	// replica running its old member after a restore (TestKubeRestoreFromSnapshot,
	// intermittent: "closing etcd server" and no "closed" for 3 minutes).
	select {
	case <-e.Server.ReadyNotify():
		e.Close()
	default:
		closeUnready(e)
	}
}

// Shutdown stops the replica. A replica whose ordinal is at or above the
// desired count first leaves the cluster (see leave); a desired replica
// just stops, keeping its membership. It waits for everything to stop or
// for ctx to end.
func (r *Replica) Shutdown(ctx context.Context) error {
	r.stopOnce.Do(func() { r.stopErr = r.shutdown(ctx) })
	return r.stopErr
}

func (r *Replica) shutdown(ctx context.Context) error {
	if r.cancel != nil {
		r.cancel()
		select {
		case <-r.loopDone:
		case <-ctx.Done():
			return fmt.Errorf("shutdown: loop did not stop: %w", ctx.Err())
		}
	}
	desired, err := r.topo.Desired(ctx)
	switch {
	case err != nil:
		r.lg.Warn("shutdown: desired count unknown; stopping without leaving", zap.Error(err))
	case r.self.Ordinal >= desired:
		leaveCtx, cancel := context.WithTimeout(ctx, r.cfg.Shutdown.LeaveTimeout)
		if err := r.leave(leaveCtx, desired); err != nil {
			r.lg.Warn("shutdown: could not leave the cluster cleanly; the leader's controller or a rebuild will finish the scale-down", zap.Error(err))
		}
		cancel()
	default:
		r.lg.Info("shutdown: replica is still desired; stopping without leaving", zap.Int("desired", desired))
	}
	r.stopEtcd()
	r.pool.Close()
	r.agents.CloseIdle()
	var errs []error
	if r.agentSrv != nil {
		errs = append(errs, r.agentSrv.Shutdown(ctx))
	}
	if r.httpSrv != nil {
		errs = append(errs, r.httpSrv.Shutdown(ctx))
	}
	r.lg.Info("replica stopped")
	return errors.Join(errs...)
}

// Close stops the replica without leaving the cluster and without waiting
// past a short grace.
func (r *Replica) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.stopOnce.Do(func() {
		if r.cancel != nil { // Start ran: its loop owns loopDone
			r.cancel()
			<-r.loopDone
		}
		r.stopEtcd()
		r.pool.Close()
		if r.agentSrv != nil {
			_ = r.agentSrv.Shutdown(ctx)
		}
		if r.httpSrv != nil {
			_ = r.httpSrv.Shutdown(ctx)
		}
	})
	return nil
}

// appliedStable notes the running member's applied index as seen now and
// returns how long it has not moved. The replica's own decisions and the
// agent that peers ask both look through it, so both report one clock.
// r.mu must be held.
func (r *Replica) appliedStable(index uint64) time.Duration {
	now := time.Now()
	if index != r.appliedSeen || r.appliedSince.IsZero() {
		r.appliedSeen, r.appliedSince = index, now
	}
	return now.Sub(r.appliedSince)
}

// agentState is what the agent endpoint reports.
func (r *Replica) agentState() agent.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := agent.State{
		Name:        r.self.Name,
		Ordinal:     r.self.Ordinal,
		EtcdVersion: version.Version,
		Mode:        r.last.Mode.String(),
		Reason:      r.last.Reason,
	}
	if e := r.etcd; e != nil {
		st.EtcdRunning = true
		st.Data = plan.DataValid.String()
		st.ClusterID = agent.ID(e.Server.Cluster().ID())
		st.MemberID = agent.ID(e.Server.MemberID())
		st.AppliedIndex = e.Server.AppliedIndex()
		st.AppliedStableMs = r.appliedStable(st.AppliedIndex).Milliseconds()
		st.Leader = agent.ID(e.Server.Leader())
		if st.Leader != 0 && st.Leader == st.MemberID {
			cs := r.controller.State()
			st.Controller = &agent.ControllerState{LastAction: cs.LastAction, LastReason: cs.LastReason, LastAt: cs.LastAt}
			for _, w := range cs.Watching {
				var d string
				if w.For > 0 {
					d = w.For.String()
				}
				st.Controller.Watching = append(st.Controller.Watching, agent.Watch{Member: w.Member, Reason: w.Reason, For: d})
			}
			if r.snap != (snapshotState{}) {
				snap := r.snap
				st.Controller.Snapshot = &snap
			}
		}
		return st
	}
	st.Data = r.disk.State.String()
	st.ClusterID = agent.ID(r.disk.ClusterID)
	st.MemberID = agent.ID(r.disk.MemberID)
	st.AppliedIndex = r.disk.AppliedIndex
	return st
}

// localMember gives the controller this replica's running etcd, or nil.
func (r *Replica) localMember() *embed.Etcd {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.etcd
}
