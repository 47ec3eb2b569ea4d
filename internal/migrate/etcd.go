package migrate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// EtcdMarkerKey is the key that records a migration from a deployed etcd
// in the target cluster. While vetcd follows the source its state is
// StateFollowing and it is written in the same txn as every copied source
// revision (so it costs no revision of its own, and its mod revision is
// the last source revision copied); at cut-over it becomes StateDone, and a
// cluster whose marker is done never follows a source again.
const EtcdMarkerKey = MarkerPrefix + "etcd"

// StateFollowing is the EtcdMarker state while vetcd copies the source's
// new revisions.
const StateFollowing = "following"

// EtcdMarker is the JSON value of EtcdMarkerKey.
type EtcdMarker struct {
	State string `json:"state"`
	// Source names the source endpoints (no credentials).
	Source string `json:"source"`
	// SnapshotRevision is the revision of the source snapshot the cluster
	// was restored from.
	SnapshotRevision int64 `json:"snapshotRevision"`
	// Revision is the last source revision copied.
	Revision int64 `json:"revision"`
	// Reason says why following stopped (state done).
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Errors a migration from a deployed etcd returns; callers classify them
// with errors.Is.
var (
	// ErrSourceVersion: the source etcd's version cannot be migrated from
	// safely.
	ErrSourceVersion = errors.New("migrate: source etcd version refused")
	// ErrSourceUnreachable: no source endpoint answered.
	ErrSourceUnreachable = errors.New("migrate: source etcd unreachable")
	// ErrDiverged: the target took writes of its own, so its revisions no
	// longer line up with the source's. Following stops there (cut-over).
	ErrDiverged = errors.New("migrate: target took writes of its own")
	// ErrSourceCompacted: the source compacted past the revision vetcd had
	// copied; the missing revisions cannot be copied any more.
	ErrSourceCompacted = errors.New("migrate: source compacted past the copied revision")
	// ErrCutOver: the migration was cut over (the marker is done); nothing
	// more is copied.
	ErrCutOver = errors.New("migrate: cut over")
	// ErrNotFollowing: the target was not restored from a deployed etcd
	// (no marker), so there is nothing to follow or cut over.
	ErrNotFollowing = errors.New("migrate: target is not following a deployed etcd")
)

// MinSource35 is the oldest etcd 3.5 release a deployed etcd may run to be
// migrated from. Older 3.5 releases carry membership-migration bugs (fixed
// in 3.5.20, 3.5.24 and 3.5.26) that an upgrade path through them can hit.
const MinSource35 = "3.5.26"

// version is a parsed major.minor.patch.
type semVersion struct{ major, minor, patch int }

func parseVersion(s string) (semVersion, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return semVersion{}, fmt.Errorf("version %q is not major.minor.patch", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return semVersion{}, fmt.Errorf("version %q is not major.minor.patch", s)
		}
		n[i] = v
	}
	return semVersion{n[0], n[1], n[2]}, nil
}

func (v semVersion) less(o semVersion) bool {
	if v.major != o.major {
		return v.major < o.major
	}
	if v.minor != o.minor {
		return v.minor < o.minor
	}
	return v.patch < o.patch
}

// CheckSourceVersion decides whether a deployed etcd of version source can
// be migrated into vetcd's etcd of version target. It refuses, with the
// reason and the fix:
//   - anything older than 3.5, which 3.7 cannot read;
//   - 3.5 below MinSource35 (membership-migration bugs);
//   - a source newer than the target (a downgrade).
//
// It is pure: the caller asks the source for its version.
func CheckSourceVersion(source, target string) error {
	sv, err := parseVersion(source)
	if err != nil {
		return fmt.Errorf("%w: source reports %w", ErrSourceVersion, err)
	}
	tv, err := parseVersion(target)
	if err != nil {
		return fmt.Errorf("%w: vetcd's etcd %w", ErrSourceVersion, err)
	}
	min35, _ := parseVersion(MinSource35)
	switch {
	case sv.major != 3 || sv.minor < 5:
		return fmt.Errorf("%w: source etcd %s is older than 3.5, which etcd %s cannot take over; upgrade the source to etcd %s or newer first",
			ErrSourceVersion, source, target, MinSource35)
	case sv.minor == 5 && sv.less(min35):
		return fmt.Errorf("%w: source etcd %s is older than %s and has etcd's membership-migration bugs (fixed in 3.5.20, 3.5.24 and 3.5.26); "+
			"upgrade the source to %s or newer, or use the snapshot route (`etcdctl snapshot save`, then `vetcd snapshot restore`, which rewrites membership)",
			ErrSourceVersion, source, MinSource35, MinSource35)
	case tv.less(semVersion{sv.major, sv.minor, 0}):
		return fmt.Errorf("%w: source etcd %s is newer than vetcd's etcd %s (a downgrade); use a vetcd built with etcd %d.%d or newer",
			ErrSourceVersion, source, target, sv.major, sv.minor)
	}
	return nil
}

