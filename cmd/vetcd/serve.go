package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/vetcd/vetcd"
	"github.com/vetcd/vetcd/internal/config"
)

func newServeCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run one replica (the entrypoint of a control-plane pod)",
		Long: `serve runs one vetcd replica: an embedded etcd member with client and peer mTLS,
its agent endpoint, and /metrics, /healthz and /readyz.

At start the replica chooses its mode by itself: restart on its data, join an existing
cluster as a learner, rejoin with fresh data (after removal or corruption; the old data
is moved aside), bootstrap (ordinal 0 only, only when no cluster was ever founded), or
rebuild after a scale-down that broke quorum. Transient refusals are retried inside the
process; it does not exit to be restarted.

On SIGTERM a replica whose ordinal is at or above the desired count leaves the cluster
cleanly (hands off leadership, waits for ordinal 0 to catch up, removes itself when
quorum allows). A replica that is still desired just stops.

With topology.source kubernetes the replica is a pod of a StatefulSet: its name and
ordinal come from POD_NAME (or topology.kubernetes.podName), its URLs are derived from
<pod>.<headless service>.<namespace>.svc, the desired count is the StatefulSet's
spec.replicas, and a surplus replica is gone once its pod object is deleted. With
topology.kubernetes.tlsSecret set, the certificate is read from that Secret, which the
first replica to start generates. See docs/kubernetes.md.

Needs: the peers named by the topology; works on its own data dir.`,
		Example: `  vetcd serve --config /etc/vetcd/config.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envDefault(cmd); err != nil {
				return err
			}
			if path == "" {
				return usagef("--config: required")
			}
			cfg, err := config.Load(path)
			if err != nil {
				return usageError{err}
			}
			return serve(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "replica config file (YAML)")
	return cmd
}

func serve(ctx context.Context, cfg config.Config) error {
	lg, err := newLogger(cfg.Log.Level, false)
	if err != nil {
		return usageError{err}
	}
	defer lg.Sync() //nolint:errcheck // nothing to do about a failed flush at exit
	if ctx == nil {
		ctx = context.Background()
	}
	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	r, err := vetcd.Start(sigCtx, cfg, vetcd.WithLogger(lg))
	if errors.Is(err, vetcd.ErrDisabled) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	<-sigCtx.Done()
	lg.Info("signal received; shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.LeaveTimeout+10*time.Second)
	defer cancel()
	if err := r.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newLogger builds the zap logger vetcd and etcd log through: JSON for
// replicas (machines read pod logs), console for humans at a terminal.
func newLogger(level string, console bool) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log.level %q: %w", level, err)
	}
	zc := zap.NewProductionConfig()
	if console {
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
		zc.DisableStacktrace = true
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return zc.Build()
}
