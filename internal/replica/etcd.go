package replica

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/pkg/v3/featuregate"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/migrate"
)

// startSpec says how to start etcd for one start mode.
type startSpec struct {
	// initialCluster is etcd's --initial-cluster; ignored by etcd when the
	// data dir already holds a member.
	initialCluster string
	// existing selects --initial-cluster-state=existing (joining).
	existing bool
	token    string
	// force applies --force-new-cluster (rebuild only).
	force bool
	// waitReady makes start wait until the member serves. A restart
	// without quorum never gets ready, so restarts do not wait.
	waitReady bool
	// watchPublish (a join with a clean data dir) restarts the member once
	// if etcd's publish request was lost in the snapshot that caught it up:
	// see publishLost.
	watchPublish bool
	// skipInitialCorruptCheck turns off etcd's start-time hash comparison
	// with the peers for a restart whose data the leader sent moments ago
	// (the publish restart above). That check reads the whole database:
	// 3.7 s of a 1 GiB member's 4.5 s restart in bench/recovery.sh. The
	// periodic and compaction hash checks stay on.
	skipInitialCorruptCheck bool
}

// etcdConfig builds etcd's config from vetcd's: vetcd's defaults first,
// then extraArgs on top, then the settings vetcd owns.
func etcdConfig(cfg config.Config, spec startSpec) (*embed.Config, error) {
	ec := embed.NewConfig()
	// vetcd defaults that extraArgs may override.
	ec.SnapshotCount = cfg.EffectiveSnapshotCount()
	ec.StrictReconfigCheck = true
	ec.ListenMetricsUrls = nil
	// etcd's own corruption detection, all three: a member checks its
	// hash against its peers before serving, the leader compares every
	// member's hash periodically and after each compaction. A mismatch
	// raises the CORRUPT alarm, which the controller acts on.
	gates := "InitialCorruptCheck=true,CompactHashCheck=true"
	if spec.skipInitialCorruptCheck {
		gates = "InitialCorruptCheck=false,CompactHashCheck=true"
	}
	if err := ec.ServerFeatureGate.(featuregate.MutableFeatureGate).Set(gates); err != nil {
		return nil, fmt.Errorf("etcd feature gates: %w", err)
	}
	ec.CorruptCheckTime = 5 * time.Minute
	if cfg.MigrateFromDeployedEtcd {
		migrate.RaiseTargetLimits(ec) // every source revision is copied as one txn
	}
	if err := config.ApplyExtraArgs(ec, cfg.ExtraArgs); err != nil {
		return nil, err
	}
	// Settings vetcd owns (extraArgs cannot name them).
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	var err error
	urls := func(s string) []url.URL {
		u, perr := url.Parse(s)
		if perr != nil && err == nil {
			err = perr
		}
		if u == nil {
			return nil
		}
		return []url.URL{*u}
	}
	ec.ListenClientUrls = urls(cfg.ListenClientURL)
	ec.AdvertiseClientUrls = urls(cfg.ClientURL)
	ec.ListenPeerUrls = urls(cfg.ListenPeerURL)
	ec.AdvertisePeerUrls = urls(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd URLs: %w", err)
	}
	tls := transport.TLSInfo{
		CertFile:       cfg.TLS.CertFile,
		KeyFile:        cfg.TLS.KeyFile,
		TrustedCAFile:  cfg.TLS.CAFile,
		ClientCertAuth: true,
	}
	ec.ClientTLSInfo = tls
	ec.PeerTLSInfo = tls
	ec.InitialCluster = spec.initialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = cfg.Name + "=" + cfg.PeerURL
	}
	ec.ClusterState = embed.ClusterStateFlagNew
	if spec.existing {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	if spec.token != "" {
		ec.InitialClusterToken = spec.token
	}
	ec.ForceNewCluster = spec.force
	return ec, nil
}

// isMemberCountUnequal reports etcd's join-time race: the joiner asked a
// peer that had not applied the member add yet (TESTING.md: ~1 in 6 joins).
// The fix is to start again with a clean data dir.
//
// etcd has no sentinel or type for it: membership.ValidateClusterAndAssignIDs
// (go.etcd.io/etcd/server/v3 v3.7.3, etcdserver/api/membership/cluster.go)
// returns fmt.Errorf("member count is unequal"), which embed.StartEtcd
// wraps, so its text is matched. TestIsMemberCountUnequal produces the real
// error and fails if etcd rewords it.
func isMemberCountUnequal(err error) bool {
	return err != nil && strings.Contains(err.Error(), "member count is unequal")
}