// EtcdSource is a deployed etcd to migrate from: its client endpoints and,
// optionally, TLS (nil: plain http).
type EtcdSource struct {
	Endpoints []string
	TLS       *tls.Config
}

// String names the source for logs and markers.
func (s EtcdSource) String() string { return "etcd://" + strings.Join(s.Endpoints, ",") }

// SourceTLS builds the client TLS towards a deployed etcd from PEM files,
// each optional: caFile replaces the system roots, certFile and keyFile
// (together) present a client certificate. It returns nil when every name
// is empty (http:// sources, or https with the system roots and no client
// certificate is not told apart: then use an empty tls.Config).
func SourceTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("migrate: source CA: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("migrate: source CA %s: no PEM certificate", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("migrate: source client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Dial opens a client to the source. It does not contact it. An https://
// endpoint without TLS set uses the system roots.
func (s EtcdSource) Dial(lg *zap.Logger) (*clientv3.Client, error) {
	if len(s.Endpoints) == 0 {
		return nil, errors.New("migrate: source etcd: no endpoints")
	}
	tlsConfig := s.TLS
	if tlsConfig == nil && strings.HasPrefix(s.Endpoints[0], "https://") {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          s.Endpoints,
		TLS:                tlsConfig,
		DialTimeout:        5 * time.Second,
		Logger:             lg.Named("source-client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
		MaxCallRecvMsgSize: 64 << 20,
		DialOptions:        []grpc.DialOption{grpc.WithDisableServiceConfig()},
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: source etcd %s: %w", s, err)
	}
	return cli, nil
}

// SourceStatus is what the source reported before a migration.
type SourceStatus struct {
	Endpoint string
	Version  string
	Revision int64
	DBSize   int64
}

// CheckSource asks every source endpoint for its status and checks each
// version with CheckSourceVersion against target. Every endpoint must
// answer: a member that does not could be the one on an old version.
func CheckSource(ctx context.Context, cli *clientv3.Client, target string) ([]SourceStatus, error) {
	var out []SourceStatus
	for _, ep := range cli.Endpoints() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := cli.Status(cctx, ep)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrSourceUnreachable, ep, err)
		}
		if err := CheckSourceVersion(st.Version, target); err != nil {
			return nil, fmt.Errorf("%s: %w", ep, err)
		}
		out = append(out, SourceStatus{Endpoint: ep, Version: st.Version, Revision: st.Header.GetRevision(), DBSize: st.DbSize})
	}
	return out, nil
}

// SaveSnapshot streams the source's snapshot into path (0600, fsynced,
// written to a temporary name and renamed) and returns its revision, read
// from the saved db. The snapshot is consistent at that revision: writes
// made while it streams come later through Follow.
func SaveSnapshot(ctx context.Context, lg *zap.Logger, cli *clientv3.Client, path string) (int64, error) {
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: source snapshot: %w", err)
	}
	defer rc.Close()
	tmp := path + ".part"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("migrate: source snapshot: %w", err)
	}
	_, err = io.Copy(f, rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("migrate: source snapshot: %w", err)
	}
	st, err := etcdutl.NewV3(lg).Status(path)
	if err != nil {
		return 0, fmt.Errorf("migrate: source snapshot does not read: %w", err)
	}
	return st.Revision, nil
}

// RestoreTarget is the member a source snapshot is restored into.
type RestoreTarget struct {
	Name    string
	PeerURL string
	DataDir string
	// Token is the new cluster's initial cluster token.
	Token string
	// SkipHashCheck restores a db copied from a data dir rather than a
	// snapshot (which carries a hash).
	SkipHashCheck bool
}

