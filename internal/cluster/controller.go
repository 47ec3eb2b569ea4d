// Package cluster is the leader-only controller: every pass it observes the
// members (the health monitor), asks plan.Next for one action, and carries
// it out. Only the replica whose member leads acts; the others observe
// nothing and cost nothing.
//
// "What happens when a member dies" is decided in internal/plan
// (recovery.go); this package keeps the clocks that feed it (how long a
// member has been silent, how long a learner has not progressed) and makes
// the calls.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/storage"
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
	// Status asks endpoint for the status of member id; an answer from
	// another member (a new identity at the same URL) is an error.
	Status(ctx context.Context, endpoint string, id uint64) (Status, error)
	Defragment(ctx context.Context, endpoint string) error
	API(endpoint string) (API, error)
	// HashKV asks endpoint for member id's keyspace hash at rev; an answer
	// from another member is an error. etcd's refusals must satisfy
	// errors.Is against rpctypes.ErrCompacted and rpctypes.ErrFutureRev.
	HashKV(ctx context.Context, endpoint string, id uint64, rev int64) (*pb.HashKVResponse, error)
}

// Status is the part of a member's status the controller reads.
type Status interface {
	GetRaftAppliedIndex() uint64
	GetDbSize() int64
	GetDbSizeInUse() int64
}

// API is the cluster calls the controller makes, sent to the local
// (leading) member.
type API interface {
	MemberPromote(ctx context.Context, id uint64) error
	MemberRemove(ctx context.Context, id uint64) error
	MoveLeader(ctx context.Context, id uint64) error
	Compact(ctx context.Context, rev int64) error
	AlarmList(ctx context.Context) ([]plan.Alarm, error)
	AlarmDisarm(ctx context.Context, memberID uint64, alarm string) error
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
	// UnresponsiveAfter and LearnerStuckAfter are the recovery thresholds.
	UnresponsiveAfter, LearnerStuckAfter time.Duration
}

// Controller runs the leader's reconcile loop. Run owns its goroutine;
// Wait returns once it has stopped.
type Controller struct {
	opts Options
	lg   *zap.Logger
	wg   sync.WaitGroup

	mu       sync.Mutex
	health   map[uint64]*memberClock
	recovery *inflight
	// compactedRev is the revision compacted to in this NOSPACE episode.
	compactedRev int64
	// busy is set while a join is in flight or a learner waits: the loop
	// then looks again at once rather than after a whole interval, so a
	// caught-up learner is promoted within ~100ms.
	busy       bool
	lastReason string
	// lastBlocked says lastReason is a guard's refusal.
	lastBlocked bool
	last        plan.Action
	lastAt      time.Time
	watching    []Watch
	// hashes is the last complete hash comparison and what it was taken
	// on (member list and revision): while a CORRUPT alarm is raised etcd
	// takes no writes, so it is not gathered again every pass. HashKV
	// reads a member's whole keyspace.
	hashes    *plan.HashCheck
	hashesKey string
	// unresolved is the reason a CORRUPT alarm is left alone, shown in
	// State while it lasts.
	unresolved string
}

// memberClock remembers, per member, the times plan needs as durations.
type memberClock struct {
	firstSeen     time.Time
	healthySince  time.Time // zero while silent
	lastHealthy   time.Time // zero if never
	applied       uint64
	progressSince time.Time // when applied last moved
}

type inflight struct {
	ordinal  int
	memberID uint64
	reason   plan.Reason
	at       time.Time
}

// Watch is a member the health monitor has its eye on.
type Watch struct {
	Member string        `json:"member"`
	Reason string        `json:"reason"`
	For    time.Duration `json:"for"`
}

// New returns a controller.
func New(opts Options) *Controller {
	if opts.PreferLeaderAfter == 0 {
		opts.PreferLeaderAfter = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Controller{opts: opts, lg: opts.Logger, health: map[uint64]*memberClock{}}
}

// Run reconciles every interval until ctx ends. Errors are logged and the
// next pass tries again; a panic in a pass is logged, not fatal.
//
// Between passes it looks every pollStep at the local member's view of the
// membership, which costs no RPC, and passes at once when that changed: a
// replica that rejoins removes its old member and adds itself as a learner,
// and without this the controller would see the learner up to a whole
// interval late. Measured before this change: 0.2-0.9 s between a rejoined
// learner serving and its promotion, with a 1 s interval.
func (c *Controller) Run(ctx context.Context, interval time.Duration) {
	c.wg.Add(1)
	defer c.wg.Done()
	tick := time.NewTicker(min(interval, pollStep))
	defer tick.Stop()
	last := time.Now()
	seen := c.membershipKey()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		busy := c.busy
		c.mu.Unlock()
		key := c.membershipKey()
		if !passDue(time.Since(last), interval, busy, key != seen) {
			continue
		}
		seen = key
		c.safeReconcile(ctx)
		last = time.Now()
	}
}

