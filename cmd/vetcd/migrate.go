package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/vetcd/vetcd/internal/etcdclient"
	"github.com/vetcd/vetcd/internal/migrate"
	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
)

func newMigrateCmd() *cobra.Command {
	var (
		cf      clusterFlags
		from    string
		force   bool
		quiet   time.Duration
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "migrate --from sqlite:///PATH/state.db | etcd://HOST:PORT [--dir DIR | --endpoints URLS --cacert F --cert F --key F] [--force]",
		Short: "Move a kine SQLite database (or a deployed etcd) into a running vetcd cluster",
		Long: `migrate copies the live keys of kine's SQLite database into a running vetcd cluster: the
newest row of every key, deleted keys and kine's own rows left out, keys with a TTL on etcd
leases with that TTL. It writes in batched txns, verifies the key count and a content hash
against the source, raises the revision above kine's (so Kubernetes resourceVersions never go
backwards) and marks the older revisions compacted. Only then is the source renamed to
PATH.migrated; it is never deleted. This is the same seeding a replica does when it founds a
cluster with migrateFrom.sqlite set.

The source is opened read-only. Stop kine (and the apiserver) first: a database that kine is
still writing to is refused. An interrupted migration resumes when run again; a finished one
is never repeated (a marker key in etcd, /vetcd/migration/sqlite, records it).

A target that already holds keys is refused. With --force, migrate first takes a vetcd
snapshot of the target into the source's directory (vetcd-before-migrate-<time>, restorable
with 'vetcd snapshot restore'), then deletes the target's keys and migrates. Data dirs are
never deleted.

Raising the revision costs one small txn per revision (etcd has no call to set it): a few
thousand per second, so a kine revision in the millions takes minutes against a running
cluster. A replica that founds the cluster from migrateFrom.sqlite pays nothing for it.

Needs the source file and a reachable cluster.` + etcdMigrationHelp,
		Example: `  vetcd migrate --from sqlite:///var/lib/rancher/k3s/server/db/state.db --dir /tmp/c1
  vetcd migrate --from sqlite:///data/state.db --endpoints https://10.0.0.1:2379 --cacert ca.crt --cert c.crt --key c.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envDefault(cmd); err != nil {
				return err
			}
			if from == "" {
				return usagef("--from: required (sqlite:///path/state.db or etcd://host:port)")
			}
			u, err := url.Parse(from)
			if err != nil {
				return usagef("--from %q: %w", from, err)
			}
			t, err := cf.resolve(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			switch u.Scheme {
			case "sqlite":
				if u.Host != "" || !filepath.IsAbs(u.Path) {
					return usagef("--from %q: write sqlite:///absolute/path/state.db (three slashes)", from)
				}
				return runSQLiteMigration(ctx, cmd.OutOrStdout(), u.Path, t, force, quiet)
			case "etcd":
				local := cf.dir
				if cf.endpoints != "" {
					local = ""
				}
				return runEtcdMigration(ctx, cmd.OutOrStdout(), u, t, local, force)
			}
			return usagef("--from %q: unknown scheme (use sqlite:///path/state.db or etcd://host:port)", from)
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "source: sqlite:///path/state.db (kine) or etcd://host:port (a deployed etcd)")
	f.BoolVar(&force, "force", false, "migrate into a cluster that holds keys: snapshot them next to the source first, then replace them")
	f.DurationVar(&quiet, "quiet", time.Second, "how long the source must stand still before it is read (kine still writing is refused)")
	f.DurationVar(&timeout, "timeout", 2*time.Hour, "give up after this long")
	return cmd
}

func runSQLiteMigration(ctx context.Context, out io.Writer, path string, t target, force bool, quiet time.Duration) error {
	cli, err := etcdclient.New(t.endpoints, t.tls, zap.NewNop())
	if err != nil {
		return err
	}
	defer cli.Close()
	start := time.Now()
	o := migrate.IntoOptions{
		Options: migrate.Options{Source: path, SourceOptions: migrate.SourceOptions{Quiet: max(quiet, -1)}},
		Force:   force,
		MoveAside: func(ctx context.Context) (string, error) {
			dir := filepath.Dir(path)
			name := "vetcd-before-migrate-" + time.Now().UTC().Format("20060102T150405Z")
			m, err := snapshot.Create(ctx, snapshot.Source{Endpoints: t.endpoints, TLS: t.tls}, storage.NewFile(dir), name, snapshot.CreateOptions{})
			if err != nil {
				return "", err
			}
			where := "file://" + filepath.Join(dir, name)
			fmt.Fprintf(out, "--force: saved the target's %d keys (revision %d) to %s; restore them with 'vetcd snapshot restore %s'\n",
				m.KeyCount, m.Revision, where, where)
			return where, nil
		},
	}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		var last time.Time
		o.Progress = func(keys, bytes int64) {
			if time.Since(last) > 200*time.Millisecond {
				last = time.Now()
				el := time.Since(start).Seconds()
				fmt.Fprintf(out, "\r\033[K  copying: %d keys, %s (%.0f keys/s, %s/s)", keys, humanBytes(bytes), float64(keys)/el, humanBytes(int64(float64(bytes)/el)))
			}
		}
		o.OnBump = func(rev, goal int64) {
			fmt.Fprintf(out, "\r\033[K  raising the revision: %d of %d", rev, goal)
		}
		defer fmt.Fprint(out, "\r\033[K")
	}
	res, err := migrate.Into(ctx, cli, o)
	if o.Progress != nil {
		fmt.Fprint(out, "\r\033[K")
	}
	for _, bad := range []error{migrate.ErrSourceMissing, migrate.ErrNotSQLite, migrate.ErrCorrupt, migrate.ErrNotKine,
		migrate.ErrSourceBusy, migrate.ErrTargetNotEmpty, migrate.ErrAlreadyMigrated} {
		if errors.Is(err, bad) {
			return usageError{fmt.Errorf("%w (nothing was changed)", err)}
		}
	}
	if err != nil {
		return err
	}
	resumed := ""
	if res.Resumed {
		resumed = ", resumed an interrupted run"
	}
	el := time.Since(start)
	fmt.Fprintf(out, "migrated %s: %d keys, %s, sha256 %s verified; kine revision %d, etcd revision now %d (older revisions compacted)%s, in %s (%.0f keys/s); source renamed to %s\n",
		path, res.Keys, humanBytes(res.Bytes), res.SHA256[:12], res.SourceRevision, res.Revision, resumed,
		el.Round(time.Millisecond), float64(res.Keys)/el.Seconds(), res.Renamed)
	return nil
}
