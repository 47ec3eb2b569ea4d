package snapshot

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"

	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/storage"
)

// RevisionBump is how far a restore moves the revision forward. It must
// exceed the writes made after the snapshot was taken, so that Kubernetes
// resourceVersions never go backwards; with the revisions marked
// compacted, watchers relist instead of seeing time run backwards.
const RevisionBump = 1_000_000_000

// Fetch downloads snapshot name from b, decrypts and decompresses it, and
// verifies its size and checksum against the manifest. The db is staged in
// memory where it fits comfortably, else in a hidden file in dir (see
// stage). The caller closes the DB; on any error nothing is left behind.
func Fetch(ctx context.Context, b storage.Backend, name string, keys Keys, dir string) (*DB, Manifest, error) {
	return fetch(ctx, b, name, keys, dir, true)
}

// fetch is Fetch; memory false stages on disk whatever the size.
func fetch(ctx context.Context, b storage.Backend, name string, keys Keys, dir string, memory bool) (*DB, Manifest, error) {
	m, err := ReadManifest(ctx, b, name)
	if err != nil {
		return nil, m, err
	}
	ids, err := keys.Identities()
	if err != nil {
		return nil, m, err
	}
	rc, _, err := b.Get(ctx, name)
	if err != nil {
		return nil, m, fmt.Errorf("snapshot %s: %w", name, err)
	}
	defer rc.Close()
	plain, err := Decode(rc, m, Decoding{Identities: ids})
	if err != nil {
		return nil, m, fmt.Errorf("snapshot %s: %w", name, err)
	}
	defer plain.Close()
	f, path, inMemory, err := stage(dir, m.Size, memory)
	if err != nil {
		return nil, m, fmt.Errorf("snapshot %s: %w", name, err)
	}
	db := &DB{Path: path, InMemory: inMemory, f: f}
	if _, err := io.Copy(f, plain); err != nil {
		db.Close()
		return nil, m, fmt.Errorf("snapshot %s: %w", name, err)
	}
	st, err := readDBInfo(db.Path)
	if err != nil {
		db.Close()
		return nil, m, fmt.Errorf("snapshot %s: the db does not read: %w", name, err)
	}
	db.Revision = st.Revision
	return db, m, nil
}

// Member names the one member a restored cluster starts with.
type Member struct {
	Name    string
	PeerURL string
	DataDir string
	// Bump is how far the revision moves forward (0: RevisionBump). A
	// cluster restored before passes more (plan.NextBump), so that the
	// revision never goes below one it already served.
	Bump int64
}

// RestoreNewCluster restores db into m.DataDir (which must not exist) as
// the only member of a new cluster, with the revision bumped by m.Bump
// (default RevisionBump) and the old revisions marked compacted. Fetch verified the
// db's sha256 against the manifest (and Create verified etcd's own
// checksum when it took it), so etcdutl's second pass over it is skipped.
func RestoreNewCluster(lg *zap.Logger, db *DB, m Member) error {
	if lg == nil {
		lg = zap.NewNop()
	}
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	err := etcdutl.NewV3(lg).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        db.Path,
		Name:                m.Name,
		OutputDataDir:       m.DataDir,
		PeerURLs:            []string{m.PeerURL},
		InitialCluster:      m.Name + "=" + m.PeerURL,
		InitialClusterToken: "vetcd-restore-" + hex.EncodeToString(token),
		RevisionBump:        uint64(cmp.Or(m.Bump, RevisionBump)),
		MarkCompacted:       true,
		SkipHashCheck:       true,
	})
	if err != nil {
		return fmt.Errorf("restore into %s: %w", m.DataDir, err)
	}
	return nil
}
