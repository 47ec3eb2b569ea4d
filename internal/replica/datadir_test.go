package replica

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/plan"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// realDataDir runs a real one-member etcd in dir, writes keys and stops
// it, leaving genuine member data behind. It returns the member and
// cluster IDs.
func realDataDir(t *testing.T, dir string) (memberID, clusterID uint64) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zaptest.NewLogger(t).Named("etcd").WithOptions())
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd not ready")
	}
	memberID, clusterID = uint64(e.Server.MemberID()), uint64(e.Server.Cluster().ID())
	e.Close()
	return memberID, clusterID
}

func TestInspectData(t *testing.T) {
	src := t.TempDir()
	memberID, clusterID := realDataDir(t, src)
	lg := zaptest.NewLogger(t)

	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		want    plan.DataState
		problem string
	}{
		{name: "intact member data", damage: func(*testing.T, string) {}, want: plan.DataValid},
		{name: "whole data dir deleted (volume gone)", damage: func(t *testing.T, dir string) { must(t, os.RemoveAll(dir)) }, want: plan.DataEmpty},
		{name: "empty data dir", damage: func(t *testing.T, dir string) { must(t, os.RemoveAll(filepath.Join(dir, "member"))) }, want: plan.DataEmpty},
		{
			name:    "database file deleted",
			damage:  func(t *testing.T, dir string) { must(t, os.Remove(dbPath(dir))) },
			want:    plan.DataCorrupt,
			problem: "missing",
		},
		{
			name:    "database file truncated",
			damage:  func(t *testing.T, dir string) { must(t, os.Truncate(dbPath(dir), 1000)) },
			want:    plan.DataCorrupt,
			problem: "unreadable",
		},
		{
			name: "database meta pages overwritten",
			damage: func(t *testing.T, dir string) {
				f, err := os.OpenFile(dbPath(dir), os.O_RDWR, 0)
				must(t, err)
				defer f.Close()
				junk := []byte(strings.Repeat("\xde\xad\xbe\xef", 2048))
				_, err = f.WriteAt(junk, 0) // both meta pages (4 KiB pages)
				must(t, err)
			},
			want:    plan.DataCorrupt,
			problem: "unreadable",
		},
		{
			name:    "WAL deleted",
			damage:  func(t *testing.T, dir string) { must(t, os.RemoveAll(walDir(dir))) },
			want:    plan.DataCorrupt,
			problem: "WAL",
		},
		{
			name: "WAL overwritten with garbage",
			damage: func(t *testing.T, dir string) {
				files, err := filepath.Glob(filepath.Join(walDir(dir), "*.wal"))
				must(t, err)
				must(t, os.WriteFile(files[0], []byte(strings.Repeat("garbage!", 512)), 0o600))
			},
			want:    plan.DataCorrupt,
			problem: "WAL",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			must(t, os.CopyFS(dir, os.DirFS(src)))
			tc.damage(t, dir)
			got := InspectData(lg, dir)
			if got.State != tc.want {
				t.Fatalf("state %v (%s), want %v", got.State, got.Problem, tc.want)
			}
			if !strings.Contains(got.Problem, tc.problem) {
				t.Fatalf("problem %q does not mention %q", got.Problem, tc.problem)
			}
			if got.State == plan.DataValid {
				if got.MemberID != memberID || got.ClusterID != clusterID || got.AppliedIndex == 0 {
					t.Fatalf("got member %x cluster %x applied %d, want member %x cluster %x applied > 0",
						got.MemberID, got.ClusterID, got.AppliedIndex, memberID, clusterID)
				}
			}
		})
	}
}

func TestMoveAsideKeepsBoundedCopies(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "data")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var moved []string
	for i := 0; i < 5; i++ {
		must(t, os.MkdirAll(filepath.Join(dir, "member"), 0o700))
		must(t, os.WriteFile(filepath.Join(dir, "member", "mark"), []byte(fmt.Sprint(i)), 0o600))
		dst, err := moveAside(dir, "data is corrupt: db missing", asidePolicy{keep: 3}, now.Add(time.Duration(i)*time.Second))
		must(t, err)
		moved = append(moved, dst)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data dir still there: %v", err)
	}
	entries, err := os.ReadDir(parent)
	must(t, err)
	if len(entries) != 3 {
		t.Fatalf("%d copies kept, want 3: %v", len(entries), entries)
	}
	// The newest three survive, with their content.
	for i, dst := range moved[2:] {
		b, err := os.ReadFile(filepath.Join(dst, "member", "mark"))
		must(t, err)
		if string(b) != fmt.Sprint(i+2) {
			t.Fatalf("copy %s holds %q, want %d", dst, b, i+2)
		}
	}
	if !strings.Contains(moved[0], "data-is-corrupt-db-missing") {
		t.Fatalf("copy name %q does not carry the reason", moved[0])
	}
	// Nothing to move is not an error.
	if dst, err := moveAside(dir, "x", asidePolicy{keep: 3}, now); err != nil || dst != "" {
		t.Fatalf("moveAside of a missing dir = %q, %v", dst, err)
	}
}

