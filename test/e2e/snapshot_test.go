package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
)

// TestSnapshotCreateListDelete drives `vetcd snapshot` against a running
// local cluster and a file:// location, with and without encryption, and
// checks the stored bytes decode to a db with every key.
func TestSnapshotCreateListDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 1), 1)
	cli := c.client(1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < 1000; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("snap/%04d", i), strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}
	backups := filepath.Join(t.TempDir(), "backups")
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"secret", []string{"--age-passphrase-file", pass}},
	} {
		out, err := vetcd(t, 2*time.Minute, append([]string{"snapshot", "create", "file://" + backups + "/" + tc.name, "--dir", dir}, tc.args...)...)
		if err != nil {
			t.Fatalf("snapshot create %s: %v\n%s", tc.name, err, out)
		}
		if !strings.Contains(out, "1000 keys") {
			t.Fatalf("summary does not count the 1000 keys: %s", out)
		}
		if fi, err := os.Stat(filepath.Join(backups, tc.name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("stored snapshot: %v %v", fi, err)
		}
	}
	out, err := vetcd(t, time.Minute, "snapshot", "list", "file://"+backups+"/", "-o", "json")
	if err != nil {
		t.Fatalf("snapshot list: %v\n%s", err, out)
	}
	var entries []snapshot.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 2 {
		t.Fatalf("list: %v %s", err, out)
	}
	for _, e := range entries {
		if e.Manifest.KeyCount != 1000 || (e.Name == "secret") != (e.Manifest.Encryption == "age") {
			t.Fatalf("entry %+v", e)
		}
	}

	// The stored bytes decode (with the key, for the encrypted one) to the
	// db, verified against the manifest.
	b := storage.NewFile(backups)
	for _, name := range []string{"plain", "secret"} {
		m, err := snapshot.ReadManifest(ctx, b, name)
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := snapshot.Keys{PassphraseFile: pass}.Identities()
		rc, _, err := b.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		d, err := snapshot.Decode(rc, m, snapshot.Decoding{Identities: ids})
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, d)
		d.Close()
		rc.Close()
		if err != nil || n != m.Size {
			t.Fatalf("decode %s: %d bytes, %v", name, n, err)
		}
	}

	// Bad input: named, exit 2, nothing written.
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"snapshot", "create", "ftp://host/x", "--dir", dir}, `unknown scheme "ftp"`},
		{[]string{"snapshot", "create", "file://" + backups + "/", "--dir", dir}, "names no snapshot"},
		{[]string{"snapshot", "create", "file://" + backups + "/x", "--dir", dir, "--age-passphrase-env", "VETCD_NO_SUCH_VAR"}, "VETCD_NO_SUCH_VAR"},
		{[]string{"snapshot", "delete", "file://" + backups + "/missing"}, "not found"},
	} {
		before := snapshotTree(t, backups)
		cmd := exec.Command(binary, bad.args...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(buf.String(), bad.want) {
			t.Errorf("%v: exit %v, output %q; want exit 2 naming %q", bad.args, err, buf.String(), bad.want)
		}
		if snapshotTree(t, backups) != before {
			t.Errorf("%v changed the backup dir", bad.args)
		}
	}

	if out, err := vetcd(t, time.Minute, "snapshot", "delete", "file://"+backups+"/plain"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if left, _ := os.ReadDir(backups); len(left) != 2 { // secret + its manifest
		t.Fatalf("after delete: %v", left)
	}
}
