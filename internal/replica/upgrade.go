package replica

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/etcddata"
	"github.com/vetcd/vetcd/internal/migrate"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// ReadStorageVersion reads the storage version etcd 3.6 and newer record
// in the backend's meta bucket, from a data dir no etcd has open. The zero
// version means none is recorded: etcd 3.5 or older wrote the data (or
// etcd 3.6+ stopped in the first seconds of a new member, before it
// recorded one). A record that does not parse is an error. It never
// writes.
func ReadStorageVersion(dataDir string) (v plan.StorageVersion, err error) {
	err = etcddata.View(dbPath(dataDir), func(r *etcddata.Reader) error {
		if !r.HasBucket(schema.Meta) {
			return errors.New("no meta bucket")
		}
		sv, err := r.StorageVersion()
		if sv != nil {
			v = plan.StorageVersion{Major: int(sv.Major), Minor: int(sv.Minor)}
		}
		return err
	})
	if err != nil {
		return plan.StorageVersion{}, fmt.Errorf("storage version: %w", err)
	}
	return v, nil
}

// parseStorageVersion reads "3.6" or "3.6.0".
func parseStorageVersion(s string) (plan.StorageVersion, error) {
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) < 2 {
		return plan.StorageVersion{}, fmt.Errorf("storage version %q is not major.minor", s)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || major <= 0 || minor < 0 {
		return plan.StorageVersion{}, fmt.Errorf("storage version %q is not major.minor", s)
	}
	return plan.StorageVersion{Major: major, Minor: minor}, nil
}

// BinaryStorageVersion is the storage version of the etcd linked into
// vetcd (3.7).
func BinaryStorageVersion() plan.StorageVersion {
	v, err := parseStorageVersion(version.Version)
	if err != nil {
		panic("etcd's own version does not parse: " + version.Version)
	}
	return v
}

// oursMarker records that this vetcd's etcd created (or last ran) a
// member's data, so that data without a storage version yet is not
// mistaken for etcd 3.5 data.
type oursMarker struct {
	MemberID    string    `json:"memberID"`
	EtcdVersion string    `json:"etcdVersion"`
	At          time.Time `json:"at"`
}

func (m markers) storagePath() string { return filepath.Join(m.dir, "storage.json") }

func (m markers) writeOurs(memberID uint64, now time.Time) error {
	b, _ := json.Marshal(oursMarker{MemberID: fmt.Sprintf("%x", memberID), EtcdVersion: version.Version, At: now})
	return topology.WriteAtomic(m.storagePath(), b, 0o600)
}

// ours reports whether this vetcd's etcd created or ran member memberID.
func (m markers) ours(memberID uint64) bool {
	b, err := os.ReadFile(m.storagePath())
	if err != nil {
		return false
	}
	var om oursMarker
	if json.Unmarshal(b, &om) != nil {
		return false
	}
	return om.MemberID == fmt.Sprintf("%x", memberID)
}

// noteOurs records that etcd runs on this data now.
func (r *Replica) noteOurs(e *embed.Etcd) {
	if err := r.markers.writeOurs(uint64(e.Server.MemberID()), time.Now().UTC()); err != nil {
		r.lg.Warn("could not record the data's etcd version", zap.Error(err))
	}
}

// observeStorage is the upgrade gate's observation of valid data that etcd
// does not run on. A storage version that cannot be read leaves the gate
// open: the data was found valid, and etcd itself refuses what it cannot
// read.
func (r *Replica) observeStorage(info DataInfo) plan.Storage {
	if info.State != plan.DataValid {
		return plan.Storage{}
	}
	v, err := ReadStorageVersion(r.cfg.DataDir)
	if err != nil {
		r.lg.Warn("could not read the data's storage version", zap.Error(err))
		return plan.Storage{}
	}
	return plan.Storage{
		Version:       v,
		Ours:          r.markers.ours(info.MemberID),
		Binary:        BinaryStorageVersion(),
		RefuseUpgrade: r.cfg.Upgrade.RefuseOldData(),
	}
}

