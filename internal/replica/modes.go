package replica

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/etcdclient"
	"github.com/vetcd/vetcd/internal/plan"
)

// restart starts etcd on the valid data it already has. It does not wait
// for readiness: a member restarting without quorum is not ready until its
// peers return, and must keep running meanwhile.
func (r *Replica) restart(ctx context.Context) error {
	e, err := r.startEtcd(ctx, startSpec{})
	r.mu.Lock()
	if err != nil {
		r.startFailures++
		r.startError = err.Error()
	} else {
		r.startFailures, r.startError = 0, ""
	}
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	r.setEtcd(e)
	return nil
}

// bootstrap founds a new one-member cluster. It first claims the founding
// in the cluster record (compare-and-swap from an empty record, or from its
// own unfinished claim), so that no second founding can start, then records
// the cluster as generation 1 once its member serves; a failure in between
// is finished by tendRecord on a later pass.
func (r *Replica) bootstrap(ctx context.Context, rec plan.Record, raw string) error {
	if rec.Claim == nil || rec.Claim.Holder != r.self.Ordinal || rec.Claim.Kind != plan.ClaimFound {
		var err error
		if rec, raw, err = r.claim(ctx, rec, raw, plan.Claim{Kind: plan.ClaimFound}); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	if err := r.migrateAtFounding(ctx, "vetcd-"+hex.EncodeToString(token)); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := r.migrateEtcdAtFounding(ctx, "vetcd-"+hex.EncodeToString(token)); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	e, err := r.startEtcd(ctx, startSpec{token: "vetcd-" + hex.EncodeToString(token), waitReady: true})
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	r.setEtcd(e)
	id, member := uint64(e.Server.Cluster().ID()), uint64(e.Server.MemberID())
	next := plan.NextGeneration(rec, plan.ID(id), plan.ID(member), plan.Made{How: plan.OriginFounded, By: r.self.Name, At: time.Now()})
	if err := r.markers.writeGeneration(member, id, next.Generation, time.Now()); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := r.swapRecord(ctx, raw, next); err != nil {
		return fmt.Errorf("bootstrap: record the founded cluster (retried on the next pass): %w", err)
	}
	r.lg.Info("founded a new cluster", zap.String("cluster-id", fmt.Sprintf("%x", id)), zap.Uint64("generation", next.Generation))
	return nil
}

// rejoin moves the data dir aside and joins with a clean one.
func (r *Replica) rejoin(ctx context.Context, c plan.Cluster, gen uint64, reason string) error {
	r.stopEtcd()
	dst, err := moveAside(r.cfg.DataDir, reason, defaultAside(), time.Now())
	if err != nil {
		return fmt.Errorf("rejoin: %w", err)
	}
	if dst != "" {
		r.lg.Warn("moved data dir aside", zap.String("to", dst), zap.String("reason", reason))
	}
	if err := r.markers.clearLeft(); err != nil {
		return fmt.Errorf("rejoin: %w", err)
	}
	r.mu.Lock()
	r.startFailures, r.startError = 0, ""
	r.mu.Unlock()
	r.metrics.Recoveries.WithLabelValues("rejoin").Inc()
	return r.join(ctx, c, gen)
}

// join adds this replica as a learner and starts etcd with an empty data
// dir. Transient refusals are retried here, in-process; a join that cannot
// finish returns an error and the loop decides again. The new member's data
// is marked with gen, the record's generation the join was decided on.
func (r *Replica) join(ctx context.Context, c plan.Cluster, gen uint64) error {
	var endpoints []string
	for _, m := range c.Members {
		if m.Started && m.PeerURL != r.cfg.PeerURL {
			if rep, ok, err := r.topo.Lookup(ctx, m.Ordinal); err == nil && ok {
				endpoints = append(endpoints, rep.ClientURL)
			}
		}
	}
	if len(endpoints) == 0 {
		return errors.New("join: no started member to ask")
	}
	cli, err := etcdclient.New(endpoints, r.clientTLS, r.lg)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	defer cli.Close()

	members, err := r.addSelf(ctx, cli, c)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	initial := initialCluster(members, r.cfg.Name, r.cfg.PeerURL)

	const attempts = 5
	for attempt := 1; ; attempt++ {
		// The data dir is ours and fresh: a failed attempt's partial
		// member data must not be mistaken for a member's later.
		if err := os.RemoveAll(r.cfg.DataDir); err != nil {
			return fmt.Errorf("join: clean data dir: %w", err)
		}
		e, err := r.startEtcd(ctx, startSpec{initialCluster: initial, existing: true, waitReady: true, watchPublish: true})
		if err == nil {
			r.setEtcd(e)
			if gen != 0 {
				if err := r.markers.writeGeneration(uint64(e.Server.MemberID()), uint64(e.Server.Cluster().ID()), gen, time.Now()); err != nil {
					return fmt.Errorf("join: %w", err)
				}
			}
			r.lg.Info("joined the cluster as a learner", zap.String("member-id", e.Server.MemberID().String()), zap.Uint64("generation", gen))
			return nil
		}
		if !isMemberCountUnequal(err) || attempt == attempts {
			return fmt.Errorf("join: %w", err)
		}
		r.lg.Info("join raced the member add; starting again with a clean data dir", zap.Int("attempt", attempt), zap.Error(err))
		if err := sleep(ctx, time.Duration(attempt)*300*time.Millisecond); err != nil {
			return err
		}
	}
}

// addSelf makes sure the member list holds an unstarted learner with this
// replica's peer URL, and returns the member list. A started member with
// our peer URL is a stale identity of this replica and is removed first.
func (r *Replica) addSelf(ctx context.Context, cli *clientv3.Client, c plan.Cluster) ([]*etcdserverpb.Member, error) {
	for _, m := range c.Members {
		if m.PeerURL != r.cfg.PeerURL {
			continue
		}
		if !m.Started {
			// An earlier attempt added us: start as that member.
			resp, err := cli.MemberList(ctx)
			if err != nil {
				return nil, fmt.Errorf("member list: %w", err)
			}
			return resp.Members, nil
		}
		r.lg.Warn("removing this replica's stale member before joining", zap.String("member-id", fmt.Sprintf("%x", m.ID)))
		err := retryTransient(ctx, r.lg, "remove stale member", func(ctx context.Context) error {
			_, err := cli.MemberRemove(ctx, m.ID)
			if errors.Is(err, rpctypes.ErrMemberNotFound) {
				return nil
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	var resp *clientv3.MemberAddResponse
	err := retryTransient(ctx, r.lg, "add learner", func(ctx context.Context) error {
		var err error
		resp, err = cli.MemberAddAsLearner(ctx, []string{r.cfg.PeerURL})
		return err
	})
	if err != nil {
		return nil, err
	}
	r.lg.Info("added this replica as a learner", zap.String("member-id", fmt.Sprintf("%x", resp.Member.GetID())))
	return resp.Members, nil
}

// initialCluster builds --initial-cluster for a joiner from the member
// list. etcd matches members by peer URL; names of members that have not
// started yet only need to be unique.
func initialCluster(members []*etcdserverpb.Member, selfName, selfPeerURL string) string {
	var parts []string
	for _, m := range members {
		name := m.GetName()
		if slices.Contains(m.GetPeerURLs(), selfPeerURL) {
			name = selfName
		} else if name == "" {
			name = fmt.Sprintf("unstarted-%x", m.GetID())
		}
		for _, u := range m.GetPeerURLs() {
			parts = append(parts, name+"="+u)
		}
	}
	return strings.Join(parts, ",")
}

// transient reports whether a membership call failed for a reason that
// goes away by itself: etcd's strict reconfiguration checks right after a
// start, the learner limit while another replica joins, a leader change.
func transient(err error) bool {
	for _, t := range []error{
		rpctypes.ErrUnhealthy, rpctypes.ErrTooManyLearners, rpctypes.ErrMemberNotEnoughStarted,
		rpctypes.ErrMemberLearnerNotReady, rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader, rpctypes.ErrTimeoutDueToConnectionLost,
		context.DeadlineExceeded,
	} {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// retryTransient calls fn until it succeeds, fails for a lasting reason,
// or 30 s pass; each call gets its own 5 s deadline.
func retryTransient(ctx context.Context, lg *zap.Logger, what string, fn func(context.Context) error) error {
	deadline := time.Now().Add(30 * time.Second)
	back := plan.Backoff{Initial: 200 * time.Millisecond, Max: 2 * time.Second}
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !transient(err) || time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		lg.Info("transient refusal; retrying", zap.String("call", what), zap.Error(err))
		if err := sleep(ctx, back.Failed()); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// rebuild restarts this member alone with ForceNewCluster.
//
// WARNING: ForceNewCluster discards the other members. plan.ReplicaNext
// allows it only when the scale-down broke quorum, every surplus replica is
// confirmed gone, and this member holds the highest applied index of the
// desired survivors. It first claims the rebuild in the cluster record
// (compare-and-swap), so that of two survivors deciding at once only one
// forces (finding 2); once the forced member leads alone, the record starts
// the next generation with it, and data of the dropped members can never
// serve again (finding 1). A marker beside the data dir records the forced
// start so that it happens once per member list.
func (r *Replica) rebuild(ctx context.Context, obs plan.ReplicaObservation, raw, reason string) error {
	rec := obs.Record
	if c := rec.Claim; c == nil || c.Kind != plan.ClaimRebuild || c.Holder != r.self.Ordinal {
		var err error
		if rec, raw, err = r.claim(ctx, rec, raw, plan.Claim{Kind: plan.ClaimRebuild, Member: plan.ID(obs.Local.MemberID), FromMembers: plan.Fingerprint(obs.Local.Members)}); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
	}
	m := rebuildMarker{
		MemberID:    fmt.Sprintf("%x", obs.Local.MemberID),
		ClusterID:   fmt.Sprintf("%x", obs.Local.ClusterID),
		FromMembers: plan.Fingerprint(obs.Local.Members),
		Reason:      reason,
		State:       "started",
		At:          time.Now().UTC(),
	}
	if err := r.markers.writeRebuild(m); err != nil {
		return fmt.Errorf("rebuild: write marker: %w", err)
	}
	r.lg.Warn("rebuilding the cluster from this member with force-new-cluster", zap.String("reason", reason))
	// The member has no quorum and nothing to hand over: release it at
	// once (as a kill -9 would; every acknowledged entry is fsynced)
	// rather than wait for embed's Close to drain peer connections to
	// members that are gone. Every second here is a second without writes.
	r.mu.Lock()
	old := r.etcd
	r.mu.Unlock()
	if old != nil {
		r.setEtcd(nil)
		r.releaseUnready(old)
	}
	e, err := r.startEtcd(ctx, startSpec{force: true, waitReady: true})
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	r.setEtcd(e)
	// Counted once the forced start is done: that is the rebuild, whether
	// or not the record write below must wait for a later pass.
	r.metrics.Rebuilds.Inc()
	m.State = "done"
	m.At = time.Now().UTC()
	if err := r.markers.writeRebuild(m); err != nil {
		return fmt.Errorf("rebuild: write marker: %w", err)
	}
	next := plan.RebuiltRecord(rec, obs.Local, r.self.Name, time.Now())
	if err := r.markers.writeGeneration(obs.Local.MemberID, obs.Local.ClusterID, next.Generation, time.Now()); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	if err := r.swapRecord(ctx, raw, next); err != nil {
		return fmt.Errorf("rebuild: record generation %d (retried on the next pass): %w", next.Generation, err)
	}
	r.lg.Warn("rebuild complete: this member is the only voter of a new generation; desired replicas rejoin as learners",
		zap.String("cluster-id", e.Server.Cluster().ID().String()), zap.Uint64("generation", next.Generation))
	return nil
}