// pollStep is how often Run looks for a membership change, and the
// interval while a join is in flight.
const pollStep = 100 * time.Millisecond

// passDue says whether Run should pass now, since elapsed since the last
// pass ended.
func passDue(elapsed, interval time.Duration, busy, membershipChanged bool) bool {
	wait := interval
	if busy {
		wait = min(interval, pollStep)
	}
	return membershipChanged || elapsed >= wait
}

// membershipKey summarises the membership as the local member knows it:
// who leads, and each member's ID, learner flag, name and client URLs
// (a rejoined learner publishes its name and URLs once it has caught up).
func (c *Controller) membershipKey() string {
	e := c.opts.Local()
	if e == nil {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%x;", uint64(e.Server.Leader()))
	for _, m := range e.Server.Cluster().Members() {
		fmt.Fprintf(&sb, "%x/%t/%s/%v;", uint64(m.ID), m.IsLearner, m.Name, m.ClientURLs)
	}
	return sb.String()
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

// State is what the controller shows in `vetcd status`.
type State struct {
	LastAction string    `json:"lastAction,omitempty"`
	LastReason string    `json:"lastReason,omitempty"`
	LastAt     time.Time `json:"lastAt,omitzero"`
	Watching   []Watch   `json:"watching,omitempty"`
	// Blocked is the guard's reason when an action is needed but refused.
	Blocked string `json:"blocked,omitempty"`
}

// State returns the last action and the members under watch.
func (c *Controller) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := State{Watching: c.watching}
	if c.unresolved != "" {
		// Shown by `vetcd status` among the watched items, which the
		// agent passes on.
		st.Watching = append(slices.Clip(st.Watching), Watch{Member: "corruption", Reason: c.unresolved})
		st.Blocked = c.unresolved
	} else if c.lastReason != "" && c.lastBlocked {
		st.Blocked = c.lastReason
	}
	if !c.lastAt.IsZero() {
		st.LastAction = fmt.Sprintf("%s %s", c.last.Kind, c.last.TargetName)
		st.LastReason, st.LastAt = c.last.Reason, c.lastAt
	}
	return st
}

// Reconcile is one observe → plan → act pass. It returns the action it
// decided on.
func (c *Controller) Reconcile(ctx context.Context) (plan.Action, error) {
	e := c.opts.Local()
	if e == nil || e.Server.Leader() == 0 || e.Server.Leader() != e.Server.MemberID() {
		c.forget()
		return plan.Action{Kind: plan.None, Reason: "not the leader"}, nil
	}
	api, err := c.localAPI(e)
	if err != nil {
		return plan.Action{}, err
	}
	obs, err := c.observe(ctx, e, api)
	if err != nil {
		return plan.Action{}, fmt.Errorf("observe: %w", err)
	}
	a := plan.Next(obs)
	c.noteCorruption(a)
	if a.Kind == plan.None {
		c.noteIdle(a)
		return a, nil
	}
	return a, c.act(ctx, e, api, a)
}

func (c *Controller) localAPI(e *embed.Etcd) (API, error) {
	adv := e.Config().AdvertiseClientUrls
	if len(adv) == 0 {
		return nil, errors.New("local member advertises no client URL")
	}
	return c.opts.Pool.API(adv[0].String())
}

// forget drops the clocks when this member stops leading: a new leader
// starts counting afresh, which only delays a recovery, never hastens it.
func (c *Controller) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.health)
	c.busy = false
	c.recovery = nil
	c.compactedRev = 0
	c.watching = nil
	c.hashes, c.hashesKey = nil, ""
	c.unresolved = ""
	if c.opts.Metrics != nil {
		c.opts.Metrics.CorruptionUnresolved.Set(0)
	}
}

// noteCorruption keeps the vetcd_corruption_unresolved gauge and the
// status line of a CORRUPT alarm that plan leaves to a person.
func (c *Controller) noteCorruption(a plan.Action) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unresolved = ""
	if a.Blocked && a.Recovery == plan.ReasonCorrupt {
		c.unresolved = a.Reason
	}
	v := 0.0
	if a.NeedsPerson {
		v = 1
	}
	c.opts.Metrics.CorruptionUnresolved.Set(v)
}

