package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/vetcd/vetcd/internal/etcddata"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// DataInfo is what a data dir holds, read without starting etcd.
type DataInfo struct {
	State        plan.DataState
	Problem      string
	ClusterID    uint64
	MemberID     uint64
	AppliedIndex uint64
	// Revision and CompactRevision are where etcd's start-up corruption
	// check will hash this data (plan.StartHashPoint): the store's current
	// revision, and its compaction revision, plan.NeverCompacted (-1) if
	// never compacted, as etcd reports it.
	Revision        int64
	CompactRevision int64
	// WALLocked means a WAL file is locked by someone else. etcd leaks the
	// WAL lock of a start that fails after opening it (its initial
	// corruption check, for one): this process can then never start etcd
	// on these files again.
	WALLocked bool
}

func walDir(dataDir string) string    { return filepath.Join(dataDir, "member", "wal") }
func dbPath(dataDir string) string    { return filepath.Join(dataDir, "member", "snap", "db") }
func memberDir(dataDir string) string { return filepath.Join(dataDir, "member") }

// InspectData reads a data dir that no etcd has open: whether it is empty,
// valid or corrupt, and, when valid, the member and cluster IDs (from the
// WAL metadata) and the applied index (from the backend's consistent index).
// It never writes.
func InspectData(lg *zap.Logger, dataDir string) DataInfo {
	if _, err := os.Stat(memberDir(dataDir)); errors.Is(err, fs.ErrNotExist) {
		return DataInfo{State: plan.DataEmpty}
	}
	corrupt := func(format string, args ...any) DataInfo {
		return DataInfo{State: plan.DataCorrupt, Problem: fmt.Sprintf(format, args...)}
	}
	if !wal.Exist(walDir(dataDir)) {
		return corrupt("member dir without a WAL")
	}
	snaps, err := wal.ValidSnapshotEntries(lg, walDir(dataDir))
	if err != nil {
		return corrupt("WAL unreadable: %v", err)
	}
	var from *walpb.Snapshot
	if len(snaps) > 0 {
		from = snaps[len(snaps)-1]
	}
	memberID, clusterID, err := readWALMetadata(lg, dataDir, from)
	if err != nil {
		return corrupt("WAL unreadable: %v", err)
	}
	info := DataInfo{State: plan.DataValid, ClusterID: clusterID, MemberID: memberID}
	info.WALLocked = walLocked(dataDir)

	if _, err := os.Stat(dbPath(dataDir)); err != nil {
		return corrupt("backend %s missing: %v", dbPath(dataDir), err)
	}
	b, err := readBackend(dbPath(dataDir))
	if err != nil {
		return corrupt("backend %s unreadable: %v", dbPath(dataDir), err)
	}
	hp := plan.StartHashPoint(b.revision, b.finished, b.finishedFound, b.scheduled)
	info.AppliedIndex, info.Revision, info.CompactRevision = b.index, hp.Revision, hp.CompactRevision
	return info
}

func readWALMetadata(lg *zap.Logger, dataDir string, from *walpb.Snapshot) (memberID, clusterID uint64, err error) {
	if from == nil {
		from = &walpb.Snapshot{}
	}
	w, err := wal.OpenForRead(lg, walDir(dataDir), from)
	if err != nil {
		return 0, 0, err
	}
	defer w.Close()
	defer func() {
		// A WAL the decoder chokes on may panic deep in etcd; that is
		// corruption, not a reason for the replica to die.
		if r := recover(); r != nil {
			err = fmt.Errorf("reading WAL panicked: %v", r)
		}
	}()
	metadata, _, _, err := w.ReadAll()
	if err != nil {
		return 0, 0, err
	}
	var m etcdserverpb.Metadata
	if err := proto.Unmarshal(metadata, &m); err != nil {
		return 0, 0, fmt.Errorf("WAL metadata: %w", err)
	}
	if m.GetNodeID() == 0 || m.GetClusterID() == 0 {
		return 0, 0, errors.New("WAL metadata has no member or cluster ID")
	}
	return m.GetNodeID(), m.GetClusterID(), nil
}

