package snapshot

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/etcdclient"
	"github.com/vetcd/vetcd/internal/status"
	"github.com/vetcd/vetcd/internal/storage"
)

// ManifestSuffix names a snapshot's manifest object: NAME holds the data,
// NAME + ManifestSuffix the manifest. The manifest is written last, so a
// listed snapshot is always complete. The oci:// backend keys on it too,
// so it is defined once, in storage.
const ManifestSuffix = storage.ManifestSuffix

// Source is the cluster a snapshot is taken from.
type Source struct {
	Endpoints []string
	TLS       *tls.Config
}

// CreateOptions tunes Create.
type CreateOptions struct {
	Keys Keys
	// TempDir spools the plain db (default os.TempDir()).
	TempDir string
	// Progress, if set, is told how many plain bytes were read so far.
	Progress func(done int64)
	Logger   *zap.Logger
}

// Create takes a snapshot from the leader (or, without one, the member
// with the highest raft index), and stores it as name in b: the data
// first, the manifest last.
func Create(ctx context.Context, src Source, b storage.Backend, name string, opts CreateOptions) (Manifest, error) {
	var m Manifest
	if name == "" || strings.HasSuffix(name, ManifestSuffix) {
		return m, fmt.Errorf("snapshot: bad snapshot name %q", name)
	}
	recipients, err := opts.Keys.Recipients()
	if err != nil {
		return m, err
	}
	lg := opts.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	c, err := status.Get(ctx, src.Endpoints, src.TLS)
	if err != nil {
		return m, fmt.Errorf("snapshot: read the cluster: %w", err)
	}
	from, ok := pickSource(c)
	if !ok {
		return m, errors.New("snapshot: no healthy member to take the snapshot from")
	}
	cli, err := etcdclient.New([]string{from.ClientURL}, src.TLS, lg)
	if err != nil {
		return m, err
	}
	defer cli.Close()

	// One pass: etcd's stream is compressed, hashed and stored while a
	// copy is spooled to read the revision from once it is complete. The
	// spool is never synced; only the stored snapshot must be durable.
	tmp, err := os.CreateTemp(opts.TempDir, "vetcd-snapshot-*.db")
	if err != nil {
		return m, fmt.Errorf("snapshot: spool: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return m, fmt.Errorf("snapshot: from %s: %w", from.Name, err)
	}
	defer rc.Close()
	stream := io.TeeReader(&progressReader{r: rc, report: opts.Progress}, tmp)
	pr, pw := io.Pipe()
	type encoded struct {
		m   Manifest
		err error
	}
	done := make(chan encoded, 1)
	go func() {
		em, err := Encode(pw, stream, Encoding{Recipients: recipients, EtcdStream: true})
		pw.CloseWithError(err)
		done <- encoded{em, err}
	}()
	perr := b.Put(ctx, name, pr, -1)
	pr.CloseWithError(perr) // unblock the encoder if Put gave up
	enc := <-done
	if err := errors.Join(enc.err, perr); err != nil {
		_ = b.Delete(ctx, name) // no manifest was written: not a snapshot, but don't leave it
		return m, fmt.Errorf("snapshot: from %s to %s: %w", from.Name, name, err)
	}
	st, err := readDBInfo(tmp.Name())
	if err != nil {
		_ = b.Delete(ctx, name)
		return m, fmt.Errorf("snapshot: the db %s sent does not read back: %w", from.Name, err)
	}
	// The key count at the snapshot's revision; if that was compacted
	// meanwhile, the current count stands in.
	var keys int64
	if resp, err := cli.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(st.Revision)); err == nil {
		keys = resp.Count
	} else if resp, err := cli.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly()); err == nil {
		keys = resp.Count
	}
	m = enc.m
	m.EtcdVersion = st.Version
	m.ClusterID = c.ClusterID
	m.Revision = st.Revision
	m.KeyCount = keys
	m.Created = time.Now().UTC()
	m.Source = from.Name
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := b.Put(ctx, name+ManifestSuffix, strings.NewReader(string(mb)), int64(len(mb))); err != nil {
		return m, fmt.Errorf("snapshot: store manifest: %w", err)
	}
	return m, nil
}

// pickSource prefers the leader; without one, the healthy member with the
// highest raft index.
func pickSource(c status.Cluster) (status.Row, bool) {
	var best status.Row
	found := false
	for _, r := range c.Members {
		if r.ClientURL == "" || (!r.Healthy && r.RaftIndex == 0) {
			continue
		}
		if r.Role == status.RoleLeader && r.Healthy {
			return r, true
		}
		if r.Role != status.RoleLearner && (!found || r.RaftIndex > best.RaftIndex) {
			best, found = r, true
		}
	}
	return best, found
}

type progressReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.report != nil {
		p.report(p.n)
	}
	return n, err
}

// Entry is one listed snapshot.
type Entry struct {
	Name     string   `json:"name"`
	Stored   int64    `json:"storedBytes"`
	Manifest Manifest `json:"manifest"`
}

// List reads the manifests under prefix, newest first. A manifest that
// does not parse is reported as an error naming it, not skipped silently.
func List(ctx context.Context, b storage.Backend, prefix string) ([]Entry, error) {
	objs, err := b.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	sizes := map[string]int64{}
	for _, o := range objs {
		sizes[o.Name] = o.Size
	}
	var out []Entry
	var errs []error
	for _, o := range objs {
		if !strings.HasSuffix(o.Name, ManifestSuffix) {
			continue
		}
		name := strings.TrimSuffix(o.Name, ManifestSuffix)
		m, err := ReadManifest(ctx, b, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, Entry{Name: name, Stored: sizes[name], Manifest: m})
	}
	slices.SortFunc(out, func(a, b Entry) int { return b.Manifest.Created.Compare(a.Manifest.Created) })
	return out, errors.Join(errs...)
}

// ReadManifest reads and validates the manifest of snapshot name.
func ReadManifest(ctx context.Context, b storage.Backend, name string) (Manifest, error) {
	rc, _, err := b.Get(ctx, name+ManifestSuffix)
	if err != nil {
		return Manifest{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return Manifest{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	m, err := ParseManifest(raw)
	if err != nil {
		return m, fmt.Errorf("snapshot %s: %w", name, err)
	}
	return m, nil
}

// Delete removes a snapshot: the manifest first (so a half-deleted
// snapshot is never listed), then the data.
func Delete(ctx context.Context, b storage.Backend, name string) error {
	if err := b.Delete(ctx, name+ManifestSuffix); err != nil {
		return fmt.Errorf("snapshot %s: %w", name, err)
	}
	if err := b.Delete(ctx, name); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("snapshot %s: %w", name, err)
	}
	return nil
}
