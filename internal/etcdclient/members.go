package etcdclient

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// API is the cluster calls the leader's controller makes, sent to one
// endpoint, with plain errors.
type API struct {
	p        *Pool
	endpoint string
}

// API returns the cluster calls sent to endpoint.
func (p *Pool) API(endpoint string) (API, error) {
	if _, err := p.Get(endpoint); err != nil {
		return API{}, err
	}
	return API{p: p, endpoint: endpoint}, nil
}

func (a API) client() (*clientv3.Client, error) { return a.p.Get(a.endpoint) }

// MemberPromote promotes a learner.
func (a API) MemberPromote(ctx context.Context, id uint64) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	_, err = c.MemberPromote(ctx, id)
	return err
}

// MemberRemove removes a member.
func (a API) MemberRemove(ctx context.Context, id uint64) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	_, err = c.MemberRemove(ctx, id)
	return err
}

// MoveLeader hands leadership to id; the endpoint must be the leader.
func (a API) MoveLeader(ctx context.Context, id uint64) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	_, err = c.MoveLeader(ctx, id)
	return err
}

// Compact compacts the keyspace to rev and waits until the compaction is
// applied, so that a following defragmentation gives the space back.
func (a API) Compact(ctx context.Context, rev int64) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	_, err = c.Compact(ctx, rev, clientv3.WithCompactPhysical())
	return err
}

// AlarmList lists the raised alarms, as etcd gives them: the client stays
// a leaf package, and its caller maps them to its own terms.
func (a API) AlarmList(ctx context.Context) ([]*pb.AlarmMember, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	resp, err := c.AlarmList(ctx)
	if err != nil {
		return nil, err
	}
	return resp.Alarms, nil
}

// AlarmDisarm disarms one alarm of one member.
func (a API) AlarmDisarm(ctx context.Context, memberID uint64, alarm string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	typ, ok := pb.AlarmType_value[alarm]
	if !ok {
		return fmt.Errorf("unknown alarm %q", alarm)
	}
	_, err = c.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: memberID, Alarm: pb.AlarmType(typ)})
	return err
}

// Defragment defragments the member at endpoint, over the pooled
// connection.
func (p *Pool) Defragment(ctx context.Context, endpoint string) error {
	c, err := p.Get(endpoint)
	if err != nil {
		return err
	}
	if _, err := pb.NewMaintenanceClient(c.ActiveConnection()).Defragment(ctx, &pb.DefragmentRequest{}); err != nil {
		return fmt.Errorf("defragment %s: %w", endpoint, err)
	}
	return nil
}

// HashKV asks member id at endpoint for the hash of its keyspace at rev
// (etcd's HashKV), over the pooled connection. An answer from another
// member is an error, as in MemberStatus. etcd's refusals come back as
// rpctypes' client-side errors (ErrCompacted, ErrFutureRev), so callers
// can tell them apart with errors.Is.
func (p *Pool) HashKV(ctx context.Context, endpoint string, id uint64, rev int64) (*pb.HashKVResponse, error) {
	c, err := p.Get(endpoint)
	if err != nil {
		return nil, err
	}
	resp, err := pb.NewMaintenanceClient(c.ActiveConnection()).HashKV(ctx, &pb.HashKVRequest{Revision: rev})
	if err != nil {
		return nil, fmt.Errorf("hash of %s at revision %d: %w", endpoint, rev, rpctypes.Error(err))
	}
	if got := resp.GetHeader().GetMemberId(); got != id {
		return nil, fmt.Errorf("hash of %s: %w %x, not %x", endpoint, ErrOtherMember, got, id)
	}
	return resp, nil
}