func (c *Controller) noteIdle(a plan.Action) {
	c.mu.Lock()
	changed := a.Reason != c.lastReason
	c.lastReason, c.lastBlocked = a.Reason, a.Blocked
	c.mu.Unlock()
	if !changed {
		return
	}
	if a.NeedsPerson {
		c.opts.Metrics.Actions.WithLabelValues("blocked", "refused").Inc()
		c.lg.Error("controller stopped: a person must decide", zap.String("reason", a.Reason))
		return
	}
	if a.Blocked {
		c.opts.Metrics.Actions.WithLabelValues("blocked", "refused").Inc()
		c.lg.Warn("controller action refused", zap.String("reason", a.Reason))
		return
	}
	c.lg.Debug("controller idle", zap.String("reason", a.Reason))
}

// observe is the health monitor: the member list from the local (leading)
// member's own state, every member's status over the network, the alarms,
// and the clocks kept across passes.
func (c *Controller) observe(ctx context.Context, e *embed.Etcd, api API) (plan.ClusterObservation, error) {
	s := e.Server
	quota := e.Config().QuotaBackendBytes
	if quota <= 0 {
		quota = storage.DefaultQuotaBytes
	}
	o := plan.ClusterObservation{
		LocalID:           uint64(s.MemberID()),
		LeaderID:          uint64(s.Leader()),
		PreferLeaderAfter: c.opts.PreferLeaderAfter,
		CatchUpSlack:      100,
		UnresponsiveAfter: c.opts.UnresponsiveAfter,
		LearnerStuckAfter: c.opts.LearnerStuckAfter,
		RecoveryTimeout:   max(2*c.opts.UnresponsiveAfter+c.opts.LearnerStuckAfter, 5*time.Minute),
		Revision:          s.KV().Rev(),
		QuotaBytes:        quota,
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
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	o.Alarms, err = api.AlarmList(actx)
	cancel()
	if err != nil {
		return o, fmt.Errorf("alarm list: %w", err)
	}

	ms := s.Cluster().Members()
	o.Members = make([]plan.Member, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		pm := MemberOf(m, dir)
		if len(m.ClientURLs) == 0 {
			o.Members[i] = pm
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if st, err := c.opts.Pool.Status(cctx, m.ClientURLs[0], uint64(m.ID)); err == nil {
				pm.Healthy = true
				pm.AppliedIndex = st.GetRaftAppliedIndex()
				pm.DBSize, pm.DBSizeInUse = st.GetDbSize(), st.GetDbSizeInUse()
			}
			o.Members[i] = pm
		})
	}
	wg.Wait()
	for i := range o.Members {
		if o.Members[i].ID == o.LocalID {
			// The leader answers by definition; its own index is exact.
			o.Members[i].Healthy = true
			o.Members[i].AppliedIndex = s.AppliedIndex()
		}
	}
	if len(corruptAlarms(o.Alarms)) > 0 {
		o.Hashes = c.gatherHashes(ctx, ms, o.Members, func() int64 { return s.KV().Rev() })
	}
	c.tick(&o, time.Now())
	c.opts.Metrics.Members.WithLabelValues("voter").Set(float64(len(plan.Voters(o.Members))))
	c.opts.Metrics.Members.WithLabelValues("learner").Set(float64(len(o.Members) - len(plan.Voters(o.Members))))
	return o, nil
}

func corruptAlarms(as []plan.Alarm) []plan.Alarm {
	var out []plan.Alarm
	for _, a := range as {
		if a.Name == plan.AlarmCorrupt {
			out = append(out, a)
		}
	}
	return out
}

// gatherHashes is the controller's own corruption check, made while a
// CORRUPT alarm is raised: every member's HashKV at one common revision
// (the leader's current one), for plan to compare. A member that is
// behind (ErrFutureRev), compacted past it (ErrCompacted) or answers at
// another compact revision than the others makes it ask again at the
// then current revision, a few times; what it has then goes to plan,
// which waits on an incomplete comparison rather than guess. A complete
// comparison is kept for as long as the member list and the revision stay
// (etcd takes no writes under a CORRUPT alarm).
func (c *Controller) gatherHashes(ctx context.Context, ms []*membership.Member, members []plan.Member, rev func() int64) *plan.HashCheck {
	// Only members whose status answered in this pass are asked: a hung
	// one would hold the pass for hashTimeout, and plan treats a missing
	// hash as unknown anyway.
	var targets []hashTarget
	for _, m := range ms {
		if pm, _ := plan.Find(members, uint64(m.ID)); pm.Healthy && len(m.ClientURLs) > 0 {
			targets = append(targets, hashTarget{id: uint64(m.ID), endpoint: m.ClientURLs[0]})
		}
	}
	key := fmt.Sprintf("%s@%d", plan.Fingerprint(members), rev())
	c.mu.Lock()
	if c.hashesKey == key {
		hc := c.hashes
		c.mu.Unlock()
		return hc
	}
	c.mu.Unlock()
	hc, complete := hashRound(ctx, c.lg, c.opts.Pool, targets, rev, hashRetryPause)
	if complete && len(targets) == len(members) {
		c.mu.Lock()
		c.hashes, c.hashesKey = hc, fmt.Sprintf("%s@%d", plan.Fingerprint(members), hc.Revision)
		c.mu.Unlock()
	}
	return hc
}