// TestMoveAsideBoundedByBytes: copies are bounded by their bytes, a share
// of the volume, not only by their count, and go first when the volume
// runs short, newest last. The volume is played by a function (a real one
// of a few hundred bytes cannot be made here); the copies are real dirs.
func TestMoveAsideBoundedByBytes(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "data")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	free := int64(900)
	pol := asidePolicy{keep: 3, share: 0.25, minFree: 0.25, volume: func(string) (int64, int64, error) { return 1000, free, nil }}
	// move makes a data dir of 100 bytes and moves it aside; it returns
	// the names of the copies left, oldest first.
	var moved []string
	move := func(i int) []string {
		t.Helper()
		must(t, os.MkdirAll(filepath.Join(dir, "member"), 0o700))
		must(t, os.WriteFile(filepath.Join(dir, "member", "mark"), []byte(strings.Repeat(fmt.Sprint(i), 100)), 0o600))
		dst, err := moveAside(dir, "rejoin", pol, now.Add(time.Duration(i)*time.Second))
		must(t, err)
		moved = append(moved, filepath.Base(dst))
		entries, err := os.ReadDir(parent)
		must(t, err)
		var left []string
		for _, e := range entries {
			left = append(left, e.Name())
		}
		return left
	}
	move(0)
	move(1)
	// 25% of 1000 bytes holds two copies of 100 bytes; the count (3)
	// would allow a third.
	if left := move(2); !slices.Equal(left, moved[1:3]) {
		t.Fatalf("copies left %v, want the newest two %v (bytes bound: 250 of 1000)", left, moved[1:3])
	}
	// The volume runs short (100 bytes free, 250 wanted): copies go,
	// oldest first, until the volume would have 250 free; the newest stays.
	free = 100
	if left := move(3); !slices.Equal(left, moved[3:4]) {
		t.Fatalf("copies left %v, want only the newest %v (volume short)", left, moved[3:4])
	}
	// Shorter still: the newest copy goes too; the data dir is never
	// touched by the pruning (it was renamed first).
	free = 10
	if left := move(4); len(left) != 0 {
		t.Fatalf("copies left %v, want none (volume short: 10 bytes free)", left)
	}
}

// TestPruneAsideWhenVolumeShort: copies left from earlier moves are
// deleted, oldest first, once the volume runs short, with no new move;
// the data dir and unrelated entries are never touched.
func TestPruneAsideWhenVolumeShort(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "data")
	for _, name := range []string{"data", "data.aside-20260101T000000.000-rejoin", "data.aside-20260102T000000.000-restore", "left.json"} {
		must(t, os.MkdirAll(filepath.Join(parent, name), 0o700))
		must(t, os.WriteFile(filepath.Join(parent, name, "f"), []byte(strings.Repeat("x", 100)), 0o600))
	}
	free := int64(900)
	pol := asidePolicy{keep: 3, share: 0.25, minFree: 0.25, volume: func(string) (int64, int64, error) { return 1000, free, nil }}
	removed, why, err := pruneAside(dir, pol)
	must(t, err)
	if len(removed) != 0 || why != "" {
		t.Fatalf("volume with room: removed %v (%s), want none", removed, why)
	}
	free = 160 // 250 wanted: deleting the older copy (100) frees enough
	removed, why, err = pruneAside(dir, pol)
	must(t, err)
	if !slices.Equal(removed, []string{"data.aside-20260101T000000.000-rejoin"}) || !strings.Contains(why, "volume short") {
		t.Fatalf("volume short: removed %v (%s), want the older copy, volume short", removed, why)
	}
	entries, err := os.ReadDir(parent)
	must(t, err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"data", "data.aside-20260102T000000.000-restore", "left.json"}; !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
}

