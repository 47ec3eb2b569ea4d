package replica

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// leave takes this surplus replica's member out of the cluster before the
// process exits, the way a StatefulSet scale-down wants it:
//
//  1. if it leads, hand leadership to the lowest-ordinal desired voter;
//  2. wait until that voter has applied everything this member committed,
//     so the survivor holds every acknowledged write even if the rest of
//     the cluster disappears next;
//  3. remove itself, if plan.CheckRemoval allows it;
//  4. leave a marker so its data never starts again with the old identity.
//
// When a step cannot finish in time the member is left in place: the
// leader's controller removes it, or a rebuild recovers quorum.
func (r *Replica) leave(ctx context.Context, desired int) error {
	e := r.localMember()
	if e == nil {
		return errors.New("etcd is not running")
	}
	s := e.Server
	selfID := uint64(s.MemberID())
	// Removal by anyone (this replica, the leader's controller) stops the
	// server: that ends every step in flight, and counts as success.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.StopNotify():
			cancel()
		case <-ctx.Done():
		}
	}()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		r.closeClientsWhenRemoved(ctx, e, selfID)
	}()
	err := r.leaveSteps(ctx, s, desired)
	cancel()
	<-watchDone
	if removed(s, selfID) {
		closeClients(e) // removed without the watcher seeing it in time
	}
	if removed(s, selfID) {
		return r.markLeft(s, selfID, desired, r.lg)
	}
	return err
}

func (r *Replica) leaveSteps(ctx context.Context, s *etcdserver.EtcdServer, desired int) error {
	dir, err := directory(ctx, r.topo)
	if err != nil {
		return err
	}
	selfID := uint64(s.MemberID())
	clientURLs := map[uint64]string{}
	var members []plan.Member
	for _, m := range s.Cluster().Members() {
		pm := fromMembership(m, dir)
		members = append(members, pm)
		if len(m.ClientURLs) > 0 {
			clientURLs[pm.ID] = m.ClientURLs[0]
		}
	}
	self, ok := plan.Find(members, selfID)
	if !ok {
		return nil // already removed
	}

	// Who answers decides the heir (plan.Heir).
	for i := range members {
		m := &members[i]
		if m.IsLearner || m.Ordinal == plan.NoOrdinal || m.Ordinal >= desired || clientURLs[m.ID] == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := r.pool.MemberStatus(cctx, clientURLs[m.ID], m.ID)
		cancel()
		if err != nil {
			continue
		}
		m.Healthy = true
		m.AppliedIndex = st.GetRaftAppliedIndex()
	}
	heir, found := plan.Heir(members, desired)
	if !found {
		return errors.New("no desired voter answers; not leaving")
	}
	lg := r.lg.With(zap.String("heir", heir.Name))

	if !self.IsLearner && uint64(s.Leader()) == selfID {
		cli, err := r.pool.Get(r.cfg.ClientURL)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = cli.MoveLeader(cctx, heir.ID)
		cancel()
		if err != nil {
			lg.Warn("leave: could not hand over leadership; removing anyway", zap.Error(err))
		} else {
			lg.Info("leave: handed over leadership")
		}
	}

	if !self.IsLearner {
		target := s.CommittedIndex()
		if err := r.waitApplied(ctx, s, selfID, clientURLs[heir.ID], target); err != nil {
			return fmt.Errorf("heir %s did not catch up to index %d: %w", heir.Name, target, err)
		}
	}

	// The quorum guard, re-checked until it passes or time runs out: when
	// every surplus replica leaves at once, one removal makes the next one
	// safe, and a peer busy leaving may miss one status call.
	for {
		if removed(s, selfID) {
			return nil
		}
		why := r.removalGuard(ctx, s, dir, selfID)
		if why == "" {
			break
		}
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return fmt.Errorf("not removing itself: %s", why)
		}
	}
	cli, err := r.pool.Get(clientURLs[heir.ID])
	if err != nil {
		return err
	}
	err = retryTransient(ctx, r.lg, "remove self", func(ctx context.Context) error {
		_, err := cli.MemberRemove(ctx, selfID)
		if errors.Is(err, rpctypes.ErrMemberNotFound) {
			return nil
		}
		return err
	})
	return err
}

// removed reports whether this member is out of the cluster: removed by
// itself, by the leader's controller, or stopped because it was removed.
func removed(s *etcdserver.EtcdServer, selfID uint64) bool {
	if s.Cluster().Member(types.ID(selfID)) == nil {
		return true
	}
	select {
	case <-s.StopNotify():
		return true
	default:
		return false
	}
}

// markLeft records that this member left, so its data never starts again
// with the old identity.
func (r *Replica) markLeft(s *etcdserver.EtcdServer, selfID uint64, desired int, lg *zap.Logger) error {
	if err := r.markers.writeLeft(selfID, uint64(s.Cluster().ID()), time.Now().UTC()); err != nil {
		return fmt.Errorf("write left marker: %w", err)
	}
	r.metrics.Actions.WithLabelValues("leave", "ok").Inc()
	lg.Info("left the cluster: this replica is surplus", zap.Int("desired", desired))
	return nil
}

// removalGuard checks plan.CheckRemoval against the current member list
// and each voter's health.
func (r *Replica) removalGuard(ctx context.Context, s *etcdserver.EtcdServer, dir topology.Directory, selfID uint64) string {
	var members []plan.Member
	for _, m := range s.Cluster().Members() {
		pm := fromMembership(m, dir)
		if pm.ID == selfID {
			pm.Healthy = true
		} else if len(m.ClientURLs) > 0 {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := r.pool.MemberStatus(cctx, m.ClientURLs[0], uint64(m.ID))
			cancel()
			pm.Healthy = err == nil
		}
		members = append(members, pm)
	}
	return plan.CheckRemoval(members, selfID)
}

// waitApplied polls endpoint until its applied index reaches target, or
// this member is removed (nothing is left to hand over).
func (r *Replica) waitApplied(ctx context.Context, s *etcdserver.EtcdServer, selfID uint64, endpoint string, target uint64) error {
	for !removed(s, selfID) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := r.pool.Status(cctx, endpoint)
		cancel()
		if err == nil && st.GetRaftAppliedIndex() >= target {
			return nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// removedPoll is how often a leaving member looks for its own removal in
// its member list.
const removedPoll = 2 * time.Millisecond

// closeClientsWhenRemoved closes the member's client listeners as soon as
// it sees its own removal applied, and returns then or when ctx ends. A
// removed member's etcd goes on serving clients until it stops a second
// later, and a Status request in that window panics in etcd
// ("failed to find local ID in cluster members", see removedPanicHook).
// Closing the listeners makes etcd stop its gRPC server, which ends the
// established connections too, so clients move to another member at once.
func (r *Replica) closeClientsWhenRemoved(ctx context.Context, e *embed.Etcd, selfID uint64) {
	t := time.NewTicker(removedPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if e.Server.Cluster().Member(types.ID(selfID)) == nil {
			closeClients(e)
			r.lg.Info("leave: own removal applied; stopped serving clients")
			return
		}
	}
}

// closeClients closes member e's client listeners. embed then stops the
// member's gRPC server (it stops it when its listener fails), which closes
// the established client connections; embed's Close later closes the rest.
func closeClients(e *embed.Etcd) {
	for _, l := range e.Clients {
		_ = l.Close()
	}
}

// votes reports whether this member is a voter in its own member list. It
// is etcd's !IsLearner() without its panic on a member whose removal was
// applied (false then).
func votes(s *etcdserver.EtcdServer) bool {
	m := s.Cluster().Member(s.MemberID())
	return m != nil && !m.IsLearner
}
