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

	"github.com/vetcd/vetcd/internal/cluster"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// leave takes this surplus replica's member out of the cluster before the
// process exits, the way a StatefulSet scale-down wants it: the steps
// (hand over leadership, wait for the heir, the quorum guard, removal) are
// plan.LeaveNext's; then a marker is left so that its data never starts
// again with the old identity.
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
	err := r.leaveSteps(ctx, e, desired)
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

// leaveSteps carries out plan.LeaveNext's steps until the member is out or
// ctx ends. Each pass observes the member list and who answers afresh.
func (r *Replica) leaveSteps(ctx context.Context, e *embed.Etcd, desired int) error {
	s := e.Server
	dir, err := directory(ctx, r.topo)
	if err != nil {
		return err
	}
	o := plan.LeaveObservation{SelfID: uint64(s.MemberID()), Desired: desired}
	last := plan.LeaveStep(-1)
	for {
		if removed(s, o.SelfID) {
			return nil
		}
		clientURLs := r.observeLeave(ctx, e, dir, &o)
		d := plan.LeaveNext(o)
		if d.Step != last {
			r.lg.Info("leave: next step", zap.Stringer("step", d.Step), zap.String("heir", d.Heir.Name), zap.String("reason", d.Reason))
			last = d.Step
		}
		o.Heir, o.Target = d.Heir.ID, d.Target
		switch d.Step {
		case plan.LeaveDone:
			return nil
		case plan.LeaveStuck:
			return errors.New(d.Reason)
		case plan.LeaveHandOver:
			o.HandOverTried = true
			cli, err := r.pool.Get(r.cfg.ClientURL)
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = cli.MoveLeader(cctx, d.Heir.ID)
			cancel()
			if err != nil {
				r.lg.Warn("leave: could not hand over leadership; removing anyway", zap.String("heir", d.Heir.Name), zap.Error(err))
			} else {
				r.lg.Info("leave: handed over leadership", zap.String("heir", d.Heir.Name))
			}
			continue
		case plan.LeaveWaitHeir, plan.LeaveWaitGuard:
			if err := sleep(ctx, leavePoll); err != nil {
				return fmt.Errorf("not removing itself: %s", d.Reason)
			}
			continue
		case plan.LeaveRemove:
		}
		cli, err := r.pool.Get(clientURLs[d.Heir.ID])
		if err != nil {
			return err
		}
		return retryTransient(ctx, r.lg, "remove self", func(ctx context.Context) error {
			_, err := cli.MemberRemove(ctx, o.SelfID)
			if errors.Is(err, rpctypes.ErrMemberNotFound) {
				return nil
			}
			return err
		})
	}
}

// leavePoll is the pace of a leaving replica's waits (for the heir to
// catch up, for the quorum guard to pass).
const leavePoll = 100 * time.Millisecond

// observeLeave fills o with the member list in this member's own state and
// every member's status (cluster.ObserveMembers); it returns the members'
// client URLs.
func (r *Replica) observeLeave(ctx context.Context, e *embed.Etcd, dir topology.Directory, o *plan.LeaveObservation) map[uint64]string {
	s := e.Server
	o.Leader, o.Committed = uint64(s.Leader()), s.CommittedIndex()
	local := cluster.Embedded(e)
	ms := local.Members()
	clientURLs := map[uint64]string{}
	for _, m := range ms {
		if len(m.ClientURLs) > 0 {
			clientURLs[m.ID] = m.ClientURLs[0]
		}
	}
	o.Members = cluster.ObserveMembers(ctx, controllerPool{r.pool}, ms, dir, local, time.Second)
	return clientURLs
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
