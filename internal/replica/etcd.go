package replica

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/pkg/v3/featuregate"
	"go.etcd.io/etcd/server/v3/embed"

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
	if err := ec.ServerFeatureGate.(featuregate.MutableFeatureGate).Set("InitialCorruptCheck=true,CompactHashCheck=true"); err != nil {
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

// errMemberCountUnequal is etcd's join-time race: the joiner asked a peer
// that had not applied the member add yet (TESTING.md: ~1 in 6 joins). The
// fix is to start again with a clean data dir.
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
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(etcdLogger(r.lg))
	if err := os.MkdirAll(r.cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	e, err = embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	r.noteOurs(e)
	if !spec.waitReady {
		return e, nil
	}
	timer := time.NewTimer(r.startTimeout)
	defer timer.Stop()
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
	}
	e.Close()
	return nil, err
}
