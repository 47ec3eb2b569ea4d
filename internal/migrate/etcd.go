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
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/vetcd/vetcd/internal/plan"
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
	// ErrSelfDiverged: the target's revision moved past the last copied
	// source revision without a client's write (deletes of leased keys:
	// a lease ending on the target). It is not a cut-over: following
	// stops, and the source's later writes are not copied.
	ErrSelfDiverged = errors.New("migrate: target revision moved without a client write")
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
	// LeaseInterval is how often the target's leases are kept alive and
	// the target is checked for a cut-over; default 2s (shorter when a
	// lease's TTL asks for it).
	LeaseInterval time.Duration
}

// Follow copies the source's revisions after From into the target, one
// txn per source revision, until ctx ends or following stops. Each txn
// holds exactly the events of one source revision plus the marker, so the
// target's revision after it equals the source's: keys keep their mod
// revisions. Leases the copied keys use are granted on the target with the
// source's ID and TTL.
//
// Every lease on the target is kept alive for as long as Follow runs,
// whether or not the source answers: a lease must never end on the
// target by itself (its deletes would take a revision the source's next
// one needs). A deployed etcd that does not answer does not expire its
// leases either; when it revokes one, the deletes arrive through the
// watch, and the lease is revoked on the target once those are copied
// (it holds no key then, so the revoke costs no revision).
//
// The target is checked for a cut-over every LeaseInterval, and before
// each copy, whether or not the source answers. Only a positive sign that
// clients moved counts (plan.JudgeFollow: a put, or a delete of a key
// without a lease, in a revision Follow did not make); it returns
// ErrDiverged. A target revision nothing but vetcd itself explains returns
// ErrSelfDiverged: following stops, and it is not a cut-over. Otherwise
// it returns the last copied revision with ctx.Err(), ErrCutOver (the
// marker is done) or ErrSourceCompacted. Unreachable sources are retried
// until ctx ends.
func Follow(ctx context.Context, o FollowOptions) (int64, error) {
	lg := o.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	if o.LeaseInterval <= 0 {
		o.LeaseInterval = 2 * time.Second
	}
	f := &follower{o: o, lg: lg, last: o.From, leases: newLeaseBook()}
	f.copied.Store(o.From)
	fctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	tended := make(chan struct{})
	go func() {
		defer close(tended)
		f.tend(fctx, stop)
	}()
	last, err := f.run(fctx)
	if ctx.Err() == nil && fctx.Err() != nil {
		err = context.Cause(fctx) // tend stopped it
	}
	stop(nil)
	<-tended
	return last, err
}

type follower struct {
	o    FollowOptions
	lg   *zap.Logger
	last int64 // owned by run
	// markerRev is the marker's mod revision as last seen: every copy txn
	// requires it unchanged, so a cut-over (or another follower's copy)
	// is noticed before a revision is copied twice or after the end.
	markerRev int64
	// copied is the last source revision the target holds, as the marker
	// says (any follower's copy); tend reads it.
	copied atomic.Int64
	leases *leaseBook
}

// leaseBook is what a follower knows of the source's leases, shared by
// run (ensureLease) and tend (retiring).
type leaseBook struct {
	mu sync.Mutex
	// onTarget: leases known to exist on the target.
	onTarget map[int64]bool
	// fromSource: leases seen held by the source, or granted on the
	// target for a copied key. Only these are ever revoked on the target.
	fromSource map[int64]bool
	// dropped: leases of fromSource the source no longer held as of the
	// source revision recorded; once the target holds that revision,
	// their deletes are copied and they are revoked on the target.
	dropped map[int64]int64
}

func newLeaseBook() *leaseBook {
	return &leaseBook{onTarget: map[int64]bool{}, fromSource: map[int64]bool{}, dropped: map[int64]int64{}}
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
	m, ok, err := decodeMarker(resp)
	if err != nil {
		return 0, err
	}
	if !ok {
		f.markerRev = 0
		return resp.Header.Revision, nil
	}
	f.markerRev = resp.Kvs[0].ModRevision
	f.last = max(f.last, m.Revision)
	return resp.Header.Revision, nil
}

