package replica

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/metrics"
)

// brokenListener fails its first Accept, as a listener whose socket was
// lost does; Close reports that http.Server.Serve has returned (Serve
// closes its listener on the way out).
type brokenListener struct {
	net.Listener
	err       error
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *brokenListener) Accept() (net.Conn, error) { return nil, l.err }

func (l *brokenListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// TestMetricsEndpointServeErrorIsReported: the metrics endpoint's serving
// goroutine is owned by the replica; when it ends with an error before
// shutdown, Shutdown returns that error instead of dropping it.
func TestMetricsEndpointServeErrorIsReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	errLost := errors.New("listener lost")
	bl := &brokenListener{Listener: ln, err: errLost, closed: make(chan struct{})}
	r := &Replica{lg: zaptest.NewLogger(t), metrics: metrics.New()}
	srv := r.serveHTTP(bl)
	select {
	case <-bl.closed: // Serve has returned with errLost
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its listener failed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, errLost) {
		t.Fatalf("Shutdown = %v, want the serve error %q", err, errLost)
	}
}
