package replica

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"

	"github.com/vetcd/vetcd/internal/cluster"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

func parentDir(dataDir string) string { return filepath.Dir(filepath.Clean(dataDir)) }

// Directory is the peer-URL index of the replicas.
type Directory = topology.Directory

func directory(ctx context.Context, topo topology.Source) (Directory, error) {
	return topology.LookupAll(ctx, topo)
}

// observe gathers everything plan.ReplicaNext needs.
// It also returns the stored text of the cluster record, for a later
// compare-and-swap.
func (r *Replica) observe(ctx context.Context) (o plan.ReplicaObservation, rawRecord string, err error) {
	o = plan.ReplicaObservation{Ordinal: r.self.Ordinal, RebuildAfter: r.rebuildAfter, Gone: map[int]bool{}, Now: time.Now()}
	desired, err := r.topo.Desired(ctx)
	if err != nil {
		return o, "", err
	}
	o.Desired = desired
	r.metrics.Desired.Set(float64(desired))
	dir, err := directory(ctx, r.topo)
	if err != nil {
		return o, "", err
	}
	o.Record, rawRecord, err = r.readRecord(ctx)
	if err != nil {
		return o, rawRecord, fmt.Errorf("cluster record: %w", err)
	}

	o.Local = r.observeLocal(dir)
	o.Local.Generation = r.markers.generation(o.Local.MemberID, o.Local.ClusterID)
	running := o.Local.Running

	// Ordinals that matter: the desired ones and every member's.
	ordinals := map[int]bool{}
	for i := 0; i < desired; i++ {
		ordinals[i] = true
	}
	for _, m := range o.Local.Members {
		if m.Ordinal != plan.NoOrdinal {
			ordinals[m.Ordinal] = true
		}
	}
	delete(ordinals, r.self.Ordinal)
	var peers []topology.Replica
	for _, rep := range dir {
		if ordinals[rep.Ordinal] {
			peers = append(peers, rep)
		}
	}
	for ord := range ordinals {
		gone, err := r.topo.Gone(ctx, ord)
		if err != nil {
			return o, rawRecord, err
		}
		o.Gone[ord] = gone
	}

	below := running && plan.DesiredBelowQuorum(o.Local.Members, desired)
	o.Local.BelowQuorumFor = r.belowQuorum(below, o.Now)
	// The cluster view and the peers' agents are only needed when this
	// member is not serving under a leader, or leads a member list that a
	// rebuild may be due for.
	if running && o.Local.Leader != 0 && !(below && o.Local.Leader == o.Local.MemberID) {
		return o, rawRecord, nil
	}
	// A replica confirmed gone cannot answer: asking it would only cost
	// the timeout, on every pass, while a rebuild waits.
	var alive []topology.Replica
	for _, p := range peers {
		if !o.Gone[p.Ordinal] {
			alive = append(alive, p)
		}
	}
	o.Peers = r.observePeers(ctx, peers, o.Gone)
	o.Cluster = r.observeCluster(ctx, alive, dir)
	if o.Cluster.Reachable && o.Local.Data == plan.DataValid && !running && o.Local.Revision > 0 {
		o.Cluster.Unverifiable = r.unverifiable(ctx, alive, o.Local.Revision, o.Local.CompactRevision)
	}
	return o, rawRecord, nil
}

// observeLocal reads this replica's own state: from the running member,
// or from its data dir when etcd is down.
func (r *Replica) observeLocal(dir Directory) plan.Local {
	r.mu.Lock()
	e := r.etcd
	r.mu.Unlock()
	if e != nil {
		s := e.Server
		l := plan.Local{
			Data:         plan.DataValid,
			Running:      true,
			ClusterID:    uint64(s.Cluster().ID()),
			MemberID:     uint64(s.MemberID()),
			Leader:       uint64(s.Leader()),
			AppliedIndex: s.AppliedIndex(),
			Revision:     s.KV().Rev(),
		}
		for _, m := range s.Cluster().Members() {
			l.Members = append(l.Members, fromMembership(m, dir))
		}
		l.RebuiltFrom = r.markers.rebuiltFrom(l.MemberID)
		r.mu.Lock()
		r.downSince = time.Time{}
		l.AppliedStableFor = r.appliedStable(l.AppliedIndex)
		if l.Leader == 0 {
			if r.leaderlessSince.IsZero() {
				r.leaderlessSince = time.Now()
			}
			l.LeaderlessFor = time.Since(r.leaderlessSince)
		} else {
			r.leaderlessSince = time.Time{}
		}
		ready := l.Leader != 0 && votes(s)
		r.mu.Unlock()
		if ready {
			r.metrics.Ready.Set(1)
		} else {
			r.metrics.Ready.Set(0)
		}
		return l
	}
	info := InspectData(r.lg, r.cfg.DataDir)
	if info.State == plan.DataValid && r.markers.left(info.MemberID) {
		info.State = plan.DataLeft
	}
	r.mu.Lock()
	r.disk = info
	failures, lastErr := r.startFailures, r.startError
	if r.downSince.IsZero() {
		r.downSince = time.Now()
	}
	downFor := time.Since(r.downSince)
	r.mu.Unlock()
	return plan.Local{
		Data:            info.State,
		DataProblem:     info.Problem,
		ClusterID:       info.ClusterID,
		MemberID:        info.MemberID,
		AppliedIndex:    info.AppliedIndex,
		Revision:        info.Revision,
		CompactRevision: info.CompactRevision,
		StartFailures:   failures,
		StartError:      lastErr,
		DataLocked:      info.WALLocked,
		Storage:         r.observeStorage(info),
		DownFor:         downFor,
	}
}

