package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vetcd/vetcd/internal/snapshot"
	"github.com/vetcd/vetcd/internal/storage"
	"github.com/vetcd/vetcd/internal/testtools"
)

// TestSnapshotS3 drives `vetcd snapshot create/list/restore/delete`
// against a real MinIO, with and without age encryption. The vetcd
// processes get the credentials the standard way, from AWS_* variables.
func TestSnapshotS3(t *testing.T) {
	m := testtools.StartMinIO(t, testtools.MinIOOptions{})
	m.SetEnv(t) // inherited by every vetcd process below
	const bucket = "backups"
	m.CreateBucket(t, bucket)

	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 1), 1)
	cli := c.client(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 0; i < 1000; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("snap/%04d", i), strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}
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
		out, err := vetcd(t, 2*time.Minute, append([]string{"snapshot", "create", m.URL(bucket, "vetcd/"+tc.name), "--dir", dir}, tc.args...)...)
		if err != nil {
			t.Fatalf("snapshot create %s: %v\n%s", tc.name, err, out)
		}
		if !strings.Contains(out, "1000 keys") {
			t.Fatalf("summary does not count the 1000 keys: %s", out)
		}
		if strings.Contains(out, m.SecretKey) {
			t.Fatalf("output shows the secret key: %s", out)
		}
	}
	// Both objects and their manifests are in the bucket, below the prefix.
	root := m.Client(t)
	var keys []string
	for o := range root.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	if got := strings.Join(keys, ","); got != "vetcd/plain,vetcd/plain.manifest.json,vetcd/secret,vetcd/secret.manifest.json" {
		t.Fatalf("bucket holds %s", got)
	}

	out, err := vetcd(t, time.Minute, "snapshot", "list", m.URL(bucket, "vetcd/"), "-o", "json")
	if err != nil {
		t.Fatalf("snapshot list: %v\n%s", err, out)
	}
	var entries []snapshot.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 2 {
		t.Fatalf("list: %v %s", err, out)
	}
	for _, e := range entries {
		if e.Manifest.KeyCount != 1000 || (e.Name == "secret") != (e.Manifest.Encryption == "age") || e.Stored <= 0 {
			t.Fatalf("entry %+v", e)
		}
	}
	out, err = vetcd(t, time.Minute, "snapshot", "list", m.URL(bucket, "vetcd/sec"))
	if err != nil || !strings.Contains(out, "secret") || strings.Contains(out, "plain") {
		t.Fatalf("snapshot list of prefix vetcd/sec: %v\n%s", err, out)
	}

	// The stored bytes decode to the db the manifest describes.
	loc, err := storage.Parse(m.URL(bucket, "vetcd/"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := storage.Open(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	requireDecodes(ctx, t, b, snapshot.Keys{PassphraseFile: pass}, "plain", "secret")

	// Bad input: named, exit 2, the bucket unchanged, no secret shown.
	for _, bad := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"snapshot", "create", m.URL("no-such-bucket", "x"), "--dir", dir}, nil, `bucket "no-such-bucket" does not exist`},
		{[]string{"snapshot", "create", m.URL(bucket, "vetcd/x"), "--dir", dir}, []string{"AWS_SECRET_ACCESS_KEY=wrong-secret-value"}, "credentials were rejected"},
		{[]string{"snapshot", "list", m.URL(bucket, "vetcd/")}, []string{"AWS_ACCESS_KEY_ID=nobody"}, "credentials were rejected"},
		{[]string{"snapshot", "create", "s3://" + bucket + "/x?endpont=" + m.Endpoint, "--dir", dir}, nil, `unknown option "endpont"`},
		{[]string{"snapshot", "restore", m.URL(bucket, "vetcd/missing"), "--dir", dir}, nil, "not found"},
		{[]string{"snapshot", "delete", m.URL(bucket, "vetcd/missing")}, nil, "not found"},
		{[]string{"snapshot", "restore", m.URL(bucket, "vetcd/secret"), "--dir", dir}, nil, "age"},
	} {
		cmd := exec.Command(binary, bad.args...)
		cmd.Env = append(os.Environ(), bad.env...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(buf.String(), bad.want) {
			t.Errorf("%v: exit %v, output %q; want exit 2 naming %q", bad.args, err, buf.String(), bad.want)
		}
		if strings.Contains(buf.String(), m.SecretKey) || strings.Contains(buf.String(), "wrong-secret-value") {
			t.Errorf("%v: output shows a secret: %s", bad.args, buf.String())
		}
	}
	objs, err := b.List(ctx, "")
	if err != nil || len(objs) != 4 {
		t.Fatalf("after the bad commands the bucket holds %v, %v", objs, err)
	}

	// Restore the encrypted snapshot into the running cluster: a key
	// written after it is gone, the 1000 keys are back.
	if _, err := cli.Put(ctx, "after", "snapshot"); err != nil {
		t.Fatal(err)
	}
	out, err = vetcd(t, 4*time.Minute, "snapshot", "restore", m.URL(bucket, "vetcd/secret"), "--dir", dir, "--age-passphrase-file", pass)
	if err != nil {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	c.requireSettled(1)
	cli2 := c.client(1)
	if r, err := cli2.Get(ctx, "snap/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || r.Count != 1000 {
		t.Fatalf("after restore: %v keys, %v; want 1000", r, err)
	}
	if r, err := cli2.Get(ctx, "after"); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("key written after the snapshot is back: %v %v", r, err)
	}

	// And the plain one, with the cluster stopped and its data gone.
	c.stop()
	if err := os.RemoveAll(filepath.Join(dir, "vetcd-0", "data")); err != nil {
		t.Fatal(err)
	}
	if out, err := vetcd(t, 2*time.Minute, "snapshot", "restore", m.URL(bucket, "vetcd/plain"), "--dir", dir); err != nil {
		t.Fatalf("snapshot restore plain: %v\n%s", err, out)
	}
	c2 := startUp(t, dir, c.basePort, 0)
	c2.requireSettled(1)
	if r, err := c2.client(1).Get(ctx, "snap/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || r.Count != 1000 {
		t.Fatalf("after restore from plain: %v keys, %v; want 1000", r, err)
	}

	if out, err := vetcd(t, time.Minute, "snapshot", "delete", m.URL(bucket, "vetcd/plain")); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	objs, err = b.List(ctx, "")
	if err != nil || len(objs) != 2 || objs[0].Name != "secret" || objs[1].Name != "secret"+snapshot.ManifestSuffix {
		t.Fatalf("after delete: %+v, %v", objs, err)
	}
}

