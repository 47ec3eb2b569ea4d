// Package etcdclient keeps one etcd client per endpoint, so that observing
// every member each second reuses connections instead of paying a TLS
// handshake per call.
package etcdclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
)

// reconnect bounds gRPC's reconnect back-off. gRPC's default (1 s, growing
// to 2 min) made the controller see a replica that came back seconds after
// it died as unreachable for another 1-2.5 s: the pooled connection was
// still waiting out its back-off, which delayed every promotion after a
// restart. Reconnecting to a dead peer every second at most costs a refused
// TCP connect.
func reconnect() grpc.ConnectParams {
	return grpc.ConnectParams{
		Backoff: backoff.Config{
			BaseDelay:  100 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   time.Second,
		},
		MinConnectTimeout: 2 * time.Second,
	}
}

// Pool holds single-endpoint clients. It is safe for concurrent use.
type Pool struct {
	tls *tls.Config
	lg  *zap.Logger

	mu      sync.Mutex
	clients map[string]*clientv3.Client
}

// NewPool returns a pool whose clients present the given TLS config.
func NewPool(tlsConfig *tls.Config, lg *zap.Logger) *Pool {
	return &Pool{tls: tlsConfig, lg: lg, clients: map[string]*clientv3.Client{}}
}

// Get returns the client for endpoint, creating it on first use. Creating
// does not dial: a dead endpoint fails on the first call instead.
func (p *Pool) Get(endpoint string) (*clientv3.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[endpoint]; ok {
		return c, nil
	}
	c, err := New([]string{endpoint}, p.tls, p.lg)
	if err != nil {
		return nil, err
	}
	p.clients[endpoint] = c
	return c, nil
}

// Status asks one endpoint for its status over the pooled connection.
//
// A connection that failed keeps failing fast with its last error until
// gRPC reconnects, so a member that has just come back would be seen only
// at the next poll. On a failure, Status therefore restarts the reconnect
// at once and, if the connection comes up within reconnectWait, asks again.
// A dead member costs a refused connect and at most reconnectWait.
func (p *Pool) Status(ctx context.Context, endpoint string) (*pb.StatusResponse, error) {
	c, err := p.Get(endpoint)
	if err != nil {
		return nil, err
	}
	conn := c.ActiveConnection()
	resp, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		conn.ResetConnectBackoff()
		if !waitReady(ctx, conn, reconnectWait) {
			return nil, fmt.Errorf("status of %s: %w", endpoint, err)
		}
		if resp, err = pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{}); err != nil {
			return nil, fmt.Errorf("status of %s: %w", endpoint, err)
		}
	}
	return resp, nil
}

// ErrOtherMember means an endpoint answered as another member than the one
// asked about: the replica behind the URL has rejoined under a new member
// ID, and the member asked about is gone.
var ErrOtherMember = errors.New("answered as another member")

// MemberStatus is Status for member id. A replica that rejoins keeps its
// client URL and gets a new member ID, so between reading the member list
// and asking the URL, the old member (dead) and the new one (a learner) can
// be confused: an answer from another member is an error, not the health
// of the member asked about.
func (p *Pool) MemberStatus(ctx context.Context, endpoint string, id uint64) (*pb.StatusResponse, error) {
	st, err := p.Status(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	if got := st.GetHeader().GetMemberId(); got != id {
		return nil, fmt.Errorf("status of %s: %w %x, not %x", endpoint, ErrOtherMember, got, id)
	}
	return st, nil
}

// reconnectWait bounds how long Status waits for a failed connection to
// come back before it reports the failure.
const reconnectWait = 250 * time.Millisecond

// waitReady waits up to d for conn to become ready.
func waitReady(ctx context.Context, conn *grpc.ClientConn, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return true
		}
		if !conn.WaitForStateChange(ctx, s) {
			return false
		}
	}
}

// Close closes every client.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ep, c := range p.clients {
		_ = c.Close()
		delete(p.clients, ep)
	}
}

// New returns a client for the endpoints with vetcd's defaults: short dial
// timeout, keepalives, and etcd's client logs kept out of the way.
func New(endpoints []string, tlsConfig *tls.Config, lg *zap.Logger) (*clientv3.Client, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tlsConfig,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               lg.WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
		DialOptions:          []grpc.DialOption{grpc.WithConnectParams(reconnect())},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return c, nil
}
