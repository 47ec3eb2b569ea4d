package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vetcd/vetcd/internal/local"
	"github.com/vetcd/vetcd/internal/status"
	"github.com/vetcd/vetcd/internal/topology"
)

func newScaleCmd() *cobra.Command {
	var (
		dir     string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "scale N [--dir DIR] [--wait]",
		Short: "Change the desired replica count of a local cluster, like kubectl scale",
		Long: `scale sets the desired replica count of the local cluster in DIR. The running 'vetcd up'
starts new replicas, which join as learners and are promoted, or sends SIGTERM to every
surplus replica at once, which then leave the cluster. A scale-down that breaks quorum
(3 to 1) is finished by a rebuild from the most up-to-date survivor.

--wait returns once the member list matches: N members, all healthy voters. Without a
running 'vetcd up' the count is recorded and the next 'vetcd up' starts N replicas.`,
		Example: `  vetcd scale 5 --wait
  vetcd scale 1 --dir /tmp/c1 --wait --timeout 2m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := envDefault(cmd); err != nil {
				return err
			}
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 || n > local.MaxReplicas {
				return usagef("replica count %q: must be a whole number from 1 to %d", args[0], local.MaxReplicas)
			}
			// Every check comes before the write: the running supervisor acts
			// on the new count at once, so a scale that fails afterwards
			// would still have scaled.
			if wait && timeout <= 0 {
				return usagef("--timeout %s: must be positive with --wait", timeout)
			}
			l, err := localLayout(dir)
			if err != nil {
				return err
			}
			var tlsConfig *tls.Config
			if wait {
				if tlsConfig, err = localClientTLS(l); err != nil {
					return fmt.Errorf("--wait: client certificate of %s: %w", l.Dir, err)
				}
			}
			var from int
			err = topology.UpdateFile(l.TopologyPath(), func(f *topology.File) error {
				from = f.Desired
				f.Desired = n
				return nil
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "desired replicas: %d -> %d\n", from, n)
			if !local.Running(l.Dir) {
				fmt.Fprintf(out, "no vetcd up is running on %s; the next vetcd up starts %d replicas\n", l.Dir, n)
				return nil
			}
			if !wait {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			eps := func() []string {
				e, _ := l.ClientEndpoints()
				return e
			}
			c, err := status.Wait(ctx, eps, tlsConfig, n)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "cluster %s has %d healthy voters\n", c.ClusterID, n)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultDir, "cluster directory of the local cluster")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the member list matches: N healthy voters")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits")
	return cmd
}
