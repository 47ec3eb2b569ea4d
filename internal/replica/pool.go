package replica

import (
	"context"

	"github.com/vetcd/vetcd/internal/cluster"
	"github.com/vetcd/vetcd/internal/etcdclient"
)

// controllerPool adapts the client pool to the controller's interfaces.
type controllerPool struct{ *etcdclient.Pool }

var _ cluster.Pool = controllerPool{}

func (p controllerPool) Status(ctx context.Context, endpoint string, id uint64) (cluster.Status, error) {
	return p.MemberStatus(ctx, endpoint, id)
}

func (p controllerPool) API(endpoint string) (cluster.API, error) {
	return p.Pool.API(endpoint)
}
