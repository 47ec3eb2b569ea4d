package replica

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveHTTP serves /metrics, /healthz and /readyz.
//
// /healthz is for liveness: it answers ok while the replica process works,
// even when its member has no quorum or is rebuilding, so that a probe
// never kills a member that is needed to recover. /readyz is for
// readiness: ok only while the member serves as a voter under a leader.
func (r *Replica) serveHTTP(ln net.Listener) *http.Server {
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
		go func() { _ = srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = srv.Serve(ln) }()
	}
	return srv
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