// upgradeAsideName is the sibling the old data dir moves to on upgrade.
// It does not match moveAside's pattern, so it is never pruned.
func upgradeAsideName(dataDir string, now time.Time) string {
	return filepath.Clean(dataDir) + ".pre-upgrade-" + now.UTC().Format("20060102T150405")
}

// upgrade founds the cluster from data older than etcd 3.6 without ever
// starting etcd on it in place: it copies the backend db, restores the copy
// with etcdutl into a fresh data dir (a new one-member cluster, the
// membership rewritten, every key and revision kept), moves the old data
// dir aside (never deleted, never pruned) and starts etcd on the new one.
// The cluster record is written first as an intent, then with the new
// cluster ID, as bootstrap does.
func (r *Replica) upgrade(ctx context.Context, rec plan.Record, raw, reason string) error {
	now := time.Now().UTC()
	if c := rec.Claim; c == nil || c.Kind != plan.ClaimFound || c.Holder != r.self.Ordinal {
		var err error
		if rec, raw, err = r.claim(ctx, rec, raw, plan.Claim{Kind: plan.ClaimFound}); err != nil {
			return fmt.Errorf("upgrade: %w", err)
		}
	}
	parent := parentDir(r.cfg.DataDir)
	work := filepath.Join(parent, "upgrade")
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	defer os.RemoveAll(work)
	db := filepath.Join(work, "db")
	if err := copyFile(dbPath(r.cfg.DataDir), db); err != nil {
		return fmt.Errorf("upgrade: copy the old backend: %w", err)
	}
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	fresh := filepath.Join(work, "data")
	err := migrate.Restore(r.lg.Named("upgrade"), db, migrate.RestoreTarget{
		Name: r.cfg.Name, PeerURL: r.cfg.PeerURL, DataDir: fresh,
		Token: "vetcd-" + hex.EncodeToString(token), SkipHashCheck: true,
	})
	if err != nil {
		return fmt.Errorf("upgrade: %w (the old data is untouched)", err)
	}
	info := InspectData(r.lg, fresh)
	if info.State != plan.DataValid {
		return fmt.Errorf("upgrade: restored data is %s (%s); the old data is untouched", info.State, info.Problem)
	}
	aside := upgradeAsideName(r.cfg.DataDir, now)
	if err := os.Rename(r.cfg.DataDir, aside); err != nil {
		return fmt.Errorf("upgrade: move the old data aside: %w", err)
	}
	if err := os.Rename(fresh, r.cfg.DataDir); err != nil {
		return fmt.Errorf("upgrade: put the restored data in place (the old data is in %s): %w", aside, err)
	}
	if err := r.markers.writeOurs(info.MemberID, now); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	for _, stale := range []string{r.markers.leftPath(), r.markers.rebuildPath()} {
		if err := os.Remove(stale); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("upgrade: %w", err)
		}
	}
	r.lg.Warn("upgraded old data by snapshot and restore; the old data dir is kept", zap.String("reason", reason),
		zap.String("old-data", aside), zap.String("cluster-id", fmt.Sprintf("%x", info.ClusterID)))
	e, err := r.startEtcd(ctx, startSpec{waitReady: true})
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	r.setEtcd(e)
	id, member := uint64(e.Server.Cluster().ID()), uint64(e.Server.MemberID())
	next := plan.NextGeneration(rec, plan.ID(id), plan.ID(member), plan.Made{How: plan.OriginUpgraded, By: r.self.Name, At: now, Note: "old data kept in " + aside})
	if err := r.markers.writeGeneration(member, id, next.Generation, time.Now()); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	if err := r.swapRecord(ctx, raw, next); err != nil {
		return fmt.Errorf("upgrade: record the upgraded cluster (retried on the next pass): %w", err)
	}
	r.metrics.Recoveries.WithLabelValues("upgrade").Inc()
	return nil
}

// copyFile copies src to dst (0600, fsynced).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
