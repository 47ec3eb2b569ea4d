// Command vetcd runs etcd embedded in control-plane replicas: a local
// cluster (`vetcd up`), one replica (`vetcd serve`), and the tools to see,
// scale and reach it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes: bad arguments or input differ from failures, so scripts can
// tell "you asked wrong" from "it did not work".
const (
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error in the caller's input.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the CLI and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "vetcd: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "vetcd",
		Short: "etcd embedded in control-plane replicas, managing its own cluster",
		Long: `vetcd runs an etcd member inside each control-plane replica. The replicas build,
scale and rebuild their etcd cluster by themselves: new replicas join as learners
and are promoted, surplus replicas leave, and a scale-down that breaks quorum
rebuilds the cluster from the most up-to-date survivor without losing data.

Start a local 3-replica cluster with TLS:   vetcd up
Point etcdctl at it:                        eval "$(vetcd env)"
See its members:                            vetcd status
Change the replica count:                   vetcd scale 5 --wait`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newUpCmd(), newServeCmd(), newScaleCmd(), newStatusCmd(), newEnvCmd(), newSnapshotCmd(), newMigrateCmd(), newVersionCmd())
	return root
}

// envDefault lets every flag also come from VETCD_<FLAG> (dashes become
// underscores), like etcdctl's ETCDCTL_*; an explicit flag wins.
func envDefault(cmd *cobra.Command) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		key := "VETCD_" + envName(f.Name)
		if v, ok := os.LookupEnv(key); ok {
			if err := cmd.Flags().Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", key, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	return nil
}

func envName(flag string) string {
	b := []byte(flag)
	for i, c := range b {
		switch {
		case c == '-':
			b[i] = '_'
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
