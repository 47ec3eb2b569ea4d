// Package status reads a cluster's members and their state the way an
// operator wants to see it: one row per member, plus whether the cluster
// matches its desired replica count.
package status

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/agent"
	"github.com/vetcd/vetcd/internal/etcdclient"
	"github.com/vetcd/vetcd/internal/plan"
)

// Role is a member's part in the cluster, as its status shows it. The
// JSON form is the plain word, so the status output does not change.
type Role string

// The roles a member can have.
const (
	RoleLeader   Role = "leader"
	RoleFollower Role = "follower"
	RoleLearner  Role = "learner"
)

// Row is one member.
type Row struct {
	Name      string   `json:"name"`
	ID        string   `json:"id"`
	Role      Role     `json:"role"`
	Healthy   bool     `json:"healthy"`
	Error     string   `json:"error,omitempty"`
	ClientURL string   `json:"clientURL,omitempty"`
	RaftIndex uint64   `json:"raftIndex"`
	Applied   uint64   `json:"raftAppliedIndex"`
	DBSize    int64    `json:"dbSize"`
	Alarms    []string `json:"alarms,omitempty"`
	Version   string   `json:"version,omitempty"`
}

// Cluster is the whole picture.
type Cluster struct {
	ClusterID string `json:"clusterID"`
	Desired   int    `json:"desired,omitempty"`
	Members   []Row  `json:"members"`
	// Linearizable is false when no member could confirm the member list
	// with quorum, and the list is one member's own (possibly stale) view.
	Linearizable bool `json:"linearizable"`
	// Controller is the leader's controller: last action, members under
	// watch. Only known when the agents can be reached (--dir).
	Controller *agent.ControllerState `json:"controller,omitempty"`
	// Record is the cluster record (generation, how it was made, the claim
	// in flight). Only known where the record can be read (--dir).
	Record *plan.Record `json:"record,omitempty"`
}

// ControllerFrom asks the replicas' agents for the leader's controller
// state; nil when none answers as leader. The agents are asked at once and
// the first leader's answer wins, so one slow or stopped replica costs
// nothing while another answers.
func ControllerFrom(ctx context.Context, agentURLs []string, tlsConfig *tls.Config) *agent.ControllerState {
	cli := agent.NewClient(tlsConfig)
	defer cli.CloseIdle()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	answers := make(chan *agent.ControllerState, len(agentURLs))
	for _, u := range agentURLs {
		go func() {
			st, err := cli.Fetch(ctx, u)
			if err != nil {
				answers <- nil
				return
			}
			answers <- st.Controller
		}()
	}
	for range agentURLs {
		if c := <-answers; c != nil {
			return c // cancel ends the other fetches
		}
	}
	return nil
}

// Settled reports whether the cluster has exactly n members, all healthy
// voters under one leader, and says what is missing otherwise.
func (c Cluster) Settled(n int) (bool, string) {
	if !c.Linearizable {
		return false, "no member answers with quorum"
	}
	if len(c.Members) != n {
		return false, fmt.Sprintf("%d members, want %d", len(c.Members), n)
	}
	leaders := 0
	for _, m := range c.Members {
		switch {
		case !m.Healthy:
			return false, fmt.Sprintf("member %s is not healthy: %s", m.Name, m.Error)
		case m.Role == RoleLearner:
			return false, fmt.Sprintf("member %s is still a learner", m.Name)
		case m.Role == RoleLeader:
			leaders++
		}
	}
	if leaders != 1 {
		return false, fmt.Sprintf("%d leaders", leaders)
	}
	return true, ""
}

