package replica

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// serveHTTP serves /metrics, /healthz and /readyz.
//
// /healthz is for liveness: it answers ok while the replica process works,
// even when its member has no quorum or is rebuilding, so that a probe
// never kills a member that is needed to recover. /readyz is for
// readiness: ok only while the member serves as a voter under a leader.
func (r *Replica) serveHTTP(ln net.Listener) *httpServer {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.Gatherer(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := r.readiness(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if r.cfg.MetricsURL != "" && len(r.cfg.MetricsURL) > 5 && r.cfg.MetricsURL[:5] == "https" {
		srv.TLSConfig = r.serverTLS.Clone()
		srv.TLSConfig.ClientAuth = 0 // probes carry no client certificate
		return r.startHTTP(srv, func() error { return srv.ServeTLS(ln, "", "") })
	}
	return r.startHTTP(srv, func() error { return srv.Serve(ln) })
}

// httpServer is the metrics endpoint's server together with the goroutine
// serving it, which the replica owns: Shutdown stops the server, waits for
// that goroutine and returns what it ended with, so an endpoint that died
// early is reported, not dropped.
type httpServer struct {
	srv  *http.Server
	done chan error
}

// startHTTP runs serve in a goroutine that Shutdown awaits. An error
// other than the server being shut down is logged when it happens, since
// probes and scrapes fail from then on.
func (r *Replica) startHTTP(srv *http.Server, serve func() error) *httpServer {
	s := &httpServer{srv: srv, done: make(chan error, 1)}
	go func() {
		err := serve()
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if err != nil {
			r.lg.Error("metrics endpoint stopped serving", zap.Error(err))
			err = fmt.Errorf("metrics endpoint: serve: %w", err)
		}
		s.done <- err
	}()
	return s
}

// Shutdown stops the server and waits for its goroutine.
func (s *httpServer) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; err == nil {
		err = serr
	}
	return err
}

// readiness says why the member does not serve, or nil.
func (r *Replica) readiness() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.etcd
	switch {
	case e == nil:
		return fmt.Errorf("etcd is not running (%s: %s)", r.last.Mode, r.last.Reason)
	case e.Server.Leader() == 0:
		return errors.New("member has no leader")
	case !votes(e.Server):
		return errors.New("member is a learner or was removed")
	}
	return nil
}