// Restore restores the db at dbPath into a new one-member data dir, with
// no revision bump: every key keeps its create and mod revision, so that
// Follow can continue from the snapshot's revision. The membership is
// rewritten (the source's members are dropped). It restores into a
// sibling first and renames it into place, so a failure leaves no data
// dir; an existing, non-empty DataDir is refused before anything is
// written.
func Restore(lg *zap.Logger, dbPath string, t RestoreTarget) error {
	if entries, err := os.ReadDir(t.DataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("migrate: restore: data dir %s is not empty; nothing was changed", t.DataDir)
	}
	tmp := filepath.Clean(t.DataDir) + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("migrate: restore: %w", err)
	}
	err := etcdutl.NewV3(lg).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        dbPath,
		Name:                t.Name,
		OutputDataDir:       tmp,
		PeerURLs:            []string{t.PeerURL},
		InitialCluster:      t.Name + "=" + t.PeerURL,
		InitialClusterToken: t.Token,
		SkipHashCheck:       t.SkipHashCheck,
	})
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("migrate: restore into %s: %w", t.DataDir, err)
	}
	if err := os.Remove(t.DataDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(tmp)
		return fmt.Errorf("migrate: restore: %w", err)
	}
	if err := os.Rename(tmp, t.DataDir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("migrate: restore: %w", err)
	}
	return nil
}

// Limits of a cluster that follows a deployed etcd. Follow copies each
// source revision as one txn, and one source revision can touch thousands
// of keys (a lease expiry deletes every key on it at once: Kubernetes puts
// a minute of Events on one lease), far above etcd's default 128 ops and
// 1.5 MiB per request.
const (
	FollowMaxTxnOps       = 100_000
	FollowMaxRequestBytes = 32 << 20
)

// RaiseTargetLimits raises an etcd config's --max-txn-ops and
// --max-request-bytes to the Follow limits (never lowers them), so that
// every source revision fits one txn.
func RaiseTargetLimits(ec *embed.Config) {
	ec.MaxTxnOps = max(ec.MaxTxnOps, FollowMaxTxnOps)
	ec.MaxRequestBytes = max(ec.MaxRequestBytes, FollowMaxRequestBytes)
}

// DialTarget opens a client to the following cluster that can send a
// FollowMaxRequestBytes txn.
func DialTarget(endpoints []string, tlsConfig *tls.Config, lg *zap.Logger) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          endpoints,
		TLS:                tlsConfig,
		DialTimeout:        5 * time.Second,
		Logger:             lg.Named("target-client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
		MaxCallSendMsgSize: FollowMaxRequestBytes + 1<<20,
		MaxCallRecvMsgSize: 64 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: target client: %w", err)
	}
	return cli, nil
}

// FollowOptions configure Follow.
type FollowOptions struct {
	Source, Target *clientv3.Client
	// SourceName is recorded in the marker.
	SourceName string
	// SnapshotRevision is the revision the target was restored at.
	SnapshotRevision int64
	// From is the last source revision the target holds; Follow copies
	// From+1 onwards.
	From   int64
	Logger *zap.Logger
	// OnApplied, if set, is called after each copied revision.
	OnApplied func(rev int64)
	// LeaseInterval is how often the target's leases are kept alive while
	// the source still holds them; default 2s.
	LeaseInterval time.Duration
}

// Follow copies the source's revisions after From into the target, one
// txn per source revision, until ctx ends or the target diverges. Each txn
// holds exactly the events of one source revision plus the marker, so the
// target's revision after it equals the source's: keys keep their mod
// revisions. Leases the copied keys use are granted on the target with the
// source's ID and TTL, and kept alive there while the source holds them
// (a lease must never expire on the target before the source's deletes
// arrive).
//
// It returns the last copied revision with ctx.Err(), ErrDiverged (the
// target took a write of its own: vetcd's cut-over) or ErrSourceCompacted.
// Unreachable sources are retried until ctx ends.
func Follow(ctx context.Context, o FollowOptions) (int64, error) {
	lg := o.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	if o.LeaseInterval <= 0 {
		o.LeaseInterval = 2 * time.Second
	}
	f := &follower{o: o, lg: lg, last: o.From, leases: map[int64]bool{}}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	leasesDone := make(chan struct{})
	go func() {
		defer close(leasesDone)
		f.keepLeases(lctx)
	}()
	defer func() { cancel(); <-leasesDone }()
	return f.run(ctx)
}

type follower struct {
	o    FollowOptions
	lg   *zap.Logger
	last int64
	// markerRev is the marker's mod revision as last seen: every copy txn
	// requires it unchanged, so a cut-over (or another follower's copy)
	// is noticed before a revision is copied twice or after the end.
	markerRev int64
	leases    map[int64]bool // leases known to exist on the target
}

