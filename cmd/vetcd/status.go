package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vetcd/vetcd/internal/agent"
	"github.com/vetcd/vetcd/internal/local"
	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/status"
	"github.com/vetcd/vetcd/internal/topology"
)

// localLayout opens an existing local cluster dir.
func localLayout(dir string) (local.Layout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return local.Layout{}, usagef("--dir %s: %w", dir, err)
	}
	l := local.Layout{Dir: abs}
	if _, ok, err := l.ReadSettings(); err != nil {
		return l, usageError{err}
	} else if !ok {
		return l, usagef("--dir %s: not a vetcd cluster dir (start one with 'vetcd up --dir %s')", dir, dir)
	}
	return l, nil
}

func localClientTLS(l local.Layout) (*tls.Config, error) {
	f := l.PKI()
	return pki.ClientConfig(f.CA, f.ClientCert, f.ClientKey)
}

// printer writes a cluster status in one format.
type printer interface {
	Print(w io.Writer, c status.Cluster) error
}

func newPrinter(format string) (printer, error) {
	switch format {
	case "table", "":
		return tablePrinter{}, nil
	case "json":
		return jsonPrinter{}, nil
	}
	return nil, usagef("-o %q: unknown output format (use table or json)", format)
}

type jsonPrinter struct{}

func (jsonPrinter) Print(w io.Writer, c status.Cluster) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}

type tablePrinter struct{}

