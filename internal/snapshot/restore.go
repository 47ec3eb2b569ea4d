package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/storage"
)

// RevisionBump is how far a restore moves the revision forward. It must
// exceed the writes made after the snapshot was taken, so that Kubernetes
// resourceVersions never go backwards; with the revisions marked
// compacted, watchers relist instead of seeing time run backwards.
const RevisionBump = 1_000_000_000

// Fetch downloads snapshot name from b, decrypts and decompresses it into a
// new file in dir, and verifies its size and checksum against the
// manifest. It returns the file's path (the caller removes it) and the
// manifest; on any error nothing is left behind.
func Fetch(ctx context.Context, b storage.Backend, name string, keys Keys, dir string) (string, Manifest, error) {
	m, err := ReadManifest(ctx, b, name)
	if err != nil {
		return "", m, err
	}
	ids, err := keys.Identities()
	if err != nil {
		return "", m, err
	}
	rc, _, err := b.Get(ctx, name)
	if err != nil {
		return "", m, fmt.Errorf("snapshot %s: %w", name, err)
	}
	defer rc.Close()
	plain, err := Decode(rc, m, Decoding{Identities: ids})
	if err != nil {
		return "", m, fmt.Errorf("snapshot %s: %w", name, err)
	}
	defer plain.Close()
	tmp, err := os.CreateTemp(dir, ".restore-*.db")
	if err != nil {
		return "", m, fmt.Errorf("snapshot %s: %w", name, err)
	}
	_, err = io.Copy(tmp, plain)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", m, fmt.Errorf("snapshot %s: %w", name, err)
	}
	return tmp.Name(), m, nil
}

// Member names the one member a restored cluster starts with.
type Member struct {
	Name    string
	PeerURL string
	DataDir string
}

// RestoreNewCluster restores the db into m.DataDir (which must not exist)
// as the only member of a new cluster, with the revision bumped by
// RevisionBump and the old revisions marked compacted. It returns the
// snapshot's revision. The db must come from Fetch, which verified its
// sha256 against the manifest (and Create verified etcd's own checksum
// when it took it), so etcdutl's second pass over it is skipped.
func RestoreNewCluster(lg *zap.Logger, db string, m Member) (int64, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	st, err := readDBInfo(db)
	if err != nil {
		return 0, fmt.Errorf("the snapshot db does not read: %w", err)
	}
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	err = etcdutl.NewV3(lg).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        db,
		Name:                m.Name,
		OutputDataDir:       m.DataDir,
		PeerURLs:            []string{m.PeerURL},
		InitialCluster:      m.Name + "=" + m.PeerURL,
		InitialClusterToken: "vetcd-restore-" + hex.EncodeToString(token),
		RevisionBump:        RevisionBump,
		MarkCompacted:       true,
		SkipHashCheck:       true,
	})
	if err != nil {
		return 0, fmt.Errorf("restore into %s: %w", m.DataDir, err)
	}
	return st.Revision, nil
}