// walLocked reports whether any WAL file is locked by another open file,
// in this process or another. It asks with etcd's own locking (open file
// description locks on Linux), which flock would not see.
func walLocked(dataDir string) bool {
	files, _ := filepath.Glob(filepath.Join(walDir(dataDir), "*.wal"))
	for _, name := range files {
		l, err := fileutil.TryLockFile(name, os.O_RDWR, fileutil.PrivateFileMode)
		if errors.Is(err, fileutil.ErrLocked) {
			return true
		}
		if err == nil {
			l.Close() // releases our own lock
		}
	}
	return false
}

// backendInfo is what readBackend finds in a member's db.
type backendInfo struct {
	index         uint64 // consistent index
	revision      int64  // newest main revision in the key bucket (0: none)
	finished      int64  // finished compaction revision, if finishedFound
	finishedFound bool
	scheduled     int64 // scheduled compaction revision (0: none)
}

// readBackend reads, read-only, etcd's consistent index (the last
// applied raft index persisted in the backend), the newest revision in
// the key bucket, and the compactions recorded in the meta bucket, with
// etcd's own decoders (etcddata). It walks every page of the key bucket:
// a corrupt page shows here rather than after etcd has started on it.
func readBackend(path string) (info backendInfo, err error) {
	err = etcddata.View(path, func(r *etcddata.Reader) error {
		if !r.HasBucket(schema.Meta) {
			return errors.New("no meta bucket")
		}
		index, _, err := r.ConsistentIndex()
		if err != nil {
			return err
		}
		if index == 0 { // etcd never records 0
			return errors.New("no consistent index")
		}
		info.index = index
		// A missing finished compaction is not compaction 0: etcd
		// reports never compacted as -1.
		c, err := r.Compaction()
		if err != nil {
			return err
		}
		info.finished, info.finishedFound = c.Finished, c.FinishedOK
		if c.ScheduledOK {
			info.scheduled = c.Scheduled
		}
		rev, err := r.Revision()
		if err != nil {
			return err
		}
		info.revision = rev.Main
		return r.Walk()
	})
	return info, err
}

// asidePolicy bounds the moved-aside copies of a data dir (plan.PruneAside
// decides); volume reports the size and free bytes of the file system
// holding a dir (volumeOf; tests pass their own to play a small volume).
type asidePolicy struct {
	keep           int
	share, minFree float64
	volume         func(dir string) (total, free int64, err error)
}

// defaultAside is the policy of a replica: plan's defaults on the real
// volume.
func defaultAside() asidePolicy {
	return asidePolicy{keep: plan.DefaultAsideKeep, share: plan.DefaultAsideShare, minFree: plan.DefaultAsideMinFree, volume: volumeOf}
}

// moveAside renames dataDir to a sibling named after the time and reason,
// then deletes the copies pol no longer allows. Nothing is deleted but
// older copies; the data dir itself is renamed, never removed.
func moveAside(dataDir, reason string, pol asidePolicy, now time.Time) (string, error) {
	if _, err := os.Stat(dataDir); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	parent := filepath.Dir(dataDir)
	base := filepath.Base(dataDir)
	dst := filepath.Join(parent, fmt.Sprintf("%s.aside-%s-%s", base, now.UTC().Format("20060102T150405.000"), slug(reason)))
	if err := os.Rename(dataDir, dst); err != nil {
		return "", fmt.Errorf("move data dir aside: %w", err)
	}
	if _, _, err := pruneAside(dataDir, pol); err != nil {
		return dst, err
	}
	return dst, nil
}

