package replica

import (
	"context"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// drainTimeout bounds how long a stopping member waits for its running
// client RPCs. Their contexts are canceled when it starts waiting, so one
// that waits on raft (a write, a linearizable read) returns at once; one
// that reads the backend (Status, a serializable Range) takes microseconds.
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
// new RPCs with etcd's "server stopped" (codes.Unavailable: clients retry
// another endpoint), cancels the running ones and waits for them, inside
// etcd's own stop sequence, before the backend is closed. The cancel matters: etcd ends an RPC that
// waits on raft only when its context ends or the server is done, and the
// server is done only after the wait. Streams (Watch, LeaseKeepAlive,
// Snapshot) are refused once it is closed but not waited for: watch and
// keepalive streams last as long as their clients want, and a running
// snapshot holds a bolt read transaction, which bolt's Close waits for.
type rpcDrain struct {
	mu sync.Mutex // orders running.Add against closing and Wait
	// stopping is done once the drain is closed.
	stopping context.Context
	stop     context.CancelFunc
	running  sync.WaitGroup
}

func newRPCDrain() *rpcDrain {
	d := &rpcDrain{}
	d.stopping, d.stop = context.WithCancel(context.Background())
	return d
}

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
	if d.stopping.Err() != nil {
		d.mu.Unlock()
		return nil, rpctypes.ErrGRPCStopped
	}
	d.running.Add(1)
	d.mu.Unlock()
	defer d.running.Done()
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.stopping, cancel)()
	resp, err := handler(hctx, req)
	if err != nil && d.stopping.Err() != nil && ctx.Err() == nil {
		// Canceled by the drain: answer what etcd answers an RPC that
		// the stopped server ends, so that clients treat it the same.
		return nil, rpctypes.ErrGRPCStopped
	}
	return resp, err
}

func (d *rpcDrain) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if d.stopping.Err() != nil {
		return rpctypes.ErrGRPCStopped
	}
	return handler(srv, ss)
}

// closeAndWait refuses new RPCs, cancels the running ones and waits up to
// timeout for them to return. It reports whether they all did.
func (d *rpcDrain) closeAndWait(timeout time.Duration) bool {
	d.mu.Lock()
	d.stop()
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
