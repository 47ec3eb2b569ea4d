package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
)

// TestDecodeKV: the verifier's own decoder reads what proto.Marshal
// writes for etcd's KeyValue, including empty and missing fields.
func TestDecodeKV(t *testing.T) {
	tests := []struct {
		name string
		kv   *mvccpb.KeyValue
	}{
		{"key and value", &mvccpb.KeyValue{Key: []byte("/registry/a"), Value: []byte("k8s\x00v"), CreateRevision: 2, ModRevision: 2, Version: 1}},
		{"lease", &mvccpb.KeyValue{Key: []byte("/registry/e"), Value: []byte("x"), ModRevision: 9, Lease: leaseID(3600)}},
		{"empty value", &mvccpb.KeyValue{Key: []byte("/registry/empty"), ModRevision: 3}},
		{"empty record (revision bump)", &mvccpb.KeyValue{}},
		{"large value", &mvccpb.KeyValue{Key: []byte("k"), Value: []byte(strings.Repeat("v", 1<<20))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(tc.kv)
			if err != nil {
				t.Fatal(err)
			}
			key, value, lease, err := decodeKV(b)
			if err != nil {
				t.Fatal(err)
			}
			if string(key) != string(tc.kv.Key) || string(value) != string(tc.kv.Value) || lease != tc.kv.Lease {
				t.Errorf("decoded (%q, %d bytes, %x), want (%q, %d bytes, %x)", key, len(value), lease, tc.kv.Key, len(tc.kv.Value), tc.kv.Lease)
			}
		})
	}
	if _, _, _, err := decodeKV([]byte{0x0a, 0x05, 'a'}); err == nil {
		t.Error("a truncated record decoded without error")
	}
}

// TestStageRoundTrip writes batches with leases and a resume in between,
// and reads the file back the way the verification does.
func TestStageRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stage.db")
	st, err := openStageDB(path)
	if err != nil {
		t.Fatal(err)
	}
	entries := []Entry{
		{Key: []byte("/registry/a"), Value: []byte("1")},
		{Key: []byte("/registry/b"), Value: []byte("22"), TTL: 3600},
		{Key: []byte("/registry/c"), Value: nil},
		{Key: []byte("/registry/d"), Value: []byte("4444"), TTL: 60},
		{Key: []byte("/registry/e"), Value: []byte("5"), TTL: 3600},
	}
	m := Marker{State: StateCopying, Source: "/src", SourceRevision: 99, Started: time.Now().UTC()}
	m.After = "/registry/b"
	if err := st.commit(entries[:2], m, false); err != nil {
		t.Fatal(err)
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}

	// A new run finds the marker, the revision and the lease.
	st, err = openStageDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	got, ok, err := st.Marker()
	if err != nil || !ok || got.After != "/registry/b" || got.SourceRevision != 99 {
		t.Fatalf("marker after reopen: %+v %v %v", got, ok, err)
	}
	if st.rev != 2 || !st.leases[leaseID(3600)] {
		t.Fatalf("reopened at revision %d with leases %v, want revision 2 and the 3600 s lease", st.rev, st.leases)
	}
	m.After = "/registry/e"
	if err := st.commit(entries[2:], m, false); err != nil {
		t.Fatal(err)
	}
	m.State, m.After = StateDone, ""
	if err := st.commit(nil, m, true); err != nil {
		t.Fatal(err)
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}

	c, err := readDB(path)
	if err != nil {
		t.Fatal(err)
	}
	h := newHasher()
	for _, e := range entries {
		h.add(e.Key, e.Value, e.TTL)
	}
	if want := h.stats(); c.Stats != want {
		t.Errorf("read back %+v, wrote %+v", c.Stats, want)
	}
	if !c.MarkerOK || c.Marker.State != StateDone || c.Revision != 4 {
		t.Errorf("marker %+v (found %v), revision %d; want done at revision 4", c.Marker, c.MarkerOK, c.Revision)
	}
}

