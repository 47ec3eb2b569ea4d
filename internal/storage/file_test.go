package storage

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in         string
		root, name string
		err        string
	}{
		{in: "file:///backups/snap-1", root: "/backups", name: "snap-1"},
		{in: "file:///backups/", root: "/backups", name: ""},
		{in: "file://localhost/b/x", root: "/b", name: "x"},
		{in: "file://host/b/x", err: "absolute path"},
		{in: "file:relative/x", err: "absolute path"},
		{in: "/no/scheme", err: "no scheme"},
		{in: "ftp://h/x", err: `unknown scheme "ftp"`},
		{in: "s3://user:secret@bucket/x", err: "credentials in the URL"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			loc, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error leaks the credential: %v", err)
				}
				return
			}
			if err != nil || loc.Root != tc.root || loc.Name != tc.name {
				t.Fatalf("Parse = %+v, %v; want root %q name %q", loc, err, tc.root, tc.name)
			}
		})
	}
}

func TestFileBackend(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "b")
	b := NewFile(root)
	if objs, err := b.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("List of a missing root = %v, %v", objs, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Put(ctx, "snap-a", strings.NewReader("aaa"), 3))
	must(b.Put(ctx, "snap-b", strings.NewReader("bbbb"), 4))
	must(b.Put(ctx, "other", strings.NewReader("o"), 1))
	fi, err := os.Stat(filepath.Join(root, "snap-a"))
	must(err)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	rc, size, err := b.Get(ctx, "snap-b")
	must(err)
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "bbbb" || size != 4 {
		t.Fatalf("Get = %q (%d)", got, size)
	}
	objs, err := b.List(ctx, "snap-")
	must(err)
	if len(objs) != 2 || objs[0].Name != "snap-a" || objs[1].Size != 4 {
		t.Fatalf("List = %+v", objs)
	}
	must(b.Delete(ctx, "snap-a"))
	if _, _, err := b.Get(ctx, "snap-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := b.Delete(ctx, "snap-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of a missing object: %v", err)
	}
	for _, bad := range []string{"", "../escape", "/abs", "x.tmp-1"} {
		if err := b.Put(ctx, bad, strings.NewReader("x"), 1); err == nil {
			t.Errorf("Put(%q) accepted", bad)
		}
	}
}

// TestFilePutNeverLeavesPartial: a write that fails halfway leaves neither
// the final name nor a listed temp file.
func TestFilePutNeverLeavesPartial(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	b := NewFile(root)
	err := b.Put(ctx, "snap", io.MultiReader(strings.NewReader("half"), failing{}), 100)
	if err == nil {
		t.Fatal("a failing reader was stored")
	}
	if _, err := os.Stat(filepath.Join(root, "snap")); !os.IsNotExist(err) {
		t.Fatal("a partial object sits under the final name")
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Put(cctx, "snap", strings.NewReader("x"), 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: %v", err)
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }
