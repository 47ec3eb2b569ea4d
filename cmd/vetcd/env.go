package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newEnvCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "env [--dir DIR]",
		Short: "Print ETCDCTL_* exports for the local cluster",
		Long: `env prints shell exports that point etcdctl at the local cluster in DIR: its client
endpoints and the admin client certificate. Works offline, on DIR's files.`,
		Example: `  eval "$(vetcd env)"
  etcdctl member list -w table`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envDefault(cmd); err != nil {
				return err
			}
			l, err := localLayout(dir)
			if err != nil {
				return err
			}
			eps, err := l.ClientEndpoints()
			if err != nil {
				return err
			}
			f := l.PKI()
			fmt.Fprintf(cmd.OutOrStdout(), "export ETCDCTL_API=3 ETCDCTL_ENDPOINTS=%s ETCDCTL_CACERT=%s ETCDCTL_CERT=%s ETCDCTL_KEY=%s\n",
				shellQuote(strings.Join(eps, ",")), shellQuote(f.CA), shellQuote(f.ClientCert), shellQuote(f.ClientKey))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultDir, "cluster directory of the local cluster")
	return cmd
}

// shellQuote quotes s for POSIX shells when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/.,:_-=+@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