// syncMarker reads the marker: a done marker ends following; a marker
// that another follower advanced moves this one ahead. It returns the
// target's revision as of the read.
func (f *follower) syncMarker(ctx context.Context) (int64, error) {
	var resp *clientv3.GetResponse
	err := retry(ctx, func(ctx context.Context) error {
		var err error
		resp, err = f.o.Target.Get(ctx, EtcdMarkerKey)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("migrate: read marker: %w", err)
	}
	if len(resp.Kvs) == 0 {
		f.markerRev = 0
		return resp.Header.Revision, nil
	}
	var m EtcdMarker
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
		return 0, fmt.Errorf("migrate: marker %s: %w", EtcdMarkerKey, err)
	}
	if m.State == StateDone {
		return 0, fmt.Errorf("%w at source revision %d (%s)", ErrCutOver, m.Revision, m.Reason)
	}
	f.markerRev = resp.Kvs[0].ModRevision
	f.last = max(f.last, m.Revision)
	return resp.Header.Revision, nil
}

func (f *follower) run(ctx context.Context) (int64, error) {
	if _, err := f.syncMarker(ctx); err != nil {
		return f.last, err
	}
	wait := 200 * time.Millisecond
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := f.o.Source.Watch(wctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(f.last+1))
		err := f.drain(ctx, wch)
		cancel()
		if ctx.Err() != nil {
			return f.last, ctx.Err()
		}
		if errors.Is(err, ErrDiverged) || errors.Is(err, ErrSourceCompacted) || errors.Is(err, ErrCutOver) {
			return f.last, err
		}
		f.lg.Warn("following the source etcd: watch ended; retrying", zap.Error(err), zap.Int64("revision", f.last))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return f.last, ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// drain applies a watch's responses until it ends.
func (f *follower) drain(ctx context.Context, wch clientv3.WatchChan) error {
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w: source compacted to %d, target holds %d; migrate again", ErrSourceCompacted, resp.CompactRevision, f.last)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		evs := resp.Events
		for len(evs) > 0 {
			rev := evs[0].Kv.ModRevision
			n := 1
			for n < len(evs) && evs[n].Kv.ModRevision == rev {
				n++
			}
			if err := f.apply(ctx, rev, evs[:n]); err != nil {
				return err
			}
			evs = evs[n:]
		}
	}
	return errors.New("watch closed")
}

// apply copies one source revision as one txn.
func (f *follower) apply(ctx context.Context, rev int64, evs []*clientv3.Event) error {
	if rev <= f.last {
		return nil // a restarted watch may repeat the last revision
	}
	if rev != f.last+1 {
		return fmt.Errorf("source revision %d follows %d: a revision is missing", rev, f.last)
	}
	ops := make([]clientv3.Op, 0, len(evs)+1)
	for _, ev := range evs {
		switch ev.Type {
		case mvccpb.PUT:
			var opts []clientv3.OpOption
			if l := ev.Kv.Lease; l != 0 {
				ok, err := f.ensureLease(ctx, l)
				if err != nil {
					return err
				}
				if ok {
					opts = append(opts, clientv3.WithLease(clientv3.LeaseID(l)))
				}
			}
			ops = append(ops, clientv3.OpPut(string(ev.Kv.Key), string(ev.Kv.Value), opts...))
		case mvccpb.DELETE:
			ops = append(ops, clientv3.OpDelete(string(ev.Kv.Key)))
		}
	}
	m, _ := json.Marshal(EtcdMarker{State: StateFollowing, Source: f.o.SourceName, SnapshotRevision: f.o.SnapshotRevision, Revision: rev, At: time.Now().UTC()})
	ops = append(ops, clientv3.OpPut(EtcdMarkerKey, string(m)))
	// The target must still be exactly at the last copied revision: a
	// write of its own since then is the cut-over, seen here before a
	// source revision is copied to the wrong place. (Another follower's
	// copy moves the marker along with the revision.)
	at, err := f.syncMarker(ctx)
	if err != nil {
		return err
	}
	if rev <= f.last {
		return nil
	}
	if at != f.last {
		return fmt.Errorf("%w: the target is at revision %d, the last source revision copied is %d", ErrDiverged, at, f.last)
	}
	var resp *clientv3.TxnResponse
	err = retry(ctx, func(ctx context.Context) error {
		var err error
		resp, err = f.o.Target.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(EtcdMarkerKey), "=", f.markerRev)).Then(ops...).Commit()
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate: copy source revision %d: %w", rev, err)
	}
	if !resp.Succeeded {
		// Cut over, or copied by another follower: look again.
		return f.apply(ctx, rev, evs)
	}
	f.markerRev = rev
	if got := resp.Header.GetRevision(); got != rev {
		return fmt.Errorf("%w: source revision %d landed at target revision %d", ErrDiverged, rev, got)
	}
	f.last = rev
	if f.o.OnApplied != nil {
		f.o.OnApplied(rev)
	}
	return nil
}