func TestMarkers(t *testing.T) {
	m := markers{dir: t.TempDir()}
	if m.left(0x42) {
		t.Fatal("left without a marker")
	}
	must(t, m.writeLeft(0x42, 0x99, time.Now()))
	if !m.left(0x42) || m.left(0x43) {
		t.Fatal("left marker must match the member ID only")
	}
	must(t, m.clearLeft())
	if m.left(0x42) {
		t.Fatal("left after clear")
	}
	must(t, m.writeRebuild(rebuildMarker{MemberID: "42", FromMembers: "fp", State: "started"}))
	if got := m.rebuiltFrom(0x42); got != "" {
		t.Fatalf("an unfinished rebuild counts as done: %q", got)
	}
	must(t, m.writeRebuild(rebuildMarker{MemberID: "42", FromMembers: "fp", State: "done"}))
	if got := m.rebuiltFrom(0x42); got != "fp" {
		t.Fatalf("rebuiltFrom = %q, want fp", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestWALLockedSeesEtcdsLock: a WAL file locked the way etcd locks it is
// reported, and an unlocked one is not.
func TestWALLockedSeesEtcdsLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	realDataDir(t, dir)
	if walLocked(dir) {
		t.Fatal("a closed member's WAL reported locked")
	}
	files, err := filepath.Glob(filepath.Join(walDir(dir), "*.wal"))
	must(t, err)
	l, err := fileutil.LockFile(files[len(files)-1], os.O_RDWR, fileutil.PrivateFileMode)
	must(t, err)
	defer l.Close()
	if !walLocked(dir) {
		t.Fatal("a WAL locked with etcd's fileutil is not reported locked")
	}
	if got := InspectData(zaptest.NewLogger(t), dir); !got.WALLocked || got.State != plan.DataValid {
		t.Fatalf("InspectData = %+v, want valid and locked", got)
	}
}

// TestInspectDataHashPoint checks InspectData against etcd itself: the
// revision and compaction it reports for stopped data must be the ones
// etcd's start-up corruption check hashes at when it starts on that data
// (and asks the peers to match), whether the data was never compacted,
// compacted, or compacted at a tombstone that the compaction removed.
func TestInspectDataHashPoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cport, pport := freePort(t), freePort(t)
	start := func() *embed.Etcd {
		t.Helper()
		cfg := embed.NewConfig()
		cfg.Dir = dir
		cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", cport))
		pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", pport))
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = cfg.Name + "=" + pu.String()
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zaptest.NewLogger(t).Named("etcd"))
		cfg.LogLevel = "error"
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			e.Close()
			t.Fatal("etcd not ready")
		}
		return e
	}
	// hashPoint is where etcd hashes its own data, as its start-up check does.
	hashPoint := func(e *embed.Etcd) plan.HashPoint {
		t.Helper()
		h, _, err := e.Server.KV().HashStorage().HashByRev(0)
		if err != nil {
			t.Fatal(err)
		}
		return plan.HashPoint{Revision: h.Revision, CompactRevision: h.CompactRevision}
	}
	steps := []struct {
		name string
		do   func(t *testing.T, cli *clientv3.Client)
	}{
		{name: "never compacted", do: func(t *testing.T, cli *clientv3.Client) {
			for i := range 20 {
				_, err := cli.Put(t.Context(), fmt.Sprintf("k%02d", i), "v")
				must(t, err)
			}
		}},
		{name: "compacted", do: func(t *testing.T, cli *clientv3.Client) {
			resp, err := cli.Put(t.Context(), "k00", "v2")
			must(t, err)
			_, err = cli.Compact(t.Context(), resp.Header.Revision-5, clientv3.WithCompactPhysical())
			must(t, err)
		}},
		{name: "compacted at a deleted key's tombstone", do: func(t *testing.T, cli *clientv3.Client) {
			_, err := cli.Put(t.Context(), "gone", "v")
			must(t, err)
			resp, err := cli.Delete(t.Context(), "gone")
			must(t, err)
			_, err = cli.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical())
			must(t, err)
		}},
	}
	for _, st := range steps {
		e := start()
		cli := v3client.New(e.Server)
		st.do(t, cli)
		cli.Close()
		e.Close()

		got := InspectData(zaptest.NewLogger(t), dir)
		if got.State != plan.DataValid {
			t.Fatalf("%s: state %v (%s)", st.name, got.State, got.Problem)
		}
		e = start()
		want := hashPoint(e)
		e.Close()
		if (plan.HashPoint{Revision: got.Revision, CompactRevision: got.CompactRevision}) != want {
			t.Fatalf("%s: InspectData says revision %d compacted to %d; etcd hashes at revision %d compacted to %d",
				st.name, got.Revision, got.CompactRevision, want.Revision, want.CompactRevision)
		}
		t.Logf("%s: revision %d, compaction %d, as etcd's start-up check sees it", st.name, want.Revision, want.CompactRevision)
	}
}
