// Package vetcd runs an etcd member inside the calling process, the way a
// Kubernetes control-plane binary wants it: the replicas of a control plane
// each embed one member, and together they build, scale and rebuild their
// etcd cluster without a person or an operator.
//
// A control-plane binary calls Start with a Config and waits on Ready:
//
//	r, err := vetcd.Start(ctx, cfg)
//	if err != nil { ... }
//	<-r.Ready()
//	// talk to r.ClientURL()
//	defer r.Shutdown(ctx)
//
// `vetcd serve` is exactly this, driven by a config file.
package vetcd

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/replica"
	"github.com/vetcd/vetcd/internal/topology"
)

// Config is a replica's configuration; see internal/config for the keys.
type Config = config.Config

// DefaultConfig returns a Config with every default set. The identity,
// URLs, data dir, TLS files and topology must still be filled in.
func DefaultConfig() Config { return config.Default() }

// LoadConfig reads and validates a YAML config file.
func LoadConfig(path string) (Config, error) { return config.Load(path) }

// ErrDisabled is returned by Start when the config says enabled: false.
var ErrDisabled = errors.New("vetcd: embedded etcd is disabled (enabled: false)")

// Option changes how Start runs a replica.
type Option func(*replica.Options)

// WithLogger sends the replica's and embedded etcd's logs to lg.
func WithLogger(lg *zap.Logger) Option {
	return func(o *replica.Options) { o.Logger = lg }
}

// Replica is a running replica. Its methods are safe for concurrent use.
type Replica struct {
	r *replica.Replica
}

// Start validates cfg, fetches its TLS files from Kubernetes when the config
// says so, binds the replica's endpoints and starts its loop in
// the background: the member restarts, joins, bootstraps or rebuilds as
// the cluster requires. It returns once the endpoints listen; Ready says
// when the member serves. ctx bounds only the start itself.
func Start(ctx context.Context, cfg Config, opts ...Option) (*Replica, error) {
	if !cfg.IsEnabled() {
		return nil, ErrDisabled
	}
	var o replica.Options
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// With topology.kubernetes.tlsSecret the member's certificate comes
	// from (or is first generated into) a Secret, before anything reads it.
	if err := topology.PrepareTLS(ctx, cfg, o.Logger); err != nil {
		return nil, err
	}
	r, err := replica.New(cfg, o)
	if err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return &Replica{r: r}, nil
}

// Ready is closed once the member has served as a voter for the first time.
func (r *Replica) Ready() <-chan struct{} { return r.r.Ready() }

// ClientURL is the member's advertised client URL.
func (r *Replica) ClientURL() string { return r.r.ClientURL() }

// Shutdown stops the replica and waits. A replica that is no longer desired
// (its ordinal is at or above the desired count) first leaves the cluster
// cleanly; a desired one keeps its membership. It returns ctx's error if
// time runs out.
func (r *Replica) Shutdown(ctx context.Context) error { return r.r.Shutdown(ctx) }

// Close stops the replica at once, keeping its membership.
func (r *Replica) Close() error { return r.r.Close() }
