// Package cluster is the leader-only controller: every pass it observes the
// members, asks plan.Next for one action, and carries it out. Only the
// replica whose member leads acts; the others observe nothing and cost
// nothing.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/metrics"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// Topology is what the controller needs to know of the replicas.
type Topology interface {
	Desired(ctx context.Context) (int, error)
	Lookup(ctx context.Context, ordinal int) (topology.Replica, bool, error)
}

// Pool reaches members by client URL.
type Pool interface {
	Status(ctx context.Context, endpoint string) (Status, error)
	Members(endpoint string) (MemberAPI, error)
}

// Status is the part of a member's status the controller reads.
type Status interface {
	GetRaftAppliedIndex() uint64
}

// MemberAPI is the membership calls the controller makes, sent to the
// local (leading) member.
type MemberAPI interface {
	MemberPromote(ctx context.Context, id uint64) error
	MemberRemove(ctx context.Context, id uint64) error
	MoveLeader(ctx context.Context, id uint64) error
}

// Options configures a Controller.
type Options struct {
	Logger   *zap.Logger
	Metrics  *metrics.Metrics
	Topology Topology
	Pool     Pool
	// Local returns the running local member, or nil.
	Local func() *embed.Etcd
	// PreferLeaderAfter: see plan.ClusterObservation. Default 10s.
	PreferLeaderAfter time.Duration
}

// Controller runs the leader's reconcile loop. Run owns its goroutine;
// Wait returns once it has stopped.
type Controller struct {
	opts Options
	lg   *zap.Logger
	wg   sync.WaitGroup

	mu           sync.Mutex
	healthySince map[uint64]time.Time
	lastReason   string
	last         plan.Action
	lastAt       time.Time
}

// New returns a controller.
func New(opts Options) *Controller {
	if opts.PreferLeaderAfter == 0 {
		opts.PreferLeaderAfter = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Controller{opts: opts, lg: opts.Logger, healthySince: map[uint64]time.Time{}}
}

// Run reconciles every interval until ctx ends. Errors are logged and the
// next pass tries again; a panic in a pass is logged, not fatal.
func (c *Controller) Run(ctx context.Context, interval time.Duration) {
	c.wg.Add(1)
	defer c.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.safeReconcile(ctx)
	}
}

// Wait blocks until Run has returned.
func (c *Controller) Wait() { c.wg.Wait() }

func (c *Controller) safeReconcile(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			c.lg.Error("controller pass panicked", zap.Any("panic", r))
		}
	}()
	if _, err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
		c.lg.Warn("controller pass failed", zap.Error(err))
	}
}

// LastAction returns the last action taken and when.
func (c *Controller) LastAction() (plan.Action, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.lastAt
}

// Reconcile is one observe → plan → act pass. It returns the action it
// decided on.
func (c *Controller) Reconcile(ctx context.Context) (plan.Action, error) {
	e := c.opts.Local()
	if e == nil || e.Server.Leader() == 0 || e.Server.Leader() != e.Server.MemberID() {
		c.forgetHealth()
		return plan.Action{Kind: plan.None, Reason: "not the leader"}, nil
	}
	obs, err := c.observe(ctx, e)
	if err != nil {
		return plan.Action{}, fmt.Errorf("observe: %w", err)
	}
	a := plan.Next(obs)
	if a.Kind == plan.None {
		c.noteIdle(a)
		return a, nil
	}
	return a, c.act(ctx, e, a)
}

func (c *Controller) forgetHealth() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.healthySince)
}

func (c *Controller) noteIdle(a plan.Action) {
	c.mu.Lock()
	changed := a.Reason != c.lastReason
	c.lastReason = a.Reason
	c.mu.Unlock()
	if !changed {
		return
	}
	if a.Blocked {
		c.opts.Metrics.Actions.WithLabelValues("blocked", "refused").Inc()
		c.lg.Warn("controller action refused", zap.String("reason", a.Reason))
		return
	}
	c.lg.Debug("controller idle", zap.String("reason", a.Reason))
}

