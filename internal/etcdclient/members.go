package etcdclient

import "context"

// MemberAPI adapts a client's membership calls to plain errors.
type MemberAPI struct {
	p        *Pool
	endpoint string
}

// Members returns the membership calls sent to endpoint.
func (p *Pool) Members(endpoint string) (MemberAPI, error) {
	if _, err := p.Get(endpoint); err != nil {
		return MemberAPI{}, err
	}
	return MemberAPI{p: p, endpoint: endpoint}, nil
}

// MemberPromote promotes a learner.
func (m MemberAPI) MemberPromote(ctx context.Context, id uint64) error {
	c, err := m.p.Get(m.endpoint)
	if err != nil {
		return err
	}
	_, err = c.MemberPromote(ctx, id)
	return err
}

// MemberRemove removes a member.
func (m MemberAPI) MemberRemove(ctx context.Context, id uint64) error {
	c, err := m.p.Get(m.endpoint)
	if err != nil {
		return err
	}
	_, err = c.MemberRemove(ctx, id)
	return err
}

// MoveLeader hands leadership to id; endpoint must be the leader.
func (m MemberAPI) MoveLeader(ctx context.Context, id uint64) error {
	c, err := m.p.Get(m.endpoint)
	if err != nil {
		return err
	}
	_, err = c.MoveLeader(ctx, id)
	return err
}
