package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/storage"
)

// store writes db as snapshot name into a file backend, as Create would.
func store(t *testing.T, b storage.Backend, name string, db []byte) Manifest {
	t.Helper()
	ctx := context.Background()
	var data bytes.Buffer
	m, err := Encode(&data, bytes.NewReader(db), Encoding{EtcdStream: true})
	if err != nil {
		t.Fatal(err)
	}
	m.ClusterID = "1"
	if err := b.Put(ctx, name, bytes.NewReader(data.Bytes()), int64(data.Len())); err != nil {
		t.Fatal(err)
	}
	mb, _ := json.Marshal(m)
	if err := b.Put(ctx, name+ManifestSuffix, bytes.NewReader(mb), int64(len(mb))); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFetchAndRestore restores a real snapshot through both ways of
// staging it, starts etcd on the result, and checks that nothing staged is
// left behind, after success and after a refused (damaged) snapshot.
func TestFetchAndRestore(t *testing.T) {
	db := realSnapshot(t, 300)
	for _, memory := range []bool{true, false} {
		name := map[bool]string{true: "in memory", false: "on disk"}[memory]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := storage.NewFile(filepath.Join(t.TempDir(), "store"))
			store(t, b, "good", db)
			bad := bytes.Clone(db)
			bad[len(bad)/2] ^= 0x40
			m := store(t, b, "bad", db)
			// The "bad" snapshot's data is swapped for that of other bytes,
			// under the good manifest: its checksum no longer matches.
			var data bytes.Buffer
			if _, err := Encode(&data, bytes.NewReader(bad), Encoding{}); err != nil {
				t.Fatal(err)
			}
			if err := b.Put(ctx, "bad", bytes.NewReader(data.Bytes()), int64(data.Len())); err != nil {
				t.Fatal(err)
			}
			stageDir := t.TempDir()

			if _, _, err := fetch(ctx, b, "bad", Keys{}, stageDir, memory); !errors.Is(err, ErrChecksum) {
				t.Fatalf("fetch of a damaged snapshot: err = %v, want ErrChecksum", err)
			}
			requireEmpty(t, stageDir)

			staged, got, err := fetch(ctx, b, "good", Keys{}, stageDir, memory)
			if err != nil {
				t.Fatal(err)
			}
			if got.SHA256 != m.SHA256 {
				t.Fatalf("manifest sha256 %s, want %s", got.SHA256, m.SHA256)
			}
			wantMemory := memory && runtime.GOOS == "linux"
			if staged.InMemory != wantMemory {
				t.Fatalf("staged in memory: %v, want %v (path %s)", staged.InMemory, wantMemory, staged.Path)
			}
			if staged.InMemory == strings.HasPrefix(staged.Path, stageDir) {
				t.Fatalf("staged at %s (in memory: %v)", staged.Path, staged.InMemory)
			}
			if staged.Revision < 300 {
				t.Fatalf("revision %d, want at least the 300 puts", staged.Revision)
			}
			pu := freeURL(t)
			data2 := filepath.Join(t.TempDir(), "restored")
			if err := RestoreNewCluster(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), staged, Member{Name: "m", PeerURL: pu.String(), DataDir: data2}); err != nil {
				t.Fatal(err)
			}
			if err := staged.Close(); err != nil {
				t.Fatal(err)
			}
			requireEmpty(t, stageDir)
			_, cli := startEtcd(t, data2)
			resp, err := cli.Get(ctx, "key-", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatal(err)
			}
			if resp.Count != 300 {
				t.Fatalf("restored %d keys, want 300", resp.Count)
			}
			if resp.Header.Revision <= staged.Revision+RevisionBump-1 {
				t.Fatalf("revision %d after restore, want above %d + the bump", resp.Header.Revision, staged.Revision)
			}
		})
	}
}

func requireEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("%s holds %v, want nothing left behind", dir, ents)
	}
}

func TestFitsInMemory(t *testing.T) {
	tests := []struct {
		size, headroom int64
		want           bool
	}{
		{size: 1 << 30, headroom: 8 << 30, want: true},
		{size: 2 << 30, headroom: 8 << 30, want: true},
		{size: 2<<30 + 1, headroom: 8 << 30, want: false},
		{size: 1 << 20, headroom: -1, want: false}, // unknown headroom
		{size: 0, headroom: 8 << 30, want: false},
	}
	for _, tc := range tests {
		if got := fitsInMemory(tc.size, tc.headroom); got != tc.want {
			t.Errorf("fitsInMemory(%d, %d) = %v, want %v", tc.size, tc.headroom, got, tc.want)
		}
	}
}
