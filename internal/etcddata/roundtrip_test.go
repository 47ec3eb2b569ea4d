package etcddata

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/testtools"
)

// member is a one-member etcd of some minor version running on a data
// dir, with a client.
type member struct {
	cli  *clientv3.Client
	url  string
	stop func()
}

// minorVersions are the etcd minors whose data vetcd reads (the sources
// of a migration, the data dirs of an in-place upgrade: 3.5 and 3.6 as
// stock binaries from `make test-tools`) and writes (3.7, linked in).
var minorVersions = []struct {
	name string
	// storageVersion is what the minor records in the meta bucket.
	storageVersion string
	start          func(t *testing.T, dir string) member
}{
	{"3.5", "", processMember("etcd35")},
	{"3.6", "3.6.0", processMember("etcd36")},
	{"3.7", "3.7.0", embeddedMember},
}

func processMember(tool string) func(t *testing.T, dir string) member {
	return func(t *testing.T, dir string) member {
		p := testtools.StartEtcdProcess(t, testtools.Path(t, tool), dir)
		return member{cli: p.Client, url: p.ClientURL, stop: func() { p.Stop(t) }}
	}
}

// embeddedMember runs the etcd linked into vetcd.
func embeddedMember(t *testing.T, dir string) member {
	t.Helper()
	_, cu, stop := testtools.StartEmbeddedStop(t, dir)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu}, Logger: zap.NewNop(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return member{cli: cli, url: cu, stop: func() { cli.Close(); stop() }}
}