type hashTarget struct {
	id       uint64
	endpoint string
}

const (
	// hashAttempts bounds how often hashRound asks again at a newer
	// revision.
	hashAttempts = 5
	// hashRetryPause is the wait before asking again: a follower a few
	// entries behind catches up in milliseconds.
	hashRetryPause = 200 * time.Millisecond
	// hashTimeout bounds one member's HashKV, which reads its whole
	// keyspace (about 3.7 s for 1 GiB, see internal/replica/etcd.go).
	hashTimeout = 15 * time.Second
)

// hashRound asks every target for its hash at one revision, the current
// one from rev, and asks again at a newer one while a member cannot answer
// at it. It reports whether every target answered at one compact
// revision.
func hashRound(ctx context.Context, lg *zap.Logger, pool Pool, targets []hashTarget, rev func() int64, pause time.Duration) (*plan.HashCheck, bool) {
	var hc *plan.HashCheck
	for attempt := 1; ; attempt++ {
		r := rev()
		hc = &plan.HashCheck{Revision: r}
		answers := make([]*pb.HashKVResponse, len(targets))
		errs := make([]error, len(targets))
		var wg sync.WaitGroup
		for i, t := range targets {
			wg.Go(func() {
				hctx, cancel := context.WithTimeout(ctx, hashTimeout)
				defer cancel()
				answers[i], errs[i] = pool.HashKV(hctx, t.endpoint, t.id, r)
			})
		}
		wg.Wait()
		again := false
		compacts := map[int64]bool{}
		for i, t := range targets {
			if err := errs[i]; err != nil {
				again = again || errors.Is(err, rpctypes.ErrFutureRev) || errors.Is(err, rpctypes.ErrCompacted)
				lg.Debug("member hash unknown", zap.String("member-id", fmt.Sprintf("%x", t.id)), zap.Int64("revision", r), zap.Error(err))
				continue
			}
			hc.Hashes = append(hc.Hashes, plan.MemberHash{MemberID: t.id, Hash: answers[i].GetHash(), CompactRevision: answers[i].GetCompactRevision()})
			compacts[answers[i].GetCompactRevision()] = true
		}
		again = again || len(compacts) > 1
		if !again || attempt == hashAttempts {
			return hc, !again && len(hc.Hashes) == len(targets)
		}
		select {
		case <-ctx.Done():
			return hc, false
		case <-time.After(pause):
		}
	}
}

// tick advances the per-member clocks and fills the durations plan reads.
func (c *Controller) tick(o *plan.ClusterObservation, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var leaderApplied uint64
	for _, m := range o.Members {
		if m.ID == o.LeaderID {
			leaderApplied = m.AppliedIndex
		}
	}
	seen := map[uint64]bool{}
	var watching []Watch
	c.busy = false
	for i := range o.Members {
		m := &o.Members[i]
		seen[m.ID] = true
		clk, ok := c.health[m.ID]
		if !ok {
			clk = &memberClock{firstSeen: now, progressSince: now}
			c.health[m.ID] = clk
		}
		if m.Healthy {
			if clk.healthySince.IsZero() {
				clk.healthySince = now
			}
			clk.lastHealthy = now
			m.HealthyFor = now.Sub(clk.healthySince)
		} else {
			clk.healthySince = time.Time{}
			silentSince := clk.lastHealthy
			if silentSince.IsZero() {
				silentSince = clk.firstSeen
			}
			m.UnhealthyFor = now.Sub(silentSince)
			watching = append(watching, Watch{Member: memberName(*m), Reason: "not answering", For: m.UnhealthyFor.Round(time.Second)})
		}
		if m.AppliedIndex > clk.applied || m.AppliedIndex+o.CatchUpSlack >= leaderApplied && m.Healthy {
			clk.applied = max(clk.applied, m.AppliedIndex)
			clk.progressSince = now
		}
		if m.IsLearner || !m.Started {
			c.busy = true
		}
		if m.IsLearner {
			m.StalledFor = now.Sub(clk.progressSince)
			if m.StalledFor >= time.Second {
				watching = append(watching, Watch{Member: memberName(*m), Reason: "learner not progressing", For: m.StalledFor.Round(time.Second)})
			}
		}
	}
	for id := range c.health {
		if !seen[id] {
			delete(c.health, id)
		}
	}
	for _, a := range o.Alarms {
		w := Watch{Member: fmt.Sprintf("%x", a.MemberID), Reason: a.Name + " alarm"}
		if a.MemberID == 0 {
			w = Watch{Member: "cluster", Reason: "cluster-wide " + a.Name + " alarm (member 0)"}
		}
		watching = append(watching, w)
	}
	c.watching = watching

	if r := c.recovery; r != nil {
		pr := plan.Recovery{Ordinal: r.ordinal, MemberID: r.memberID, Reason: r.reason, For: now.Sub(r.at)}
		if plan.RecoveryDone(pr, *o) {
			c.lg.Info("recovery finished", zap.Int("ordinal", r.ordinal), zap.String("reason", string(r.reason)), zap.Duration("took", pr.For))
			c.recovery = nil
		} else {
			o.Recovery = &pr
		}
	}
	nospace := false
	for _, a := range o.Alarms {
		nospace = nospace || a.Name == plan.AlarmNoSpace
	}
	if !nospace {
		c.compactedRev = 0
	}
	o.NoSpaceCompacted = c.compactedRev != 0
}

