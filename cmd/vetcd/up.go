package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/local"
)

const defaultDir = ".vetcd"

func newUpCmd() *cobra.Command {
	var (
		opts    local.Options
		cfgPath string
		logLvl  string
	)
	cmd := &cobra.Command{
		Use:   "up [--replicas N] [--dir DIR] [--config FILE]",
		Short: "Run a local N-replica cluster on this machine, in the foreground",
		Long: `up runs a local vetcd cluster: one 'vetcd serve' process per replica, supervised the way a
StatefulSet controller would (a replica that exits is restarted; on a scale-down every
surplus replica gets SIGTERM at once). It generates a CA and certificates into DIR/pki,
prints the client endpoints, and prints a line when the cluster is ready. Ctrl-C stops
every replica; a second 'vetcd up' on the same DIR resumes the same cluster with its data.

Layout: DIR/vetcd-N/data is replica N's etcd data dir, DIR/vetcd-N/pid its process id,
DIR/vetcd-N/serve.log its log. Replica N listens on BASE+10N (client), +1 (peer),
+2 (agent), +3 (http metrics and probes).

--config takes the same schema as 'serve' (extraArgs, snapshotCount, thresholds, ...);
up fills in each replica's identity, ports, dirs and TLS.`,
		Example: `  vetcd up
  vetcd up --replicas 1 --dir /tmp/c1 --base-port 12379
  vetcd up --config vetcd.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envDefault(cmd); err != nil {
				return err
			}
			if cmd.Flags().Changed("replicas") && opts.Replicas < 1 {
				return usagef("--replicas %d: must be at least 1", opts.Replicas)
			}
			base := config.Default()
			if cfgPath != "" {
				b, err := os.ReadFile(cfgPath)
				if err != nil {
					return usagef("--config: %w", err)
				}
				if base, err = config.Parse(b); err != nil {
					return usagef("--config %s: %w", cfgPath, err)
				}
				if !base.IsEnabled() {
					return usagef("--config %s: enabled is false: embedded etcd is turned off", cfgPath)
				}
			}
			if cmd.Flags().Changed("log-level") || cfgPath == "" {
				base.Log.Level = logLvl
			}
			opts.Base = base
			lg, err := newLogger(logLvl, true)
			if err != nil {
				return usageError{err}
			}
			opts.Logger = lg
			opts.Out = cmd.OutOrStdout()
			if opts.Binary, err = os.Executable(); err != nil {
				return fmt.Errorf("find the vetcd binary: %w", err)
			}
			sup, err := local.Prepare(opts)
			var locked *local.LockedError
			if errors.As(err, &locked) {
				return usageError{lockedHint(locked)}
			}
			if err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return sup.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Replicas, "replicas", 0, "desired replica count (default 3 for a new DIR; a resumed DIR keeps its count)")
	f.StringVar(&opts.Dir, "dir", defaultDir, "cluster directory (data, certificates, logs)")
	f.StringVar(&cfgPath, "config", "", "config file applied to every replica (same schema as serve)")
	f.IntVar(&opts.BasePort, "base-port", 0, "first port; replica N uses BASE+10N..BASE+10N+3 (default 2379 for a new DIR)")
	f.StringVar(&logLvl, "log-level", config.Default().Log.Level, "log level of the supervisor and the replicas: debug, info, warn, error")
	return cmd
}

// lockedHint adds to a refused `vetcd up` what to do instead: DIR is
// already served, so the user wants the running supervisor changed or
// stopped, not a second one.
func lockedHint(e *local.LockedError) error {
	if e.Holder != "vetcd up" {
		return fmt.Errorf("%w; wait for it to finish, then run vetcd up again", e)
	}
	return fmt.Errorf("%w; use `vetcd scale N --dir %s` to change its replica count, or stop it (Ctrl-C) before starting another", e, e.Dir)
}