// Get reads the cluster through endpoints.
func Get(ctx context.Context, endpoints []string, tlsConfig *tls.Config) (Cluster, error) {
	var c Cluster
	pool := etcdclient.NewPool(tlsConfig, zap.NewNop())
	defer pool.Close()

	// Ask every endpoint; the first linearizable answer wins, otherwise the
	// first serializable one.
	var resp *clientv3.MemberListResponse
	var errs []error
	for _, lin := range []bool{true, false} {
		for _, ep := range endpoints {
			cli, err := pool.Get(ep)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var opts []clientv3.OpOption
			if !lin {
				opts = append(opts, clientv3.WithSerializable())
			}
			r, err := cli.MemberList(cctx, opts...)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ep, err))
				continue
			}
			resp, c.Linearizable = r, lin
			break
		}
		if resp != nil {
			break
		}
	}
	if resp == nil {
		return c, fmt.Errorf("no endpoint answered: %w", errors.Join(errs...))
	}
	c.ClusterID = fmt.Sprintf("%x", resp.Header.GetClusterId())

	alarms := map[uint64][]string{}
	for _, ep := range endpoints {
		cli, _ := pool.Get(ep)
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ar, err := cli.AlarmList(cctx)
		cancel()
		if err == nil {
			for _, a := range ar.Alarms {
				alarms[a.MemberID] = append(alarms[a.MemberID], a.Alarm.String())
			}
			break
		}
	}

	c.Members = make([]Row, len(resp.Members))
	var wg sync.WaitGroup
	for i, m := range resp.Members {
		row := Row{Name: m.GetName(), ID: fmt.Sprintf("%x", m.GetID()), Role: RoleFollower, Alarms: alarms[m.GetID()]}
		if m.GetIsLearner() {
			row.Role = RoleLearner
		}
		if row.Name == "" {
			row.Name = "(unstarted)"
		}
		if len(m.GetClientURLs()) == 0 {
			row.Error = "not started"
			c.Members[i] = row
			continue
		}
		row.ClientURL = m.GetClientURLs()[0]
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := pool.MemberStatus(cctx, row.ClientURL, m.GetID())
			if err != nil {
				row.Error = shortError(err)
				c.Members[i] = row
				return
			}
			fill(&row, st, m.GetID())
			c.Members[i] = row
		})
	}
	wg.Wait()
	slices.SortFunc(c.Members, func(a, b Row) int { return cmp.Compare(a.Name, b.Name) })
	return c, nil
}

// shortError says in a few words why a member did not answer.
func shortError(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "DeadlineExceeded"):
		return "no answer (timeout)"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case errors.Is(err, etcdclient.ErrOtherMember):
		return "its replica answers as a new member"
	}
	if len(msg) > 60 {
		msg = msg[:57] + "..."
	}
	return msg
}

func fill(row *Row, st *pb.StatusResponse, id uint64) {
	row.Healthy = len(st.GetErrors()) == 0
	if !row.Healthy {
		row.Error = strings.Join(st.GetErrors(), "; ")
	}
	row.RaftIndex = st.GetRaftIndex()
	row.Applied = st.GetRaftAppliedIndex()
	row.DBSize = st.GetDbSize()
	row.Version = st.GetVersion()
	if st.GetLeader() == id && !st.GetIsLearner() {
		row.Role = RoleLeader
	}
	if st.GetLeader() == 0 {
		row.Healthy = false
		row.Error = "no leader"
	}
}

// Wait polls until the cluster settles at n members or ctx ends; the error
// then says what was still missing.
func Wait(ctx context.Context, endpoints func() []string, tlsConfig *tls.Config, n int) (Cluster, error) {
	return WaitDesired(ctx, endpoints, tlsConfig, func() int { return n })
}

// WaitDesired is Wait for a desired count read again on every poll, for a
// wait that a `vetcd scale` may change while it lasts.
func WaitDesired(ctx context.Context, endpoints func() []string, tlsConfig *tls.Config, desired func() int) (Cluster, error) {
	var last string
	for {
		n := desired()
		c, err := Get(ctx, endpoints(), tlsConfig)
		if err == nil {
			ok, why := c.Settled(n)
			if ok {
				return c, nil
			}
			last = why
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return c, fmt.Errorf("cluster did not settle at %d voters: %s", n, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