// TestCheckSeeded: each way the restored data can differ from the source
// is refused.
func TestCheckSeeded(t *testing.T) {
	m := Marker{State: StateDone, Keys: 2, Bytes: 10, SHA256: "aa"}
	good := dbContent{Stats: Stats{Keys: 2, Bytes: 10, SHA256: "aa"}, Marker: m, MarkerOK: true, Revision: 101, Compacted: 101}
	tests := []struct {
		name   string
		change func(*dbContent)
		want   string
	}{
		{"matches", func(*dbContent) {}, ""},
		{"a key missing", func(c *dbContent) { c.Keys, c.SHA256 = 1, "bb" }, "1 keys"},
		{"a value changed", func(c *dbContent) { c.SHA256 = "bb" }, "sha256 bb"},
		{"no marker", func(c *dbContent) { c.MarkerOK = false }, "marker"},
		{"marker not done", func(c *dbContent) { c.Marker.State = StateCopying }, "marker"},
		{"revision not bumped", func(c *dbContent) { c.Revision = 50 }, "revision is 50"},
		{"not compacted", func(c *dbContent) { c.Compacted = 0 }, "compacted at 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.change(&c)
			err := checkSeeded(c, m, 101, 100)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// TestSeedStartsOverOnADamagedWorkDir: an interrupted seed's backend file
// that a power loss damaged (without fsync) is not trusted: the next run
// starts over, or its verification refuses the data and the run after
// starts over; either way no data dir appears until the data is exactly
// kine's.
func TestSeedStartsOverOnADamagedWorkDir(t *testing.T) {
	src, live, kineRev := kineDB(t)
	tests := []struct {
		name   string
		damage func(t *testing.T, db string)
	}{
		{"overwritten", func(t *testing.T, db string) {
			if err := os.WriteFile(db, []byte(strings.Repeat("torn page ", 2000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"cut short", func(t *testing.T, db string) {
			fi, err := os.Stat(db)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(db, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"pages garbled", func(t *testing.T, db string) {
			b, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			for i := 4 * 4096; i < len(b); i += 4096 {
				for j := i + 16; j < i+4096 && j < len(b); j++ {
					b[j] = byte(j * 13)
				}
			}
			if err := os.WriteFile(db, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copied := filepath.Join(dir, "state.db")
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(copied, b, 0o600); err != nil {
				t.Fatal(err)
			}
			peer := testURL(t)
			opts := SeedOptions{
				Options: Options{Source: copied, SourceOptions: SourceOptions{Quiet: -1}, Logger: zaptest.NewLogger(t), batchOps: 16},
				DataDir: filepath.Join(dir, "data"), WorkDir: filepath.Join(dir, "work"), Name: "m0", PeerURL: peer, Token: "t",
			}
			crashed := opts
			crashed.Hook = func(n int) error {
				if n == 10 {
					return errCrash
				}
				return nil
			}
			if _, err := Seed(context.Background(), crashed); !errors.Is(err, errCrash) {
				t.Fatalf("crashed seed: %v", err)
			}
			tc.damage(t, filepath.Join(opts.WorkDir, "restored", "member", "snap", "db"))
			res, err := Seed(context.Background(), opts)
			if err != nil {
				if !strings.Contains(err.Error(), "verify") {
					t.Fatalf("the run after the damage: %v, want success or a verification failure", err)
				}
				if _, serr := os.Stat(opts.DataDir); !errors.Is(serr, fs.ErrNotExist) {
					t.Fatalf("a failed verification left a data dir: %v", serr)
				}
				if res, err = Seed(context.Background(), opts); err != nil {
					t.Fatalf("the run after a failed verification: %v", err)
				}
			}
			if res.Keys != int64(len(live)) {
				t.Errorf("result %+v; want %d keys", res, len(live))
			}
			requireMigrated(t, startMember(t, opts.DataDir, "m0", peer), live, kineRev)
		})
	}
}

// TestSeedRefusesReservedKeys: a source key under vetcd's marker prefix
// is bad input: an error naming it, the source untouched, no work dir or
// data dir left behind.
func TestSeedRefusesReservedKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	// kine's table written directly (no kine process that might still
	// checkpoint its WAL into the file after it stopped).
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created INTEGER, deleted INTEGER,
			create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value BLOB, old_value BLOB)`,
		`CREATE INDEX kine_name_index ON kine (name)`,
		`INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) VALUES
			('/registry/pods/a', 1, 0, 0, 0, 0, 'v'), ('` + MarkerPrefix + `sqlite-forged', 1, 0, 0, 0, 0, 'v')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, path)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = Seed(ctx, SeedOptions{
		Options: Options{Source: path, SourceOptions: SourceOptions{Quiet: -1}},
		DataDir: filepath.Join(dir, "data"), WorkDir: filepath.Join(dir, "work"), Name: "m0", PeerURL: "http://127.0.0.1:1",
	})
	if err == nil || !strings.Contains(err.Error(), MarkerPrefix) {
		t.Fatalf("got %v, want a refusal naming %s", err, MarkerPrefix)
	}
	for _, p := range []string{filepath.Join(dir, "data"), filepath.Join(dir, "work")} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	if fileSum(t, path) != before {
		t.Error("the refused seed changed the source")
	}
	for _, suffix := range []string{"-wal", "-shm", MigratedSuffix} {
		if _, err := os.Stat(path + suffix); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s%s appeared: %v", path, suffix, err)
		}
	}
}

// TestReadDBOutOfOrder: a backend file whose keys do not come in key
// order, with an overwrite and a tombstone (not what Seed writes, but
// what etcd may), reads back as etcd would serve it.
func TestReadDBOutOfOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st, err := openStageDB(path)
	if err != nil {
		t.Fatal(err)
	}
	m := Marker{State: StateCopying}
	for _, b := range [][]Entry{
		{{Key: []byte("/b"), Value: []byte("b1")}, {Key: []byte("/a"), Value: []byte("a1"), TTL: 60}},
		{{Key: []byte("/c"), Value: []byte("c1")}, {Key: []byte("/a"), Value: []byte("a2"), TTL: 60}},
	} {
		if err := st.commit(b, m, false); err != nil {
			t.Fatal(err)
		}
	}
	// A tombstone for /c at the next revision, as etcd writes a delete.
	err = st.db.Update(func(tx *bolt.Tx) error {
		kv, err := proto.Marshal(&mvccpb.KeyValue{Key: []byte("/c")})
		if err != nil {
			return err
		}
		rev := mvcc.RevToBytes(mvcc.Revision{Main: st.rev + 1}, mvcc.NewRevBytes())
		return tx.Bucket(schema.Key.Name()).Put(append(rev, 't'), kv)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	c, err := readDB(path)
	if err != nil {
		t.Fatal(err)
	}
	h := newHasher()
	h.add([]byte("/a"), []byte("a2"), 60)
	h.add([]byte("/b"), []byte("b1"), 0)
	if want := h.stats(); c.Stats != want {
		t.Errorf("read %+v, want %+v (/a overwritten, /c deleted)", c.Stats, want)
	}
}

// TestSeedVerifiesBeforeTheRename: a value changed in the member's
// backend file after it was written (a bad disk, a bug) fails the
// verification; no data dir appears, the source stays where it was, and
// the next run starts over and gets exactly kine's data.
func TestSeedVerifiesBeforeTheRename(t *testing.T) {
	src, live, kineRev := kineDB(t)
	dir := t.TempDir()
	peer := testURL(t)
	opts := SeedOptions{
		Options: Options{Source: src, SourceOptions: SourceOptions{Quiet: -1}, Logger: zaptest.NewLogger(t)},
		DataDir: filepath.Join(dir, "data"), WorkDir: filepath.Join(dir, "work"), Name: "m0", PeerURL: peer, Token: "t",
	}
	var victim string
	for _, w := range live {
		if len(w.Value) > 40 {
			victim = w.Value
			break
		}
	}
	var written int64
	tampered := opts
	tampered.Progress = func(keys, _ int64) { written = keys }
	tampered.Hook = func(int) error {
		if written != int64(len(live)) {
			return nil
		}
		db := filepath.Join(opts.WorkDir, "restored", "member", "snap", "db")
		b, err := os.ReadFile(db)
		if err != nil {
			return err
		}
		i := bytes.Index(b, []byte(victim))
		if i < 0 {
			return errors.New("the value is not in the backend file")
		}
		f, err := os.OpenFile(db, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteAt([]byte{victim[len(victim)-1] ^ 1}, int64(i+len(victim)-1))
		return err
	}
	_, err := Seed(context.Background(), tampered)
	if err == nil || !strings.Contains(err.Error(), "verify") {
		t.Fatalf("seed over a tampered file: %v, want a verification failure", err)
	}
	if _, err := os.Stat(opts.DataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed verification left a data dir: %v", err)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("the failed seed moved the source: %v", err)
	}
	if _, err := os.Stat(src + MigratedSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the failed seed renamed the source: %v", err)
	}
	res, err := Seed(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed {
		t.Error("the run after a failed verification resumed the file that failed it")
	}
	requireMigrated(t, startMember(t, opts.DataDir, "m0", peer), live, kineRev)
}