// TestRoundTripPerMinor checks the package against the real etcd of every
// supported minor, both ways. A real etcd writes keys, a lease, a delete
// and a compaction, and stops; the package must read what that etcd
// reported (revision, compaction, consistent index, storage version,
// lease, keys). The package then loads new keys with a new lease at the
// next revision; the same etcd restarts on the data and must serve them
// with that revision and lease, and keep its own keys and compaction.
func TestRoundTripPerMinor(t *testing.T) {
	for _, mv := range minorVersions {
		t.Run(mv.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			db := filepath.Join(dir, "member", "snap", "db")
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()

			// etcd writes.
			m := mv.start(t, dir)
			for i := range 5 {
				must(t, put(ctx, m.cli, fmt.Sprintf("/etcd/k%d", i), fmt.Sprintf("v%d", i)))
			}
			lease, err := m.cli.Grant(ctx, 600)
			must(t, err)
			_, err = m.cli.Put(ctx, "/etcd/leased", "l", clientv3.WithLease(lease.ID))
			must(t, err)
			del, err := m.cli.Delete(ctx, "/etcd/k0")
			must(t, err)
			compactRev := del.Header.Revision
			_, err = m.cli.Compact(ctx, compactRev, clientv3.WithCompactPhysical())
			must(t, err)
			last, err := m.cli.Put(ctx, "/etcd/k1", "v1b")
			must(t, err)
			rev := last.Header.Revision
			// 3.6 and newer record their storage version a few seconds
			// after the cluster version is decided.
			var st *clientv3.StatusResponse
			testtools.WaitFor(t, 30*time.Second, "etcd "+mv.name+" records its storage version", func(ctx context.Context) error {
				st, err = m.cli.Status(ctx, m.url)
				if err != nil {
					return err
				}
				if st.StorageVersion != mv.storageVersion {
					return fmt.Errorf("storage version %q, want %q", st.StorageVersion, mv.storageVersion)
				}
				return nil
			})
			m.stop()

			// The package reads.
			var ttls = map[int64]int64{}
			live := map[string]string{}
			err = View(db, func(r *Reader) error {
				index, _, err := r.ConsistentIndex()
				must(t, err)
				if index < st.RaftAppliedIndex || index == 0 {
					t.Errorf("consistent index %d, etcd reported applied index %d before it stopped", index, st.RaftAppliedIndex)
				}
				c, err := r.Compaction()
				must(t, err)
				if want := (Compaction{Scheduled: compactRev, Finished: compactRev, ScheduledOK: true, FinishedOK: true}); c != want {
					t.Errorf("compaction %+v, want %+v", c, want)
				}
				v, err := r.StorageVersion()
				must(t, err)
				if got := fmt.Sprint(v); (v == nil) != (mv.storageVersion == "") || (v != nil && got != mv.storageVersion) {
					t.Errorf("storage version %v, want %q", v, mv.storageVersion)
				}
				newest, err := r.Revision()
				must(t, err)
				if newest.Main != rev {
					t.Errorf("revision %d, etcd's last put was %d", newest.Main, rev)
				}
				ls, err := r.Leases()
				must(t, err)
				for _, l := range ls {
					ttls[l.ID] = l.TTL
				}
				return r.ForEach(func(rv Rev, kv KV) error {
					if rv.Tombstone {
						delete(live, string(kv.Key))
					} else {
						live[string(kv.Key)] = string(kv.Value)
					}
					return nil
				})
			})
			must(t, err)
			if ttls[int64(lease.ID)] != 600 {
				t.Errorf("leases %v, want %x with TTL 600", ttls, lease.ID)
			}
			want := map[string]string{"/etcd/k1": "v1b", "/etcd/k2": "v2", "/etcd/k3": "v3", "/etcd/k4": "v4", "/etcd/leased": "l"}
			if fmt.Sprint(live) != fmt.Sprint(want) {
				t.Errorf("keys read %v, want %v", live, want)
			}

			// The package writes.
			ld, err := OpenLoader(db)
			must(t, err)
			const ourLease = 0x7e57
			loaded := rev + 1
			err = ld.Batch(func(b *Batch) error {
				must(t, b.PutLease(&leasepb.Lease{ID: ourLease, TTL: 900}))
				for i := range 3 {
					kv := &mvccpb.KeyValue{Key: fmt.Appendf(nil, "/vetcd/k%d", i), Value: fmt.Appendf(nil, "w%d", i),
						CreateRevision: loaded, ModRevision: loaded, Version: 1}
					if i == 2 {
						kv.Lease = ourLease
					}
					must(t, b.Put(mvcc.Revision{Main: loaded, Sub: int64(i)}, kv))
				}
				return nil
			})
			must(t, err)
			must(t, ld.Close())

			// etcd reads.
			m = mv.start(t, dir)
			defer m.stop()
			resp, err := m.cli.Get(ctx, "/", clientv3.WithPrefix())
			must(t, err)
			got := map[string]string{}
			for _, kv := range resp.Kvs {
				got[string(kv.Key)] = string(kv.Value)
				if string(kv.Key) >= "/vetcd/" && (kv.ModRevision != loaded || kv.CreateRevision != loaded) {
					t.Errorf("%s at revision %d (created %d), loaded at %d", kv.Key, kv.ModRevision, kv.CreateRevision, loaded)
				}
			}
			want["/vetcd/k0"], want["/vetcd/k1"], want["/vetcd/k2"] = "w0", "w1", "w2"
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("etcd %s serves %v, want %v", mv.name, got, want)
			}
			if resp.Header.Revision != loaded {
				t.Errorf("etcd %s is at revision %d, want the loaded %d", mv.name, resp.Header.Revision, loaded)
			}
			ttl, err := m.cli.TimeToLive(ctx, ourLease, clientv3.WithAttachedKeys())
			must(t, err)
			if ttl.GrantedTTL != 900 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "/vetcd/k2" {
				t.Errorf("lease %x: granted TTL %d, keys %q; want 900 and /vetcd/k2", ourLease, ttl.GrantedTTL, ttl.Keys)
			}
			if _, err := m.cli.Get(ctx, "/etcd/k1", clientv3.WithRev(compactRev-1)); err == nil {
				t.Errorf("etcd %s serves revision %d, below the compaction at %d", mv.name, compactRev-1, compactRev)
			}
			if st, err := m.cli.Status(ctx, m.url); err != nil || st.StorageVersion != mv.storageVersion {
				t.Errorf("etcd %s restarted with storage version %q (%v), want %q", mv.name, st.StorageVersion, err, mv.storageVersion)
			}
		})
	}
}

func put(ctx context.Context, cli *clientv3.Client, k, v string) error {
	_, err := cli.Put(ctx, k, v)
	return err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