// Scheduled snapshots to S3: the replicas (started by `vetcd up`, with
// AWS_* inherited) take snapshots on the leader into the bucket, and
// retention prunes through S3's List and Delete to the configured count.
func TestScheduledSnapshotsS3(t *testing.T) {
	m := testtools.StartMinIO(t, testtools.MinIOOptions{})
	m.SetEnv(t)
	const bucket = "scheduled"
	m.CreateBucket(t, bucket)
	target := m.URL(bucket, "c1/")
	cfg := filepath.Join(t.TempDir(), "vetcd.yaml")
	conf := fmt.Sprintf("snapshots:\n  schedule: \"@every 2s\"\n  target: %q\n  retention: 2\n", target)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "c")
	c := startUp(t, dir, freeBasePort(t, 3), 3, "--config", cfg)
	c.requireSettled(3)
	id := c.status(3).ClusterID
	loc, err := storage.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := storage.Open(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	ours := func() []snapshot.Entry {
		entries, _ := snapshot.List(ctx, b, "vetcd-"+id+"-")
		return entries
	}
	waitFor(t, 90*time.Second, "scheduled snapshots in S3", func() bool {
		l := c.leaderOrdinal()
		return c.metric(l, "vetcd_snapshot_failures_total") == 0 &&
			c.metric(l, "vetcd_snapshot_last_success_timestamp_seconds") > 0 && len(ours()) >= 2
	})
	awaitMoreSnapshots(t, c, 2) // retention must keep the count at 2 after them
	waitFor(t, 5*time.Second, "retention keeps 2", func() bool {
		n := len(ours())
		if n > 3 {
			t.Fatalf("%d snapshots of this cluster kept, retention is 2", n)
		}
		return n == 2
	})
	// What is kept is complete, and pruning deletes data with manifests:
	// two snapshots (4 objects) plus at most one being taken right now.
	objs, err := b.List(ctx, "vetcd-"+id+"-")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) < 4 || len(objs) > 6 {
		t.Fatalf("%d objects for this cluster in the bucket: %+v", len(objs), objs)
	}
	for _, e := range ours() {
		if e.Stored <= 0 || e.Manifest.ClusterID != id {
			t.Fatalf("snapshot %+v", e)
		}
	}
	// `vetcd status` names the last snapshot with a URL that restore takes.
	out, err := vetcd(t, 30*time.Second, "status", "--dir", dir)
	want := "last snapshot: s3://" + bucket + "/c1/vetcd-" + id + "-"
	if err != nil || !strings.Contains(out, want) || !strings.Contains(out, "?endpoint=") {
		t.Fatalf("vetcd status does not show the last snapshot as %s…?endpoint=…: %v\n%s", want, err, out)
	}
}