func (tablePrinter) Print(w io.Writer, c status.Cluster) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tROLE\tHEALTH\tRAFT INDEX\tAPPLIED\tDB SIZE\tALARMS\tVERSION")
	for _, r := range statusRows(c) {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	desired := "unknown"
	if c.Desired > 0 {
		desired = fmt.Sprint(c.Desired)
	}
	note := ""
	if !c.Linearizable {
		note = " (no quorum: member list from one member's own view)"
	}
	if _, err := fmt.Fprintf(w, "cluster %s: %d members, desired %s%s\n", c.ClusterID, len(c.Members), desired, note); err != nil {
		return err
	}
	if rec := c.Record; rec != nil {
		if rec.Made != nil {
			fmt.Fprintf(w, "generation %d: %s", rec.Generation, rec.Made.How)
			if rec.Made.By != "" {
				fmt.Fprintf(w, " by %s", rec.Made.By)
			}
			if !rec.Made.At.IsZero() {
				fmt.Fprintf(w, " at %s", rec.Made.At.Format(time.RFC3339))
			}
			fmt.Fprintln(w)
		}
		if rec.MaxRevision > 0 {
			fmt.Fprintf(w, "highest revision recorded: %d at %s\n", rec.MaxRevision, rec.MaxRevisionAt.Format(time.RFC3339))
		}
		if cl := rec.Claim; cl != nil {
			fmt.Fprintf(w, "claim in flight: %s by replica %d since %s\n", cl.Kind, cl.Holder, cl.At.Format(time.RFC3339))
		}
	}
	if ctl := c.Controller; ctl != nil {
		if ctl.LastAction != "" {
			fmt.Fprintf(w, "last action: %s at %s (%s)\n", ctl.LastAction, ctl.LastAt.Format(time.RFC3339), ctl.LastReason)
		}
		if sn := ctl.Snapshot; sn != nil {
			if sn.Last != "" {
				fmt.Fprintf(w, "last snapshot: %s at %s (%s)\n", sn.Last, sn.LastAt.Format(time.RFC3339), humanBytes(sn.LastSize))
			}
			if sn.Failures > 0 {
				fmt.Fprintf(w, "snapshot failures: %d (last: %s)\n", sn.Failures, sn.LastError)
			}
		}
		for _, wt := range ctl.Watching {
			fmt.Fprintf(w, "watching: %s: %s", wt.Member, wt.Reason)
			if wt.For != "" {
				fmt.Fprintf(w, " for %s", wt.For)
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}

// statusRows renders the rows; shared by formats that print text.
func statusRows(c status.Cluster) [][]string {
	var rows [][]string
	for _, m := range c.Members {
		health := "healthy"
		if !m.Healthy {
			health = "unhealthy: " + m.Error
		}
		alarms := strings.Join(m.Alarms, ",")
		if alarms == "" {
			alarms = "-"
		}
		rows = append(rows, []string{m.Name, m.ID, string(m.Role), health, fmt.Sprint(m.RaftIndex), fmt.Sprint(m.Applied),
			humanBytes(m.DBSize), alarms, m.Version})
	}
	return rows
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// clusterFlags says which cluster a command talks to: a local one by
// --dir, or any etcd cluster by --endpoints with mTLS files.
type clusterFlags struct {
	dir, endpoints, cacert, cert, key string
}

func (f *clusterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", defaultDir, "cluster directory of a local cluster")
	fl.StringVar(&f.endpoints, "endpoints", "", "comma-separated client URLs of any etcd cluster (instead of --dir)")
	fl.StringVar(&f.cacert, "cacert", "", "CA certificate (with --endpoints)")
	fl.StringVar(&f.cert, "cert", "", "client certificate (with --endpoints)")
	fl.StringVar(&f.key, "key", "", "client key (with --endpoints)")
}

// target is a resolved clusterFlags.
type target struct {
	endpoints, agents []string
	tls               *tls.Config
	desired           int
	record            *plan.Record
}

func (f *clusterFlags) resolve(cmd *cobra.Command) (target, error) {
	var t target
	if f.endpoints != "" {
		if cmd.Flags().Changed("dir") {
			return t, usagef("--dir and --endpoints: use one")
		}
		if f.cacert == "" || f.cert == "" || f.key == "" {
			return t, usagef("--endpoints needs --cacert, --cert and --key (vetcd clusters use mTLS)")
		}
		t.endpoints = strings.Split(f.endpoints, ",")
		cfg, err := pki.ClientConfig(f.cacert, f.cert, f.key)
		if err != nil {
			return t, usageError{err}
		}
		t.tls = cfg
		return t, nil
	}
	l, err := localLayout(f.dir)
	if err != nil {
		return t, err
	}
	tf, err := topology.ReadFile(l.TopologyPath())
	if err != nil {
		return t, err
	}
	t.desired = tf.Desired
	if rec, _, err := plan.ParseRecord(tf.ClusterRecord); err == nil && !rec.Empty() {
		t.record = &rec
	}
	for _, r := range tf.Replicas {
		t.endpoints = append(t.endpoints, r.ClientURL)
		t.agents = append(t.agents, r.AgentURL)
	}
	if t.tls, err = localClientTLS(l); err != nil {
		return t, err
	}
	return t, nil
}

func newStatusCmd() *cobra.Command {
	var (
		cf      clusterFlags
		output  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status [--dir DIR | --endpoints URLS --cacert F --cert F --key F] [-o table|json]",
		Short: "Show every member: role, health, raft index, db size, alarms, version",
		Long: `status prints one row per member of the cluster (name, member ID, role, health, raft index,
applied index, db size, alarms, version) and the desired replica count, then the leader's
last automatic action and the members its health monitor is watching.

With --dir it reads a local cluster (endpoints and certificates from DIR). With
--endpoints it reads any etcd cluster over mTLS. Needs a reachable member; without
quorum it shows one member's own view and says so.`,
		Example: `  vetcd status
  vetcd status -o json
  vetcd status --endpoints https://10.0.0.1:2379 --cacert ca.crt --cert client.crt --key client.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envDefault(cmd); err != nil {
				return err
			}
			p, err := newPrinter(output)
			if err != nil {
				return err
			}
			t, err := cf.resolve(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			// The members and the leader's controller are asked at once.
			ctrl := make(chan *agent.ControllerState, 1)
			go func() { ctrl <- status.ControllerFrom(ctx, t.agents, t.tls) }()
			c, err := status.Get(ctx, t.endpoints, t.tls)
			c.Controller = <-ctrl
			if err != nil {
				return err
			}
			c.Desired = t.desired
			c.Record = t.record
			return p.Print(cmd.OutOrStdout(), c)
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for answers")
	return cmd
}