func memberName(m plan.Member) string {
	if m.Name != "" {
		return m.Name
	}
	return fmt.Sprintf("%x", m.ID)
}

// act carries out one action, if the member list is still the one it was
// decided on.
func (c *Controller) act(ctx context.Context, e *embed.Etcd, api API, a plan.Action) error {
	var now []plan.Member
	clientURL := ""
	ordinal := plan.NoOrdinal
	for _, m := range e.Server.Cluster().Members() {
		now = append(now, plan.Member{ID: uint64(m.ID), IsLearner: m.IsLearner})
		if uint64(m.ID) == a.Target && len(m.ClientURLs) > 0 {
			clientURL = m.ClientURLs[0]
		}
	}
	if fp := plan.Fingerprint(now); fp != a.Fingerprint {
		return nil // the list moved under us: observe again next pass
	}
	if a.Kind == plan.Remove {
		if dir, err := topology.LookupAll(ctx, c.opts.Topology); err == nil {
			for _, m := range e.Server.Cluster().Members() {
				if uint64(m.ID) == a.Target {
					ordinal = dir.Ordinal(m.PeerURLs)
				}
			}
		}
	}
	lg := c.lg.With(zap.Stringer("action", a.Kind), zap.String("target", a.TargetName),
		zap.String("member-id", fmt.Sprintf("%x", a.Target)), zap.String("reason", a.Reason))
	if a.Recovery != "" {
		lg = lg.With(zap.String("recovery", string(a.Recovery)))
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
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
	case plan.Compact:
		err = api.Compact(cctx, a.Revision)
		if errors.Is(err, rpctypes.ErrCompacted) {
			err = nil
		}
		if err == nil {
			c.mu.Lock()
			c.compactedRev = a.Revision
			c.mu.Unlock()
		}
	case plan.Defrag:
		if clientURL == "" {
			return fmt.Errorf("defrag %s: no client URL", a.TargetName)
		}
		err = c.opts.Pool.Defragment(cctx, clientURL)
	case plan.Disarm:
		err = api.AlarmDisarm(cctx, a.Target, a.Alarm)
	default:
		return fmt.Errorf("unknown action %v", a.Kind)
	}
	switch {
	case err == nil:
		c.opts.Metrics.Actions.WithLabelValues(a.Kind.String(), "ok").Inc()
		if a.Recovery != "" {
			c.opts.Metrics.Recoveries.WithLabelValues(string(a.Recovery)).Inc()
		}
		lg.Info("controller action done")
		c.mu.Lock()
		c.last, c.lastAt, c.lastReason = a, time.Now(), ""
		if a.Kind == plan.Remove && a.Recovery != "" {
			c.recovery = &inflight{ordinal: ordinal, memberID: a.Target, reason: a.Recovery, at: time.Now()}
		}
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

// MemberOf maps an etcd member to plan's view of it, finding its replica
// by peer URL. Health and progress are left for the caller to observe.
func MemberOf(m *membership.Member, dir topology.Directory) plan.Member {
	pm := plan.Member{
		ID:        uint64(m.ID),
		Name:      m.Name,
		Ordinal:   dir.Ordinal(m.PeerURLs),
		IsLearner: m.IsLearner,
		Started:   m.Name != "",
	}
	if len(m.PeerURLs) > 0 {
		pm.PeerURL = m.PeerURLs[0]
	}
	return pm
}
