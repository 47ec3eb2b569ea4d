package replica

import (
	"context"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// drainTimeout bounds how long a stopping member waits for its running
// client RPCs. A Status or serializable Range takes microseconds; one that
// waits on raft (a write, a linearizable read) while the server stops ends
// only when etcd gives up on it, and then touches no data.
const drainTimeout = 2 * time.Second

// rpcDrain keeps a member's backend open until the client RPCs running in
// it have returned. etcd closes its bolt backend when the server stops
// (EtcdServer.Stop, HardStop, or a stop of its own), while its gRPC
// servers may still be serving: watchData stops the server with the client
// servers up, and embed's Close stops them with grpc.Server.Stop, which
// does not wait for running handlers. A Maintenance.Status handler that
// reads the storage version from the closed backend then dereferences a nil
// bolt transaction and the whole process dies (etcd v3.7.3,
// schema.UnsafeReadStorageVersion). Peers and the agent poll Status all the
// time, so a member that stops while serving hits it.
//
// The drain counts unary RPCs; when the server starts stopping it refuses
// new RPCs with codes.Unavailable (clients retry another endpoint) and
// waits for the running ones, inside etcd's own stop sequence, before the
// backend is closed. Streams (Watch, LeaseKeepAlive, Snapshot) are refused
// once it is closed but not waited for: watch and keepalive streams last as
// long as their clients want, and a running snapshot holds a bolt read
// transaction, which bolt's Close already waits for.
type rpcDrain struct {
	mu      sync.Mutex // orders running.Add against closing and Wait
	closed  bool
	running sync.WaitGroup
}

// errDraining is what an RPC that arrives at a stopping member gets.
var errDraining = status.Error(codes.Unavailable, "vetcd: member is stopping")

// attachDrain makes member e's stop wait for the RPCs counted by d, so
// that every way a member stops (watchData, closeUnready, releaseUnready,
// stopEtcd, reapStoppedEtcd, a stop of etcd's own) drains it without a
// call of its own: etcd waits for the goroutines started through GoAttach
// after it stops taking work and before it closes its backend.
func (r *Replica) attachDrain(e *embed.Etcd, d *rpcDrain) {
	e.Server.GoAttach(func() {
		<-e.Server.StoppingNotify()
		if !d.closeAndWait(drainTimeout) {
			r.lg.Warn("client RPCs still running when the member's backend closes",
				zap.Duration("waited", drainTimeout))
		}
	})
}

// serverOptions are the gRPC server options that put d in front of every
// client RPC.
func (d *rpcDrain) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(d.unary), grpc.ChainStreamInterceptor(d.stream)}
}

func (d *rpcDrain) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, errDraining
	}
	d.running.Add(1)
	d.mu.Unlock()
	defer d.running.Done()
	return handler(ctx, req)
}

func (d *rpcDrain) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return errDraining
	}
	return handler(srv, ss)
}

// closeAndWait refuses new RPCs and waits up to timeout for the running
// ones. It reports whether they all returned.
func (d *rpcDrain) closeAndWait(timeout time.Duration) bool {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		d.running.Wait()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
