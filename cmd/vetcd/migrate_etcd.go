package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/migrate"
	"github.com/vetcd/vetcd/internal/replica"
)

// etcdMigrationHelp is the etcd:// part of `vetcd migrate --help`.
const etcdMigrationHelp = `
From a deployed etcd (etcd://HOST:PORT): a migration that keeps every key's revisions
restores the source's snapshot into a new cluster's first replica. Set
migrateFromDeployedEtcd: true and migrateFrom.endpoints (and migrateFrom.tls) in the
config of a new cluster ('vetcd serve --config', or 'vetcd up --config' locally): the
founding replica checks the source's version (3.5 below 3.5.26 is refused), streams its
snapshot, restores it without a revision bump before reporting ready, and the other
replicas join as learners. It then follows the source with a watch from the snapshot
revision, copying each source revision as one txn, so the revisions line up and no
write made during the copy is lost.

Cut-over ends the following: the first write the new cluster takes of its own (point
the clients at vetcd), or this command. 'vetcd migrate --from etcd://HOST:PORT' against
such a cluster catches up to the source's current revision and then cuts over: stop
writes to the source first (stop its clients or point them at vetcd), then run it.
Nothing is copied after the cut-over; a cluster cut over never follows again (the
marker key /vetcd/migration/etcd records it). TLS towards the source:
etcd://HOST:PORT?cacert=F&cert=F&key=F (https; each optional). Needs the source and a
reachable cluster, e.g.:

  vetcd up --config migrate.yaml   # migrateFromDeployedEtcd: true, migrateFrom.endpoints: [http://10.0.0.5:2379]
  vetcd migrate --from etcd://10.0.0.5:2379 --dir .vetcd`

// runEtcdMigration cuts over a cluster founded from a deployed etcd: it
// copies the source's revisions the cluster does not hold yet and marks
// the migration done. local is the cluster dir for --dir (""
// with --endpoints).
func runEtcdMigration(ctx context.Context, out io.Writer, from *url.URL, t target, local string, force bool) error {
	if force {
		return usagef("--force: not used with etcd:// (a deployed etcd is restored into a new cluster, never over existing keys)")
	}
	src, err := etcdSourceFromURL(from)
	if err != nil {
		return err
	}
	lg := zap.NewNop()
	scli, err := src.Dial(lg)
	if err != nil {
		return usageError{err}
	}
	defer scli.Close()
	st, err := migrate.CheckSource(ctx, scli, version.Version)
	if errors.Is(err, migrate.ErrSourceVersion) || errors.Is(err, migrate.ErrSourceUnreachable) {
		return usageError{fmt.Errorf("%w (nothing was changed)", err)}
	}
	if err != nil {
		return err
	}
	tcli, err := migrate.DialTarget(t.endpoints, t.tls, lg)
	if err != nil {
		return err
	}
	defer tcli.Close()

	m, ok, err := migrate.ReadEtcdMarker(ctx, tcli)
	if err != nil {
		return err
	}
	from0 := m.Revision
	switch {
	case ok && m.State == migrate.StateDone:
		return usagef("this cluster was cut over already at source revision %d (%s); nothing was changed", m.Revision, m.Reason)
	case !ok && local != "":
		// Founded from the source, but no source revision copied yet.
		l, err := localLayout(local)
		if err != nil {
			return err
		}
		rev, founded, err := replica.FollowSnapshotRevision(l.ReplicaDir(0))
		if err != nil {
			return err
		}
		if !founded {
			return usagef("%s was not founded from a deployed etcd (nothing was changed); %s", local, foundHint)
		}
		from0 = rev
	case !ok:
		return usagef("the cluster holds no migration marker %s: it was not founded from a deployed etcd, or has copied no source revision yet (nothing was changed); %s",
			migrate.EtcdMarkerKey, foundHint)
	}

	goal := st[0].Revision
	if r, err := scli.Get(ctx, "vetcd-migrate-probe", clientv3.WithCountOnly()); err == nil {
		goal = r.Header.Revision
	}
	fmt.Fprintf(out, "source %s (etcd %s) at revision %d; vetcd holds source revision %d\n", src, st[0].Version, goal, from0)
	if from0 < goal {
		if err := catchUp(ctx, scli, tcli, m, from0, goal); err != nil {
			return err
		}
	}
	done, err := migrate.CutOver(ctx, tcli, goal, "vetcd migrate at "+time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "cut over at source revision %d: vetcd no longer follows %s; point every client at vetcd and stop the deployed etcd\n", done.Revision, src)
	return nil
}

const foundHint = "found a new cluster with migrateFromDeployedEtcd: true and migrateFrom.endpoints in its config (see 'vetcd migrate --help')"

// catchUp follows the source until the target holds source revision goal.
// A replica's follower may copy at the same time: each revision lands once.
func catchUp(ctx context.Context, scli, tcli *clientv3.Client, m migrate.EtcdMarker, from, goal int64) error {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := migrate.Follow(fctx, migrate.FollowOptions{Source: scli, Target: tcli, SourceName: m.Source,
			SnapshotRevision: m.SnapshotRevision, From: from})
		errc <- err
	}()
	for {
		cur, ok, err := migrate.ReadEtcdMarker(ctx, tcli)
		if err == nil && ok && cur.Revision >= goal {
			cancel()
			<-errc
			return nil
		}
		select {
		case err := <-errc:
			if errors.Is(err, migrate.ErrCutOver) {
				return usageError{fmt.Errorf("%w; nothing more was copied", err)}
			}
			return fmt.Errorf("catching up: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("catching up to source revision %d: %w", goal, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// etcdSourceFromURL reads etcd://HOST:PORT[?cacert=F&cert=F&key=F].
func etcdSourceFromURL(u *url.URL) (migrate.EtcdSource, error) {
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.Fragment != "" {
		return migrate.EtcdSource{}, usagef("--from %q: write etcd://host:port (TLS: etcd://host:port?cacert=F&cert=F&key=F)", u.Redacted())
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "cacert", "cert", "key":
		default:
			return migrate.EtcdSource{}, usagef("--from: unknown parameter %q (use cacert, cert, key)", k)
		}
	}
	scheme := "http://"
	if len(q) > 0 {
		scheme = "https://"
	}
	tlsConfig, err := migrate.SourceTLS(q.Get("cacert"), q.Get("cert"), q.Get("key"))
	if err != nil {
		return migrate.EtcdSource{}, usageError{err}
	}
	var eps []string
	for _, h := range strings.Split(u.Host, ",") {
		eps = append(eps, scheme+h)
	}
	return migrate.EtcdSource{Endpoints: eps, TLS: tlsConfig}, nil
}