// decodeMarker reads the marker from a Get of EtcdMarkerKey; a done marker
// is ErrCutOver.
func decodeMarker(resp *clientv3.GetResponse) (EtcdMarker, bool, error) {
	var m EtcdMarker
	if len(resp.Kvs) == 0 {
		return m, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
		return m, false, fmt.Errorf("migrate: marker %s: %w", EtcdMarkerKey, err)
	}
	if m.State == StateDone {
		return m, true, fmt.Errorf("%w at source revision %d (%s)", ErrCutOver, m.Revision, m.Reason)
	}
	return m, true, nil
}

func (f *follower) run(ctx context.Context) (int64, error) {
	if _, err := f.syncMarker(ctx); err != nil {
		return f.last, err
	}
	f.copied.Store(f.last)
	back := plan.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := f.o.Source.Watch(wctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(f.last+1))
		err := f.drain(ctx, wch)
		cancel()
		if ctx.Err() != nil {
			return f.last, ctx.Err()
		}
		if errors.Is(err, ErrDiverged) || errors.Is(err, ErrSelfDiverged) || errors.Is(err, ErrSourceCompacted) || errors.Is(err, ErrCutOver) {
			return f.last, err
		}
		wait := back.Failed()
		f.lg.Warn("following the source etcd: watch ended; retrying", zap.Error(err), zap.Int64("revision", f.last), zap.Duration("retry-in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return f.last, ctx.Err()
		case <-t.C:
		}
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
	// revision of its own since then is judged (a client's write is the
	// cut-over; anything else stops following) before a source revision
	// is copied to the wrong place. (Another follower's copy moves the
	// marker along with the revision.)
	at, err := f.syncMarker(ctx)
	if err != nil {
		return err
	}
	f.copied.Store(f.last)
	if rev <= f.last {
		return nil
	}
	if at != f.last {
		return f.diverged(ctx, f.last, at)
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
	if got := resp.Header.GetRevision(); got != rev {
		// A revision of the target's own came between the check and the
		// copy: the copy is misplaced. Stop either way; say why.
		err := f.diverged(ctx, f.last, got-1)
		return fmt.Errorf("source revision %d landed at target revision %d: %w", rev, got, err)
	}
	f.markerRev = rev
	f.last = rev
	f.copied.Store(rev)
	if f.o.OnApplied != nil {
		f.o.OnApplied(rev)
	}
	return nil
}

// diverged judges the target's revisions after last up to at, which
// Follow did not make: ErrDiverged (clients moved), ErrSelfDiverged, or an
// error to retry.
func (f *follower) diverged(ctx context.Context, last, at int64) error {
	j, err := judgeTarget(ctx, f.o.Target, last, at)
	if err != nil {
		return err
	}
	switch j.Verdict {
	case plan.FollowClientsMoved:
		return fmt.Errorf("%w: %s", ErrDiverged, j.Reason)
	case plan.FollowSelfDiverged:
		return fmt.Errorf("%w: the target is at revision %d, the last source revision copied is %d: %s", ErrSelfDiverged, at, last, j.Reason)
	}
	return fmt.Errorf("migrate: the target is at revision %d, the last source revision copied is %d, with no revision of its own in between", at, last)
}

// judgeTarget reads the target's history after last up to at and judges
// it with plan.JudgeFollow. It reads only as far as the first client's
// write.
func judgeTarget(ctx context.Context, cli *clientv3.Client, last, at int64) (plan.FollowJudgement, error) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	wch := cli.Watch(wctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(last+1), clientv3.WithPrevKV())
	var revs []plan.FollowRevision
	complete := false
	for resp := range wch {
		if resp.CompactRevision != 0 {
			break // the history is gone: incomplete
		}
		if err := resp.Err(); err != nil {
			return plan.FollowJudgement{}, fmt.Errorf("migrate: read the target's history after revision %d: %w", last, err)
		}
		for _, ev := range resp.Events {
			rev := ev.Kv.ModRevision
			if rev > at {
				complete = true
				break
			}
			if len(revs) == 0 || revs[len(revs)-1].Revision != rev {
				revs = append(revs, plan.FollowRevision{Revision: rev})
			}
			r := &revs[len(revs)-1]
			switch {
			case string(ev.Kv.Key) == EtcdMarkerKey:
				r.Copied = true
			case ev.Type == mvccpb.PUT:
				r.Puts++
			case ev.PrevKv != nil && ev.PrevKv.Lease == 0:
				r.Deletes++
			default:
				r.LeaseDeletes++
			}
		}
		// A watch response never splits a revision: once at is seen, the
		// list is complete.
		if len(revs) > 0 && revs[len(revs)-1].Revision >= at {
			complete = true
		}
		if j := plan.JudgeFollow(revs, complete); complete || j.Verdict == plan.FollowClientsMoved {
			return j, nil
		}
	}
	if wctx.Err() != nil {
		return plan.FollowJudgement{}, fmt.Errorf("migrate: read the target's history after revision %d: %w", last, wctx.Err())
	}
	return plan.JudgeFollow(revs, complete), nil
}

// ensureLease makes sure lease id exists on the target. It reports false
// if the source no longer holds it either (its keys' deletes follow).
func (f *follower) ensureLease(ctx context.Context, id int64) (bool, error) {
	f.leases.mu.Lock()
	known := f.leases.onTarget[id]
	f.leases.mu.Unlock()
	if known {
		return true, nil
	}
	ttl, err := f.o.Target.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return false, fmt.Errorf("migrate: lease %x on the target: %w", id, err)
	}
	if err == nil && ttl.TTL > 0 {
		f.leases.mu.Lock()
		f.leases.onTarget[id] = true
		f.leases.fromSource[id] = true
		f.leases.mu.Unlock()
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
	f.leases.mu.Lock()
	f.leases.onTarget[id] = true
	f.leases.fromSource[id] = true
	f.leases.mu.Unlock()
	return true, nil
}

// tend runs beside the copying for as long as Follow runs: every
// interval it keeps the target's leases alive (without asking the
// source), checks the target for a cut-over (stopping Follow with the
// cause), and revokes on the target the leases the source dropped once
// their deletes are copied.
func (f *follower) tend(ctx context.Context, stop context.CancelCauseFunc) {
	for {
		next := f.keepAlive(ctx)
		if err := f.checkTarget(ctx); err != nil {
			stop(err)
			return
		}
		f.retireLeases(ctx)
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// keepAlive renews every lease on the target once and returns how long
// to wait before the next round: LeaseInterval, or a third of the
// shortest TTL if that is shorter.
func (f *follower) keepAlive(ctx context.Context) time.Duration {
	next := f.o.LeaseInterval
	cctx, cancel := context.WithTimeout(ctx, f.o.LeaseInterval)
	defer cancel()
	dst, err := f.o.Target.Leases(cctx)
	if err != nil {
		if ctx.Err() == nil {
			f.lg.Warn("following the source etcd: cannot list the target's leases to keep them alive", zap.Error(err))
		}
		return min(next, time.Second)
	}
	for _, l := range dst.Leases {
		resp, err := f.o.Target.KeepAliveOnce(cctx, l.ID)
		if err != nil {
			if !errors.Is(err, rpctypes.ErrLeaseNotFound) && ctx.Err() == nil {
				f.lg.Warn("following the source etcd: cannot keep a lease alive on the target", zap.String("lease", fmt.Sprintf("%x", int64(l.ID))), zap.Error(err))
			}
			continue
		}
		if resp.TTL > 0 {
			next = min(next, time.Duration(resp.TTL)*time.Second/3)
		}
	}
	return max(next, 300*time.Millisecond)
}

// checkTarget reads the marker and the target's revision and, if the
// target has revisions Follow did not make, judges them: it returns
// ErrCutOver, ErrDiverged or ErrSelfDiverged to stop Follow, nil to go
// on (also when the target cannot be read now).
func (f *follower) checkTarget(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, f.o.LeaseInterval)
	resp, err := f.o.Target.Get(cctx, EtcdMarkerKey)
	cancel()
	if err != nil {
		return nil
	}
	m, ok, err := decodeMarker(resp)
	if errors.Is(err, ErrCutOver) {
		return err
	}
	if err != nil {
		f.lg.Warn("following the source etcd: cannot read the marker", zap.Error(err))
		return nil
	}
	last := f.o.From
	if ok {
		last = max(last, m.Revision)
	}
	f.copied.Store(max(f.copied.Load(), last))
	at := resp.Header.Revision
	if at == last {
		return nil
	}
	err = f.diverged(ctx, last, at)
	if errors.Is(err, ErrDiverged) || errors.Is(err, ErrSelfDiverged) {
		return err
	}
	if ctx.Err() == nil {
		f.lg.Warn("following the source etcd: cannot judge the target's revisions", zap.Error(err))
	}
	return nil
}

// retireLeases revokes on the target the leases the source dropped, once
// the target holds the source revision as of which they were dropped:
// their keys' deletes are copied by then, so the revoke deletes nothing
// and costs no revision. It then asks the source (briefly; it may not
// answer) which leases it holds.
func (f *follower) retireLeases(ctx context.Context) {
	copied := f.copied.Load()
	f.leases.mu.Lock()
	var due []int64
	for id, h := range f.leases.dropped {
		if copied >= h {
			due = append(due, id)
		}
	}
	f.leases.mu.Unlock()
	for _, id := range due {
		cctx, cancel := context.WithTimeout(ctx, f.o.LeaseInterval)
		err := f.retireLease(cctx, id)
		cancel()
		if err != nil && ctx.Err() == nil {
			f.lg.Warn("following the source etcd: cannot revoke on the target a lease the source dropped", zap.String("lease", fmt.Sprintf("%x", id)), zap.Error(err))
		}
	}

	cctx, cancel := context.WithTimeout(ctx, f.o.LeaseInterval)
	defer cancel()
	src, err := f.o.Source.Leases(cctx)
	if err != nil {
		return
	}
	// A linearizable read after the list: its revision is at or after
	// every revoke the list reflects.
	probe, err := f.o.Source.Get(cctx, "vetcd-migrate-probe", clientv3.WithCountOnly())
	if err != nil {
		return
	}
	held := map[int64]bool{}
	f.leases.mu.Lock()
	defer f.leases.mu.Unlock()
	for _, l := range src.Leases {
		held[int64(l.ID)] = true
		f.leases.fromSource[int64(l.ID)] = true
		delete(f.leases.dropped, int64(l.ID))
	}
	for id := range f.leases.fromSource {
		if _, ok := f.leases.dropped[id]; !ok && !held[id] {
			f.leases.dropped[id] = probe.Header.Revision
		}
	}
}

// retireLease revokes lease id on the target if no key is attached to it,
// and forgets it.
func (f *follower) retireLease(ctx context.Context, id int64) error {
	ttl, err := f.o.Target.TimeToLive(ctx, clientv3.LeaseID(id), clientv3.WithAttachedKeys())
	if err == nil && ttl.TTL > 0 && len(ttl.Keys) > 0 {
		// Its deletes should have been copied: keep it alive rather
		// than let its keys go at a revision of the target's own.
		return fmt.Errorf("lease %x still has %d keys on the target", id, len(ttl.Keys))
	}
	if err == nil && ttl.TTL > 0 {
		_, err = f.o.Target.Revoke(ctx, clientv3.LeaseID(id))
	}
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return err
	}
	f.leases.mu.Lock()
	delete(f.leases.onTarget, id)
	delete(f.leases.fromSource, id)
	delete(f.leases.dropped, id)
	f.leases.mu.Unlock()
	return nil
}

// retry calls fn until it succeeds or fails for a lasting reason, each try
// with a 10 s deadline; the target is vetcd's own cluster, which may be
// electing a leader.
func retry(ctx context.Context, fn func(context.Context) error) error {
	back := plan.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second}
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
		t := time.NewTimer(back.Failed())
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
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
