package local

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/topology"
)

// A `vetcd up` on a DIR whose supervisor lock is held, by a running `vetcd
// up`, is refused before it writes anything (safety rule 6; issue 15,
// finding 9): before the fix, Prepare rewrote the desired count in
// topology.json and only Run found the lock, so the running cluster
// scaled to the refused command's --replicas.
func TestPrepareRefusesLockedDirAndWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	sup, err := Prepare(Options{Dir: dir, Base: config.Default(), BasePort: 40000, Replicas: 3})
	must(t, err)
	sup.Close()
	unlock, err := Lock(dir) // what the running `vetcd up` holds
	must(t, err)
	defer unlock()

	before := dirFiles(t, dir)
	_, err = Prepare(Options{Dir: dir, Base: config.Default(), Replicas: 1})
	var locked *LockedError
	if !errors.As(err, &locked) || locked.PID != os.Getpid() || locked.Dir != dir || locked.Holder != "vetcd up" {
		t.Fatalf("Prepare on a locked dir = %v, want a *LockedError naming %s and pid %d", err, dir, os.Getpid())
	}
	want := "another vetcd up (pid " + strconv.Itoa(os.Getpid()) + ") is running on " + dir
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	requireSameFiles(t, before, dirFiles(t, dir))

	// Once the lock is free the same command goes through: the lock was
	// the only reason for the refusal.
	unlock()
	sup, err = Prepare(Options{Dir: dir, Base: config.Default(), Replicas: 1})
	must(t, err)
	defer sup.Close()
	if f, err := topology.ReadFile(sup.layout.TopologyPath()); err != nil || f.Desired != 1 {
		t.Fatalf("desired %d (%v) after an unrefused Prepare, want 1", f.Desired, err)
	}
}

// Prepare holds the lock until Close (or the end of Run): a second `vetcd
// up` that starts between the first one's Prepare and Run is refused too.
func TestPrepareHoldsTheLockUntilClose(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	first, err := Prepare(Options{Dir: dir, Base: config.Default(), BasePort: 40000})
	must(t, err)
	before := dirFiles(t, dir)
	var locked *LockedError
	if _, err := Prepare(Options{Dir: dir, Base: config.Default(), Replicas: 5}); !errors.As(err, &locked) {
		t.Fatalf("second Prepare while the first holds the lock = %v, want a *LockedError", err)
	}
	requireSameFiles(t, before, dirFiles(t, dir))
	if !Running(dir) {
		t.Fatal("Running is false while a prepared supervisor holds the lock")
	}
	first.Close()
	first.Close() // safe twice
	if Running(dir) {
		t.Fatal("Running is true after Close")
	}
	if err := first.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Run after Close = %v, want an error saying the supervisor was closed", err)
	}
	second, err := Prepare(Options{Dir: dir, Base: config.Default()})
	must(t, err)
	second.Close()
}

// Input that DIR's own files refuse (another base port, a topology file
// that does not parse, a desired count above the limit) is refused before
// the lock file or anything else is written.
func TestPrepareRefusesBadInputAgainstDirWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		topology string // written over topology.json when set
		opts     Options
		want     string
	}{
		{name: "other base port", opts: Options{BasePort: 41000}, want: "created with base port 40000"},
		{name: "topology does not parse", topology: "{", opts: Options{Replicas: 1}, want: "topology.json"},
		{name: "desired above the limit", topology: `{"desired": 40, "replicas": []}`, want: "above the local limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "c")
			sup, err := Prepare(Options{Dir: dir, Base: config.Default(), BasePort: 40000})
			must(t, err)
			sup.Close()
			must(t, os.Remove(filepath.Join(dir, "up.lock")))
			if tc.topology != "" {
				must(t, os.WriteFile(sup.layout.TopologyPath(), []byte(tc.topology), 0o600))
			}
			before := dirFiles(t, dir)
			opts := tc.opts
			opts.Dir, opts.Base = dir, config.Default()
			if _, err := Prepare(opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Prepare = %v, want an error saying %q", err, tc.want)
			}
			requireSameFiles(t, before, dirFiles(t, dir))
		})
	}
}

// dirFiles reads every file under dir with its modification time.
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files[p] = append([]byte(fi.ModTime().String()+"\n"), b...)
		return nil
	})
	must(t, err)
	return files
}

func requireSameFiles(t *testing.T, before, after map[string][]byte) {
	t.Helper()
	if maps.EqualFunc(before, after, bytes.Equal) {
		return
	}
	for p, b := range before {
		if a, ok := after[p]; !ok {
			t.Errorf("%s disappeared", p)
		} else if !bytes.Equal(a, b) {
			t.Errorf("%s changed:\nbefore: %s\nafter:  %s", p, b, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}
