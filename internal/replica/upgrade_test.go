package replica

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/testtools"
	"github.com/vetcd/vetcd/internal/topology"
)

// oldDataDir writes keys with history (overwrites, a delete, a key on a
// lease) through a stock etcd binary into dir and stops it. It returns
// the keys as the old etcd served them and its revision.
func oldDataDir(t *testing.T, bin, dir string) ([]*mvccpb.KeyValue, int64) {
	t.Helper()
	p := testtools.StartEtcdProcess(t, bin, dir)
	ctx := t.Context()
	for i := range 500 {
		if _, err := p.Client.Put(ctx, fmt.Sprintf("/registry/k/%04d", i), fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 500; i += 7 {
		if _, err := p.Client.Put(ctx, fmt.Sprintf("/registry/k/%04d", i), "again"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Client.Delete(ctx, "/registry/k/0001"); err != nil {
		t.Fatal(err)
	}
	lease, err := p.Client.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Client.Put(ctx, "/registry/events/e1", "x", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	resp, err := p.Client.Get(ctx, "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	p.Stop(t)
	return resp.Kvs, resp.Header.Revision
}

// testReplica is one in-process replica with mTLS on 127.0.0.1.
type testReplica struct {
	r    *Replica
	cfg  config.Config
	tls  pki.Files
	topo string
	// topology, when set, is the replica's topology source instead of
	// the static file topo.
	topology topology.Source
}

// self is the replica's identity as New derives it from the config.
func (tr *testReplica) self() topology.Replica {
	return topology.Replica{
		Name:       tr.cfg.Name,
		Ordinal:    tr.cfg.OrdinalValue(),
		ClientURL:  tr.cfg.ClientURL,
		PeerURL:    tr.cfg.PeerURL,
		AgentURL:   tr.cfg.AgentURL,
		MetricsURL: tr.cfg.MetricsURL,
	}
}

// passCounter counts the passes of a replica's loop: while its etcd does
// not run (the controller reads the desired count only on a leader), each
// pass reads it exactly once. A test that must see "a few more passes
// change nothing" awaits them instead of sleeping for some intervals.
type passCounter struct {
	topology.Source
	n atomic.Int64
}

func (p *passCounter) Desired(ctx context.Context) (int, error) {
	p.n.Add(1)
	return p.Source.Desired(ctx)
}

// newTestReplica prepares ordinal 0 of a one-replica cluster whose data
// dir is dir/vetcd-0/data. edit may change the config.
func newTestReplica(t *testing.T, dir string, edit func(*config.Config)) *testReplica {
	t.Helper()
	files, err := pki.Ensure(filepath.Join(dir, "pki"), pki.LocalOptions())
	if err != nil {
		t.Fatal(err)
	}
	u := func() string { return fmt.Sprintf("https://127.0.0.1:%d", freePort(t)) }
	self := topology.Replica{Name: "vetcd-0", Ordinal: 0, ClientURL: u(), PeerURL: u(), AgentURL: u()}
	topo := filepath.Join(dir, "topology.json")
	if err := topology.UpdateFile(topo, func(f *topology.File) error {
		f.Desired, f.Replicas = 1, []topology.Replica{self}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Name = self.Name
	cfg.DataDir = filepath.Join(dir, "vetcd-0", "data")
	cfg.ClientURL, cfg.PeerURL, cfg.AgentURL = self.ClientURL, self.PeerURL, self.AgentURL
	cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile = files.CA, files.MemberCert, files.MemberKey
	cfg.Topology.File = topo
	cfg.Controller.Interval = 200 * time.Millisecond
	if edit != nil {
		edit(&cfg)
	}
	return &testReplica{cfg: cfg, tls: files, topo: topo}
}

// start starts the replica; it is closed when the test ends.
func (tr *testReplica) start(t *testing.T) {
	t.Helper()
	r, err := New(tr.cfg, Options{Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Topology: tr.topology})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	tr.r = r
	t.Cleanup(func() { _ = r.Close() })
}

// ready waits for the replica to serve and opens a client.
func (tr *testReplica) ready(t *testing.T) *clientv3.Client {
	t.Helper()
	select {
	case <-tr.r.Ready():
	case <-time.After(90 * time.Second):
		t.Fatalf("replica not ready in 90s; last decision %+v", tr.decision())
	}
	tlsConfig, err := pki.ClientConfig(tr.tls.CA, tr.tls.ClientCert, tr.tls.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tr.cfg.ClientURL}, TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (tr *testReplica) decision() plan.ReplicaDecision {
	tr.r.mu.Lock()
	defer tr.r.mu.Unlock()
	return tr.r.last
}

// waitDecision waits until the replica's decision reason contains want.
func (tr *testReplica) waitDecision(t *testing.T, mode plan.Mode, want string) plan.ReplicaDecision {
	t.Helper()
	var d plan.ReplicaDecision
	testtools.WaitFor(t, 30*time.Second, fmt.Sprintf("decision %v with %q", mode, want), func(context.Context) error {
		if d = tr.decision(); d.Mode != mode || !strings.Contains(d.Reason, want) {
			return fmt.Errorf("decision %v (%s)", d.Mode, d.Reason)
		}
		return nil
	})
	return d
}

// treeSum hashes every file's path, mode and content under dir.
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v\n", strings.TrimPrefix(p, dir), info.Mode())
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestReadStorageVersion(t *testing.T) {
	t.Run("etcd 3.7 (this vetcd's)", func(t *testing.T) {
		dir := t.TempDir()
		embedDataDir(t, dir, true)
		if v, err := ReadStorageVersion(dir); err != nil || v != (plan.StorageVersion{Major: 3, Minor: 7}) {
			t.Fatalf("ReadStorageVersion = %v, %v; want 3.7", v, err)
		}
	})
	for _, tc := range []struct {
		tool string
		want plan.StorageVersion
	}{
		{"etcd36", plan.StorageVersion{Major: 3, Minor: 6}},
		{"etcd35", plan.StorageVersion{}},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			p := testtools.StartEtcdProcess(t, testtools.Path(t, tc.tool), dir)
			// etcd records the storage version a few seconds after the
			// cluster version is decided; wait for 3.6 to do so.
			if tc.want != (plan.StorageVersion{}) {
				testtools.WaitFor(t, 30*time.Second, tc.tool+" recorded its storage version", func(ctx context.Context) error {
					st, err := p.Client.Status(ctx, p.ClientURL)
					if err != nil {
						return err
					}
					if st.StorageVersion == "" {
						return errors.New("status reports no storage version")
					}
					return nil
				})
			}
			p.Stop(t)
			if v, err := ReadStorageVersion(dir); err != nil || v != tc.want {
				t.Fatalf("ReadStorageVersion = %v, %v; want %v", v, err, tc.want)
			}
		})
	}
	if _, err := ReadStorageVersion(t.TempDir()); err == nil {
		t.Fatal("ReadStorageVersion of an empty dir: no error")
	}
}

// embedDataDir leaves real etcd 3.7 member data in dir; with waitVersion
// it stops only after etcd recorded its storage version.
func embedDataDir(t *testing.T, dir string, waitVersion bool) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ListenMetricsUrls = nil
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	// StorageVersion reports 3.5 until etcd recorded its own.
	if waitVersion {
		testtools.WaitFor(t, 30*time.Second, "etcd recorded its storage version", func(context.Context) error {
			if v := e.Server.StorageVersion(); v == nil || v.Minor < 6 {
				return fmt.Errorf("storage version %v", v)
			}
			return nil
		})
	}
}

// TestUpgradeEtcd35DataDir: a real etcd 3.5 data dir is never started in
// place; the replica upgrades it by snapshot and restore with every key
// and revision, keeps the old dir byte for byte, and on its next start
// runs the upgraded data without upgrading again.
func TestUpgradeEtcd35DataDir(t *testing.T) {
	bin := testtools.Path(t, "etcd35")
	dir := t.TempDir()
	tr := newTestReplica(t, dir, nil)
	want, wantRev := oldDataDir(t, bin, tr.cfg.DataDir)
	if v, err := ReadStorageVersion(tr.cfg.DataDir); err != nil || v != (plan.StorageVersion{}) {
		t.Fatalf("etcd 3.5 data has storage version %v, %v", v, err)
	}
	oldSum := treeSum(t, tr.cfg.DataDir)

	tr.start(t)
	cli := tr.ready(t)
	ctx := t.Context()
	got, err := cli.Get(ctx, "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Revision != wantRev {
		t.Fatalf("revision %d after the upgrade, %d before", got.Header.Revision, wantRev)
	}
	if len(got.Kvs) != len(want) {
		t.Fatalf("%d keys after the upgrade, %d before", len(got.Kvs), len(want))
	}
	for i, w := range want {
		g := got.Kvs[i]
		if string(g.Key) != string(w.Key) || string(g.Value) != string(w.Value) || g.ModRevision != w.ModRevision ||
			g.CreateRevision != w.CreateRevision || g.Version != w.Version || g.Lease != w.Lease {
			t.Fatalf("key %s: %+v after the upgrade, %+v before", w.Key, g, w)
		}
	}
	if _, err := cli.TimeToLive(ctx, clientv3.LeaseID(want[len(want)-1].Lease)); err != nil && want[len(want)-1].Lease != 0 {
		t.Fatalf("lease of the 3.5 data lost: %v", err)
	}
	asides, _ := filepath.Glob(tr.cfg.DataDir + ".pre-upgrade-*")
	if len(asides) != 1 {
		t.Fatalf("old data dirs kept: %v, want one", asides)
	}
	if treeSum(t, asides[0]) != oldSum {
		t.Fatal("the old data dir was changed")
	}
	record, err := topology.NewStatic(tr.topo, topology.Replica{}).ClusterRecord(ctx)
	if rec, _, perr := plan.ParseRecord(record); err != nil || perr != nil || rec.Made == nil || rec.Made.How != plan.OriginUpgraded || !strings.Contains(rec.Made.Note, "old data kept in") {
		t.Fatalf("cluster record %q, %v", record, err)
	}
	if _, err := cli.Put(ctx, "/registry/after", "x"); err != nil {
		t.Fatal(err)
	}

	// The next start runs the upgraded data in place.
	_ = tr.r.Close()
	if v, err := ReadStorageVersion(tr.cfg.DataDir); err != nil || !(v == plan.StorageVersion{} || v == plan.StorageVersion{Major: 3, Minor: 7}) {
		t.Fatalf("storage version after the upgrade: %v, %v", v, err)
	}
	tr2 := newTestReplica(t, dir, nil)
	tr2.cfg = tr.cfg
	tr2.start(t)
	cli2 := tr2.ready(t)
	resp, err := cli2.Get(ctx, "/registry/after")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("after restart: %v %v", resp, err)
	}
	if asides, _ := filepath.Glob(tr.cfg.DataDir + ".pre-upgrade-*"); len(asides) != 1 {
		t.Fatalf("upgraded twice: %v", asides)
	}
}

// TestStorageGateRefuses: data newer than vetcd's etcd, and 3.5 data when
// the config refuses upgrades, are refused with the reason, and nothing on
// disk changes.
func TestStorageGateRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dataDir string)
		edit  func(*config.Config)
		want  string
	}{
		{
			name: "downgrade: etcd 3.8 data",
			setup: func(t *testing.T, dataDir string) {
				embedDataDir(t, dataDir, true)
				setStorageVersion(t, dataDir, "3.8.0")
			},
			want: "newer than this vetcd's etcd 3.7: refusing to start on it (a downgrade)",
		},
		{
			name:  "etcd 3.5 data with upgrade.oldData: refuse",
			setup: func(t *testing.T, dataDir string) { oldDataDir(t, testtools.Path(t, "etcd35"), dataDir) },
			edit:  func(c *config.Config) { c.Upgrade.OldData = config.UpgradeRefuse },
			want:  "upgrade.oldData is refuse",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tr := newTestReplica(t, dir, tc.edit)
			tc.setup(t, tr.cfg.DataDir)
			before := treeSum(t, filepath.Dir(tr.cfg.DataDir))
			passes := &passCounter{Source: topology.NewStatic(tr.cfg.Topology.File, tr.self())}
			tr.topology = passes
			tr.start(t)
			tr.waitDecision(t, plan.Wait, tc.want)
			// A few more passes of the loop must not change anything either.
			seen := passes.n.Load()
			testtools.WaitFor(t, 30*time.Second, "three more passes of the replica's loop", func(context.Context) error {
				if n := passes.n.Load() - seen; n < 3 {
					return fmt.Errorf("%d passes since the refusal", n)
				}
				return nil
			})
			tr.waitDecision(t, plan.Wait, tc.want)
			_ = tr.r.Close()
			if after := treeSum(t, filepath.Dir(tr.cfg.DataDir)); after != before {
				t.Fatal("refused data changed on disk")
			}
		})
	}
}

// setStorageVersion writes a storage version into stopped data, as a
// newer etcd would have.
func setStorageVersion(t *testing.T, dataDir, v string) {
	t.Helper()
	db, err := bolt.Open(dbPath(dataDir), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("storageVersion"), []byte(v)) }); err != nil {
		t.Fatal(err)
	}
}