func fromMembership(m *membership.Member, dir Directory) plan.Member {
	return cluster.MemberOf(cluster.InfoOf(m), dir)
}

// observePeers asks every peer's agent, in parallel.
func (r *Replica) observePeers(ctx context.Context, peers []topology.Replica, gone map[int]bool) []plan.Peer {
	out := make([]plan.Peer, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		if gone[p.Ordinal] {
			out[i] = plan.Peer{Ordinal: p.Ordinal}
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			out[i] = plan.Peer{Ordinal: p.Ordinal}
			st, err := r.agents.Fetch(cctx, p.AgentURL)
			if err != nil {
				return
			}
			out[i] = plan.Peer{
				Ordinal:      p.Ordinal,
				Reachable:    true,
				HasData:      st.Data != plan.DataEmpty.String(),
				ClusterID:    uint64(st.ClusterID),
				MemberID:     uint64(st.MemberID),
				AppliedIndex: st.AppliedIndex,
				Running:      st.EtcdRunning,
				// Reported by the peer, measured on its own clock.
				AppliedStableFor: time.Duration(st.AppliedStableMs) * time.Millisecond,
			}
		})
	}
	wg.Wait()
	return out
}

// observeCluster finds a member with quorum among the peers: the first
// linearizable member list that succeeds.
func (r *Replica) observeCluster(ctx context.Context, peers []topology.Replica, dir Directory) plan.Cluster {
	type result struct {
		resp *clientv3.MemberListResponse
	}
	results := make(chan result, len(peers))
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for _, p := range peers {
		go func() {
			c, err := r.pool.Get(p.ClientURL)
			if err != nil {
				results <- result{}
				return
			}
			resp, err := c.MemberList(cctx)
			if err != nil {
				results <- result{}
				return
			}
			results <- result{resp: resp}
		}()
	}
	var found plan.Cluster
	for range peers {
		res := <-results
		if res.resp == nil || found.Reachable {
			continue
		}
		found = clusterFrom(res.resp, dir)
		cancel() // the others may stop
	}
	return found
}

func clusterFrom(resp *clientv3.MemberListResponse, dir Directory) plan.Cluster {
	c := plan.Cluster{Reachable: true, ClusterID: resp.Header.GetClusterId()}
	for _, m := range resp.Members {
		c.Members = append(c.Members, plan.Member{
			ID:        m.GetID(),
			Name:      m.GetName(),
			PeerURL:   firstOf(m.GetPeerURLs()),
			Ordinal:   dir.Ordinal(m.GetPeerURLs()),
			IsLearner: m.GetIsLearner(),
			Started:   m.GetName() != "",
		})
	}
	return c
}

func firstOf(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return ss[0]
}

// unverifiable asks the peers what etcd's start-up corruption check will
// ask them: the hash of their data at revision rev, where the check hashes
// this data (plan.StartHashPoint), and plan.Unverifiable judges the
// answers against the data's own compaction.
func (r *Replica) unverifiable(ctx context.Context, peers []topology.Replica, rev, compacted int64) string {
	point := plan.HashPoint{Revision: rev, CompactRevision: compacted}
	// HashKV reads a peer's whole keyspace (seconds at 1 GiB): ask every
	// peer at once, and stop at the first that etcd's check can compare
	// with, since one is enough.
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred below) has ended the others
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan plan.PeerHash, len(peers))
	for _, p := range peers {
		wg.Go(func() {
			a := plan.PeerHash{Name: p.Name}
			defer func() { results <- a }()
			c, err := r.pool.Get(p.ClientURL)
			if err != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			h, err := c.HashKV(cctx, p.ClientURL, rev)
			cancel()
			switch {
			case err == nil:
				a.Answer, a.CompactRevision = plan.HashGiven, h.CompactRevision
			case errors.Is(err, rpctypes.ErrCompacted):
				a.Answer = plan.HashCompacted
			case errors.Is(err, rpctypes.ErrFutureRev):
				a.Answer = plan.HashFutureRev
			}
		})
	}
	answers := make([]plan.PeerHash, 0, len(peers))
	for range peers {
		a := <-results
		if plan.Comparable(point, a) {
			return ""
		}
		answers = append(answers, a)
	}
	return plan.Unverifiable(point, answers)
}
