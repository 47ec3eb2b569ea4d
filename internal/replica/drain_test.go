package replica

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vetcd/vetcd/internal/pki"
)

// TestStopUnderStatusPolling stops a serving member the ways the replica
// does while clients poll Maintenance.Status and Range without pause: its
// data dir deleted (watchData stops the server with the client servers up,
// the loop's reapStoppedEtcd closes it later) and the replica's stopEtcd
// (embed's Close). A handler that reads the backend after etcd closed it
// panics on a nil bolt transaction, which kills the test binary.
func TestStopUnderStatusPolling(t *testing.T) {
	tr := newTestReplica(t, t.TempDir(), nil)
	r, err := New(tr.cfg, Options{Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := pki.ClientConfig(tr.tls.CA, tr.tls.ClientCert, tr.tls.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	const iterations = 6
	for i := range iterations {
		deleteData := i%2 == 0
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		e, err := r.startEtcd(ctx, startSpec{waitReady: true})
		if err != nil {
			cancel()
			t.Fatalf("iteration %d: %v", i, err)
		}
		r.setEtcd(e)
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tr.cfg.ClientURL}, TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		pollCtx, stopPolling := context.WithCancel(ctx)
		var served atomic.Int64
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for pollCtx.Err() == nil {
					var err error
					if g%4 == 3 {
						_, err = cli.Get(pollCtx, "k", clientv3.WithSerializable())
					} else {
						_, err = cli.Status(pollCtx, tr.cfg.ClientURL)
					}
					if err == nil {
						served.Add(1)
					}
				}
			})
		}
		waitServed := func(n int64) {
			deadline := time.Now().Add(10 * time.Second)
			for served.Load() < n {
				if time.Now().After(deadline) {
					t.Fatalf("iteration %d: only %d RPCs served in 10s", i, served.Load())
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		waitServed(50)
		if deleteData {
			if err := os.RemoveAll(tr.cfg.DataDir); err != nil {
				t.Fatal(err)
			}
			select {
			case <-e.Server.StopNotify():
			case <-time.After(30 * time.Second):
				t.Fatalf("iteration %d: member still running 30s after its data dir was deleted", i)
			}
			// The client servers are still up; the polling goes on
			// against the stopped server until the loop reaps it.
			time.Sleep(300 * time.Millisecond)
			r.reapStoppedEtcd()
		} else {
			r.stopEtcd()
		}
		stopPolling()
		wg.Wait()
		cli.Close()
		cancel()
		t.Logf("iteration %d (data deleted: %v): %d RPCs served", i, deleteData, served.Load())
	}
}

// TestRPCDrain: once closed, the drain refuses new RPCs with etcd's
// "server stopped" (Unavailable: clients retry on another member), cancels
// the running ones, and waits for them within its deadline: one that waits
// on its context (as etcd's raft waits do) returns at once, one that does
// not (a backend read) is waited for.
func TestRPCDrain(t *testing.T) {
	d := newRPCDrain()
	info := &grpc.UnaryServerInfo{}
	readEntered, release := make(chan struct{}), make(chan struct{})
	var readReturned atomic.Bool
	go func() {
		_, _ = d.unary(t.Context(), nil, info, func(context.Context, any) (any, error) {
			close(readEntered)
			<-release
			readReturned.Store(true)
			return "read", nil
		})
	}()
	waitEntered, waitResult := make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := d.unary(t.Context(), nil, info, func(ctx context.Context, _ any) (any, error) {
			close(waitEntered)
			<-ctx.Done()
			return nil, ctx.Err()
		})
		waitResult <- err
	}()
	<-readEntered
	<-waitEntered
	if d.closeAndWait(50 * time.Millisecond) {
		t.Fatal("closeAndWait reported drained while a backend read was running")
	}
	select {
	case err := <-waitResult:
		if !errors.Is(err, rpctypes.ErrGRPCStopped) {
			t.Fatalf("an RPC waiting on its context ended with %v, want %v", err, rpctypes.ErrGRPCStopped)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an RPC waiting on its context still runs 10s after the drain closed")
	}
	called := false
	_, err := d.unary(t.Context(), nil, info, func(context.Context, any) (any, error) {
		called = true
		return nil, nil
	})
	if called || status.Code(err) != codes.Unavailable {
		t.Fatalf("unary after close: handler called %v, error %v; want not called, Unavailable", called, err)
	}
	err = d.stream(nil, nil, &grpc.StreamServerInfo{}, func(any, grpc.ServerStream) error {
		called = true
		return nil
	})
	if called || status.Code(err) != codes.Unavailable {
		t.Fatalf("stream after close: handler called %v, error %v; want not called, Unavailable", called, err)
	}
	close(release)
	if !d.closeAndWait(10 * time.Second) {
		t.Fatal("closeAndWait did not see the running backend read return within 10s")
	}
	if !readReturned.Load() {
		t.Fatal("closeAndWait returned before the running backend read did")
	}
}