// observe reads the member list from the local (leading) member's own
// state, and every member's status over the network.
func (c *Controller) observe(ctx context.Context, e *embed.Etcd) (plan.ClusterObservation, error) {
	s := e.Server
	o := plan.ClusterObservation{
		LocalID:           uint64(s.MemberID()),
		LeaderID:          uint64(s.Leader()),
		PreferLeaderAfter: c.opts.PreferLeaderAfter,
		CatchUpSlack:      100,
	}
	desired, err := c.opts.Topology.Desired(ctx)
	if err != nil {
		return o, err
	}
	o.Desired = desired
	dir, err := topology.LookupAll(ctx, c.opts.Topology)
	if err != nil {
		return o, err
	}
	ms := s.Cluster().Members()
	o.Members = make([]plan.Member, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		pm := plan.Member{
			ID:        uint64(m.ID),
			Name:      m.Name,
			PeerURL:   first(m.PeerURLs),
			Ordinal:   dir.Ordinal(m.PeerURLs),
			IsLearner: m.IsLearner,
			Started:   m.Name != "",
		}
		if pm.ID == o.LocalID {
			pm.Healthy = true
			pm.AppliedIndex = s.AppliedIndex()
			o.Members[i] = pm
			continue
		}
		if len(m.ClientURLs) == 0 {
			o.Members[i] = pm
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if st, err := c.opts.Pool.Status(cctx, m.ClientURLs[0]); err == nil {
				pm.Healthy = true
				pm.AppliedIndex = st.GetRaftAppliedIndex()
			}
			o.Members[i] = pm
		})
	}
	wg.Wait()

	now := time.Now()
	c.mu.Lock()
	seen := map[uint64]bool{}
	for i := range o.Members {
		m := &o.Members[i]
		seen[m.ID] = true
		if !m.Healthy {
			delete(c.healthySince, m.ID)
			continue
		}
		since, ok := c.healthySince[m.ID]
		if !ok {
			since = now
			c.healthySince[m.ID] = now
		}
		m.HealthyFor = now.Sub(since)
	}
	for id := range c.healthySince {
		if !seen[id] {
			delete(c.healthySince, id)
		}
	}
	c.mu.Unlock()
	c.opts.Metrics.Members.WithLabelValues("voter").Set(float64(len(plan.Voters(o.Members))))
	c.opts.Metrics.Members.WithLabelValues("learner").Set(float64(len(o.Members) - len(plan.Voters(o.Members))))
	return o, nil
}

// act carries out one action, if the member list is still the one it was
// decided on.
func (c *Controller) act(ctx context.Context, e *embed.Etcd, a plan.Action) error {
	var now []plan.Member
	for _, m := range e.Server.Cluster().Members() {
		now = append(now, plan.Member{ID: uint64(m.ID), IsLearner: m.IsLearner})
	}
	if fp := plan.Fingerprint(now); fp != a.Fingerprint {
		return nil // the list moved under us: observe again next pass
	}
	adv := e.Config().AdvertiseClientUrls
	if len(adv) == 0 {
		return errors.New("local member advertises no client URL")
	}
	api, err := c.opts.Pool.Members(adv[0].String())
	if err != nil {
		return err
	}
	lg := c.lg.With(zap.Stringer("action", a.Kind), zap.String("target", a.TargetName),
		zap.String("member-id", fmt.Sprintf("%x", a.Target)), zap.String("reason", a.Reason))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch a.Kind {
	case plan.Promote:
		err = api.MemberPromote(cctx, a.Target)
	case plan.Remove:
		err = api.MemberRemove(cctx, a.Target)
		if errors.Is(err, rpctypes.ErrMemberNotFound) {
			err = nil
		}
	case plan.MoveLeader:
		err = api.MoveLeader(cctx, a.Target)
	default:
		return fmt.Errorf("unknown action %v", a.Kind)
	}
	switch {
	case err == nil:
		c.opts.Metrics.Actions.WithLabelValues(a.Kind.String(), "ok").Inc()
		lg.Info("controller action done")
		c.mu.Lock()
		c.last, c.lastAt, c.lastReason = a, time.Now(), ""
		c.mu.Unlock()
		return nil
	case errors.Is(err, rpctypes.ErrMemberLearnerNotReady), errors.Is(err, rpctypes.ErrUnhealthy), errors.Is(err, rpctypes.ErrTooManyLearners):
		c.opts.Metrics.Actions.WithLabelValues(a.Kind.String(), "refused").Inc()
		lg.Info("controller action refused by etcd; will retry", zap.Error(err))
		return nil
	default:
		c.opts.Metrics.Actions.WithLabelValues(a.Kind.String(), "error").Inc()
		return fmt.Errorf("%s %s: %w", a.Kind, a.TargetName, err)
	}
}

func first(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return xs[0]
}
