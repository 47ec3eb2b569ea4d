package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/testtools"
)

func freeURL(t *testing.T) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	u, _ := url.Parse("http://" + ln.Addr().String())
	return *u
}

// startEtcd runs a one-member etcd in dir (plain http, test only).
func startEtcd(t *testing.T, dir string) (*embed.Etcd, *clientv3.Client) {
	t.Helper()
	return testtools.EmbeddedClient(t, dir)
}

// realSnapshot returns a genuine etcd snapshot db with n keys, as
// Maintenance.Snapshot streams it.
func realSnapshot(t *testing.T, n int) []byte {
	t.Helper()
	_, cli := startEtcd(t, filepath.Join(t.TempDir(), "src"))
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("key-%05d", i), fmt.Sprintf("value-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func x25519(t *testing.T) (*age.X25519Identity, *age.X25519Recipient) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id, id.Recipient()
}

func TestRoundTripRestoresWithEtcdutl(t *testing.T) {
	db := realSnapshot(t, 500)
	id, rcpt := x25519(t)
	other, _ := x25519(t)
	scryptR, _ := age.NewScryptRecipient("correct horse")
	scryptI, _ := age.NewScryptIdentity("correct horse")
	wrongScrypt, _ := age.NewScryptIdentity("battery staple")

	tests := []struct {
		name    string
		enc     Encoding
		dec     Decoding
		wantErr error
	}{
		{name: "plain"},
		{name: "age X25519", enc: Encoding{Recipients: []age.Recipient{rcpt}}, dec: Decoding{Identities: []age.Identity{id}}},
		{name: "age passphrase", enc: Encoding{Recipients: []age.Recipient{scryptR}}, dec: Decoding{Identities: []age.Identity{scryptI}}},
		{name: "wrong X25519 key", enc: Encoding{Recipients: []age.Recipient{rcpt}}, dec: Decoding{Identities: []age.Identity{other}}, wantErr: ErrKey},
		{name: "wrong passphrase", enc: Encoding{Recipients: []age.Recipient{scryptR}}, dec: Decoding{Identities: []age.Identity{wrongScrypt}}, wantErr: ErrKey},
		{name: "encrypted, no key given", enc: Encoding{Recipients: []age.Recipient{rcpt}}, wantErr: ErrKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stored bytes.Buffer
			m, err := Encode(&stored, bytes.NewReader(db), tc.enc)
			if err != nil {
				t.Fatal(err)
			}
			if m.Size != int64(len(db)) || m.Validate() != nil {
				t.Fatalf("manifest %+v", m)
			}
			if stored.Len() >= len(db) {
				t.Errorf("zstd did not compress: %d stored for %d plain", stored.Len(), len(db))
			}
			rc, err := Decode(bytes.NewReader(stored.Bytes()), m, tc.dec)
			if err == nil {
				var out bytes.Buffer
				_, err = io.Copy(&out, rc)
				rc.Close()
				if err == nil && !bytes.Equal(out.Bytes(), db) {
					t.Fatal("decoded db differs")
				}
				if err == nil && tc.wantErr == nil {
					restoreAndCheck(t, out.Bytes(), 500)
				}
			}
			if !errors.Is(err, tc.wantErr) && (err != nil || tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// restoreAndCheck restores db with etcd's own etcdutl package, starts etcd
// on the result, and counts the keys.
func restoreAndCheck(t *testing.T, db []byte, keys int) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "snap.db")
	if err := os.WriteFile(path, db, 0o600); err != nil {
		t.Fatal(err)
	}
	pu := freeURL(t)
	data := filepath.Join(dir, "restored")
	err := snapshot.NewV3(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))).Restore(snapshot.RestoreConfig{
		SnapshotPath:        path,
		Name:                "default",
		OutputDataDir:       data,
		PeerURLs:            []string{pu.String()},
		InitialCluster:      "default=" + pu.String(),
		InitialClusterToken: "restore",
		RevisionBump:        1000,
		MarkCompacted:       true,
	})
	if err != nil {
		t.Fatalf("etcdutl restore: %v", err)
	}
	_, cli := startEtcd(t, data)
	resp, err := cli.Get(context.Background(), "key-", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != int64(keys) {
		t.Fatalf("restored %d keys, want %d", resp.Count, keys)
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	db := realSnapshot(t, 200)
	var stored bytes.Buffer
	m, err := Encode(&stored, bytes.NewReader(db), Encoding{})
	if err != nil {
		t.Fatal(err)
	}
	good := stored.Bytes()
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 0x40; return c }
	otherSum := m
	otherSum.SHA256 = fmt.Sprintf("%064x", 1)
	bigger := m
	bigger.Size++
	tests := []struct {
		name string
		data []byte
		m    Manifest
	}{
		{"truncated data", good[:len(good)/2], m},
		{"flipped byte in the data", flip(good, len(good)/2), m},
		{"manifest checksum of other data", good, otherSum},
		{"manifest size off by one", good, bigger},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := Decode(bytes.NewReader(tc.data), tc.m, Decoding{})
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("err = %v, want ErrChecksum", err)
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	good := `{"formatVersion":1,"compression":"zstd","sha256":"` + fmt.Sprintf("%064x", 7) + `","size":10}`
	tests := map[string]string{
		"not JSON":            "{",
		"future format":       `{"formatVersion":2,"compression":"zstd","sha256":"` + fmt.Sprintf("%064x", 7) + `","size":10}`,
		"unknown compression": `{"formatVersion":1,"compression":"lz4","sha256":"` + fmt.Sprintf("%064x", 7) + `","size":10}`,
		"bad checksum":        `{"formatVersion":1,"compression":"zstd","sha256":"xyz","size":10}`,
		"no size":             `{"formatVersion":1,"compression":"zstd","sha256":"` + fmt.Sprintf("%064x", 7) + `"}`,
		"unknown encryption":  `{"formatVersion":1,"compression":"zstd","encryption":"rot13","sha256":"` + fmt.Sprintf("%064x", 7) + `","size":10}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseManifest([]byte(in)); !errors.Is(err, ErrManifest) {
				t.Fatalf("err = %v, want ErrManifest", err)
			}
		})
	}
	if _, err := ParseManifest([]byte(good)); err != nil {
		t.Fatalf("good manifest refused: %v", err)
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id, rcpt := x25519(t)
	rfile, ifile := filepath.Join(dir, "r"), filepath.Join(dir, "i")
	_ = os.WriteFile(rfile, []byte(rcpt.String()+"\n"), 0o600)
	_ = os.WriteFile(ifile, []byte(id.String()+"\n"), 0o600)
	t.Setenv("VETCD_TEST_PASS", "s3cret")

	for name, k := range map[string]Keys{
		"passphrase file": {PassphraseFile: pass},
		"passphrase env":  {PassphraseEnv: "VETCD_TEST_PASS"},
		"X25519":          {RecipientsFile: rfile, IdentityFile: ifile},
	} {
		t.Run(name, func(t *testing.T) {
			rs, err := k.Recipients()
			if err != nil || len(rs) == 0 {
				t.Fatalf("recipients: %v %v", rs, err)
			}
			ids, err := k.Identities()
			if err != nil || len(ids) == 0 {
				t.Fatalf("identities: %v %v", ids, err)
			}
			var buf bytes.Buffer
			m, err := Encode(&buf, bytes.NewReader([]byte("some db bytes")), Encoding{Recipients: rs})
			if err != nil {
				t.Fatal(err)
			}
			rc, err := Decode(&buf, m, Decoding{Identities: ids})
			if err != nil {
				t.Fatal(err)
			}
			if b, err := io.ReadAll(rc); err != nil || string(b) != "some db bytes" {
				t.Fatalf("round trip: %q %v", b, err)
			}
		})
	}
	for name, k := range map[string]Keys{
		"both passphrase sources":       {PassphraseFile: pass, PassphraseEnv: "VETCD_TEST_PASS"},
		"unset env":                     {PassphraseEnv: "VETCD_TEST_UNSET_VAR"},
		"missing file":                  {PassphraseFile: filepath.Join(dir, "nope")},
		"passphrase and X25519 at once": {PassphraseFile: pass, RecipientsFile: rfile},
		"bad recipients file":           {RecipientsFile: pass},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := k.Recipients(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestFramesDecodeAsOneStream checks that a db larger than one frame, split
// into independent frames by Encode, has its checksum taken in order, and
// decodes back byte for byte through
// Decode and through a plain zstd stream reader (as `zstd -d` would).
func TestFramesDecodeAsOneStream(t *testing.T) {
	// More frames than are ever in flight at once, each different, so
	// that a frame written or hashed out of order, or a buffer reused too
	// early, shows.
	plain := make([]byte, 9*frameSize+12345)
	for i := range plain {
		plain[i] = byte(i*7/13 + i/frameSize)
	}
	var stored bytes.Buffer
	m, err := Encode(&stored, bytes.NewReader(plain), Encoding{})
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(plain); m.SHA256 != hex.EncodeToString(sum[:]) || m.Size != int64(len(plain)) {
		t.Fatalf("manifest sha256 %s size %d, want %x and %d", m.SHA256, m.Size, sum, len(plain))
	}
	m.FormatVersion, m.Created = FormatVersion, time.Now()
	m.EtcdVersion, m.ClusterID, m.Source = "3.7.0", "c1", "vetcd-0"
	rc, err := Decode(bytes.NewReader(stored.Bytes()), m, Decoding{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Decode: %d bytes, equal %t, err %v", len(got), bytes.Equal(got, plain), err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(stored.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got, err = io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("plain zstd reader: %d bytes, equal %t, err %v", len(got), bytes.Equal(got, plain), err)
	}
}

// TestEtcdStreamTrailer checks that Encode verifies etcd's checksum at the
// end of a snapshot stream and records the sha256 of the whole stream.
func TestEtcdStreamTrailer(t *testing.T) {
	body := bytes.Repeat([]byte("etcd db page "), 100000)
	sum := sha256.Sum256(body)
	good := append(append([]byte{}, body...), sum[:]...)
	whole := sha256.Sum256(good)
	bad := append([]byte{}, good...)
	bad[len(bad)-1] ^= 1
	tests := []struct {
		name   string
		stream []byte
		ok     bool
	}{
		{"intact", good, true},
		{"flipped trailer", bad, false},
		{"cut short", good[:len(good)-100], false},
		{"shorter than a checksum", good[:10], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Encode(io.Discard, bytes.NewReader(tt.stream), Encoding{EtcdStream: true})
			if tt.ok != (err == nil) {
				t.Fatalf("Encode: %v, want ok %t", err, tt.ok)
			}
			if tt.ok && m.SHA256 != hex.EncodeToString(whole[:]) {
				t.Fatalf("sha256 %s, want the whole stream's %x", m.SHA256, whole)
			}
			if !tt.ok && !errors.Is(err, ErrChecksum) {
				t.Fatalf("error %v is not ErrChecksum", err)
			}
		})
	}
}