// startEtcd starts embedded etcd and, if asked, waits until it serves.
// On any failure the member is closed before returning.
func (r *Replica) startEtcd(ctx context.Context, spec startSpec) (e *embed.Etcd, err error) {
	ec, err := etcdConfig(r.cfg, spec)
	if err != nil {
		return nil, err
	}
	lost := make(chan string, 1)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(etcdLogger(r.lg, func(why string) {
		select {
		case lost <- why:
		default:
		}
	}))
	drain := newRPCDrain()
	ec.GRPCAdditionalServerOptions = append(ec.GRPCAdditionalServerOptions, drain.serverOptions()...)
	if err := os.MkdirAll(r.cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	e, err = embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	r.attachDrain(e, drain)
	go r.watchData(e, lost)
	r.noteOurs(e)
	if !spec.waitReady {
		return e, nil
	}
	timer := time.NewTimer(r.startTimeout)
	defer timer.Stop()
	var watch <-chan time.Time
	if spec.watchPublish {
		t := time.NewTicker(publishGrace / 3)
		defer t.Stop()
		watch = t.C
	}
	var lostSince time.Time
	for err == nil {
		select {
		case <-e.Server.ReadyNotify():
			return e, nil
		case err = <-e.Err():
			err = fmt.Errorf("etcd failed while starting: %w", err)
		case <-e.Server.StopNotify():
			err = errors.New("etcd stopped while starting")
		case <-timer.C:
			err = fmt.Errorf("etcd not ready after %s", r.startTimeout)
		case <-ctx.Done():
			err = ctx.Err()
		case now := <-watch:
			if !publishLost(e) {
				lostSince = time.Time{}
				continue
			}
			if lostSince.IsZero() {
				lostSince = now
			}
			if now.Sub(lostSince) < publishGrace {
				continue
			}
			r.lg.Warn("this member's publish request was applied through the snapshot that caught it up, so etcd "+
				"waits out its publish timeout (etcd-io/etcd#16436); restarting the member, which publishes again at once",
				zap.String("member-id", e.Server.MemberID().String()))
			r.releaseUnready(e)
			spec.watchPublish = false
			spec.skipInitialCorruptCheck = true
			return r.startEtcd(ctx, spec)
		}
	}
	closeUnready(e)
	return nil, err
}

// closeUnready closes a member that may not be ready. embed's Close waits
// for the client servers, which start only once the member is ready or
// its server stops, so the server is stopped first: otherwise Close hangs
// until the member gets ready, or forever.
func closeUnready(e *embed.Etcd) {
	e.Server.HardStop()
	e.Close()
}

// releaseUnready stops a member that is not ready and frees what a new
// start on the same data needs at once: the data dir (HardStop returns once
// the server closed its WAL and backend) and the client and peer ports. The
// rest of embed's Close runs in the background, tracked by r.closing: its
// peer server waits for the remote members' connections to drain, which
// took 0.53 s in a third of the publish restarts in bench/recovery.sh, and
// waits at most 1 s.
func (r *Replica) releaseUnready(e *embed.Etcd) {
	e.Server.HardStop()
	for _, l := range e.Clients {
		_ = l.Close()
	}
	for _, p := range e.Peers {
		_ = p.Listener.Close()
	}
	r.closing.Add(1)
	go func() {
		defer r.closing.Done()
		e.Close()
	}()
}

// publishGrace is how long publishLost must hold before the member is
// restarted. When the publish entry is applied normally, etcd marks the
// member ready within microseconds of applying it; a wrong guess costs one
// restart of a learner.
const publishGrace = 30 * time.Millisecond

// publishLost reports whether a joining member that is not ready yet
// already sees its own attributes (name, client URLs) in the membership.
// A new member's attributes come only from its own publish request, and
// etcd marks the member ready when it applies that request as a log entry.
// If the leader applied the request before it took the snapshot it sends
// the joiner, the joiner receives the attributes inside the snapshot, never
// applies the entry, and waits out etcd's publish timeout (7 s with the
// default election timeout) before publishing again. That happened in
// about half of the joins measured in bench/recovery.sh, in stock etcd too.
// The member's data is complete and caught up at that point; a restart
// publishes again and is ready in well under a second.
func publishLost(e *embed.Etcd) bool {
	m := e.Server.Cluster().Member(e.Server.MemberID())
	return m != nil && m.Name != "" && len(m.ClientURLs) > 0
}

// dataCheckInterval is how often a running member's data dir is looked at.
const dataCheckInterval = time.Second

// watchData stops member e when its data dir is gone: deleted under the
// running member (a lost volume, a person's rm -rf), or reported gone by
// etcd's file purger (lost, see purgeFatalHook). etcd itself goes on
// serving from the open, unlinked WAL and database until it fails to
// write a new file, and then exits the process through lg.Fatal. Stopping
// the member instead wakes the replica's loop (stopNotify), which finds
// the data dir empty or damaged and rejoins inside the process. It
// returns when the member stops, whoever stops it.
func (r *Replica) watchData(e *embed.Etcd, lost <-chan string) {
	t := time.NewTicker(dataCheckInterval)
	defer t.Stop()
	var why string
	for why == "" {
		select {
		case <-e.Server.StopNotify():
			return
		case why = <-lost:
		case <-t.C:
			why = dataGone(r.cfg.DataDir)
		}
	}
	r.lg.Warn("etcd's data dir is gone under the running member; stopping it so that the replica rejoins",
		zap.String("member-id", e.Server.MemberID().String()), zap.String("reason", why))
	// Stop hands leadership over first; the open WAL and database still
	// take writes until the server is down.
	e.Server.Stop()
}

// dataGone says which of a member's WAL dir and database is missing, or ""
// if both are there (or cannot be looked at for another reason).
func dataGone(dataDir string) string {
	for _, p := range []string{walDir(dataDir), dbPath(dataDir)} {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return p + " is missing"
		}
	}
	return ""
}