// pruneAside deletes the moved-aside copies of dataDir that pol no longer
// allows (plan.PruneAside) and returns their names and why. It runs after
// every move aside and at every replica start, so that copies made while
// the volume had room go first once it runs short. dataDir itself is never
// among them.
func pruneAside(dataDir string, pol asidePolicy) (removed []string, why string, err error) {
	parent := filepath.Dir(dataDir)
	base := filepath.Base(dataDir)
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, "", fmt.Errorf("list old copies: %w", err)
	}
	var copies []plan.AsideCopy
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), base+".aside-") {
			n, err := dirBytes(filepath.Join(parent, e.Name()))
			if err != nil {
				return nil, "", fmt.Errorf("size of old copy: %w", err)
			}
			copies = append(copies, plan.AsideCopy{Name: e.Name(), Bytes: n})
		}
	}
	lim := plan.AsideLimits{Keep: pol.keep, Share: pol.share, MinFree: pol.minFree}
	if pol.volume != nil {
		// An unknown volume leaves the count as the only bound.
		if total, free, err := pol.volume(parent); err == nil {
			lim.VolumeBytes, lim.FreeBytes = total, free
		}
	}
	remove, why := plan.PruneAside(copies, lim)
	for _, name := range remove {
		if err := os.RemoveAll(filepath.Join(parent, name)); err != nil {
			return removed, why, fmt.Errorf("prune old copy: %w", err)
		}
		removed = append(removed, name)
	}
	return removed, why, nil
}

// dirBytes is the apparent size of the files under dir (etcd preallocates
// its WAL segments, so this is also about what they hold on disk).
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

// markers are the files vetcd keeps beside (not inside) the data dir, so
// that moving the data dir aside never loses them.
type markers struct{ dir string }

func (m markers) leftPath() string    { return filepath.Join(m.dir, "left.json") }
func (m markers) rebuildPath() string { return filepath.Join(m.dir, "rebuild.json") }

// leftMarker records that this replica's member left the cluster on a
// scale-down: its data must not start again with the old identity.
type leftMarker struct {
	MemberID  string    `json:"memberID"`
	ClusterID string    `json:"clusterID"`
	At        time.Time `json:"at"`
}

func (m markers) writeLeft(memberID, clusterID uint64, now time.Time) error {
	b, _ := json.Marshal(leftMarker{MemberID: fmt.Sprintf("%x", memberID), ClusterID: fmt.Sprintf("%x", clusterID), At: now})
	return topology.WriteAtomic(m.leftPath(), b, 0o600)
}

// left reports whether a left marker exists for this member.
func (m markers) left(memberID uint64) bool {
	b, err := os.ReadFile(m.leftPath())
	if err != nil {
		return false
	}
	var lm leftMarker
	if json.Unmarshal(b, &lm) != nil {
		return false
	}
	return lm.MemberID == fmt.Sprintf("%x", memberID)
}

func (m markers) clearLeft() error {
	if err := os.Remove(m.leftPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// rebuildMarker records a ForceNewCluster: the member list it forced from,
// and whether the forced start completed.
type rebuildMarker struct {
	MemberID    string    `json:"memberID"`
	ClusterID   string    `json:"clusterID"`
	FromMembers string    `json:"fromMembers"`
	Reason      string    `json:"reason"`
	State       string    `json:"state"` // "started", "done"
	At          time.Time `json:"at"`
}

func (m markers) writeRebuild(rm rebuildMarker) error {
	b, _ := json.MarshalIndent(rm, "", "  ")
	return topology.WriteAtomic(m.rebuildPath(), b, 0o600)
}

// rebuiltFrom returns the member-list fingerprint this member was already
// rebuilt from, if the forced start completed.
func (m markers) rebuiltFrom(memberID uint64) string {
	b, err := os.ReadFile(m.rebuildPath())
	if err != nil {
		return ""
	}
	var rm rebuildMarker
	if json.Unmarshal(b, &rm) != nil || rm.State != "done" || rm.MemberID != fmt.Sprintf("%x", memberID) {
		return ""
	}
	return rm.FromMembers
}

// volumeOf reports the size and the free bytes (for an unprivileged
// writer) of the file system holding dir.
func volumeOf(dir string) (total, free int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Blocks) * int64(st.Bsize), int64(st.Bavail) * int64(st.Bsize), nil
}