// ensureLease makes sure lease id exists on the target. It reports false
// if the source no longer holds it either (its keys' deletes follow).
func (f *follower) ensureLease(ctx context.Context, id int64) (bool, error) {
	if f.leases[id] {
		return true, nil
	}
	ttl, err := f.o.Target.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return false, fmt.Errorf("migrate: lease %x on the target: %w", id, err)
	}
	if err == nil && ttl.TTL > 0 {
		f.leases[id] = true
		return true, nil
	}
	src, err := f.o.Source.TimeToLive(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && src.TTL <= 0) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("migrate: lease %x on the source: %w", id, err)
	}
	_, err = pb.NewLeaseClient(f.o.Target.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: src.GrantedTTL})
	if err != nil && !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseExist) {
		return false, fmt.Errorf("migrate: grant lease %x on the target: %w", id, err)
	}
	f.leases[id] = true
	return true, nil
}

// keepLeases keeps every target lease alive that the source still holds.
// Leases the source dropped are left to expire on the target: their keys'
// deletes arrive through the watch first.
func (f *follower) keepLeases(ctx context.Context) {
	t := time.NewTicker(f.o.LeaseInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, f.o.LeaseInterval)
		src, err := f.o.Source.Leases(cctx)
		if err != nil {
			cancel()
			continue
		}
		dst, err := f.o.Target.Leases(cctx)
		if err != nil {
			cancel()
			continue
		}
		held := map[clientv3.LeaseID]bool{}
		for _, l := range src.Leases {
			held[l.ID] = true
		}
		for _, l := range dst.Leases {
			if held[l.ID] {
				_, _ = f.o.Target.KeepAliveOnce(cctx, l.ID)
			}
		}
		cancel()
	}
}

// retry calls fn until it succeeds or fails for a lasting reason, each try
// with a 10 s deadline; the target is vetcd's own cluster, which may be
// electing a leader.
func retry(ctx context.Context, fn func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(cctx)
		cancel()
		if err == nil || ctx.Err() != nil || attempt == 10 {
			return err
		}
		switch {
		case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTimeout),
			errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrLeaderChanged),
			errors.Is(err, context.DeadlineExceeded), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost):
		default:
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// ReadEtcdMarker reads EtcdMarkerKey from the target; ok is false if it is
// absent.
func ReadEtcdMarker(ctx context.Context, cli *clientv3.Client) (m EtcdMarker, ok bool, err error) {
	resp, err := cli.Get(ctx, EtcdMarkerKey)
	if err != nil {
		return m, false, fmt.Errorf("migrate: read marker: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return m, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
		return m, false, fmt.Errorf("migrate: marker %s: %w", EtcdMarkerKey, err)
	}
	return m, true, nil
}

// CutOver ends a migration: it records state done with reason in the
// marker, once the target holds at least source revision atLeast (0: any).
// A follower still running sees the marker change and stops before copying
// another revision. The write costs the target one revision of its own.
// It returns the marker as written.
func CutOver(ctx context.Context, cli *clientv3.Client, atLeast int64, reason string) (EtcdMarker, error) {
	for {
		resp, err := cli.Get(ctx, EtcdMarkerKey)
		if err != nil {
			return EtcdMarker{}, fmt.Errorf("migrate: read marker: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return EtcdMarker{}, ErrNotFollowing
		}
		var m EtcdMarker
		if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
			return m, fmt.Errorf("migrate: marker %s: %w", EtcdMarkerKey, err)
		}
		if m.State == StateDone {
			return m, fmt.Errorf("%w already at source revision %d (%s)", ErrCutOver, m.Revision, m.Reason)
		}
		if m.Revision < atLeast {
			return m, fmt.Errorf("migrate: cut-over: the target holds source revision %d, not %d yet", m.Revision, atLeast)
		}
		m.State, m.Reason, m.At = StateDone, reason, time.Now().UTC()
		b, _ := json.Marshal(m)
		txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(EtcdMarkerKey), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpPut(EtcdMarkerKey, string(b))).Commit()
		if err != nil {
			return m, fmt.Errorf("migrate: cut-over marker: %w", err)
		}
		if txn.Succeeded {
			return m, nil
		}
		// A follower copied another revision meanwhile: look again.
	}
}
