package topology

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func replica(i int) Replica {
	return Replica{
		Name: fmt.Sprintf("vetcd-%d", i), Ordinal: i,
		ClientURL: fmt.Sprintf("https://127.0.0.1:%d", 2379+10*i),
		PeerURL:   fmt.Sprintf("https://127.0.0.1:%d", 2380+10*i),
		AgentURL:  fmt.Sprintf("https://127.0.0.1:%d", 2381+10*i),
	}
}

func TestStaticSource(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "topology.json")
	s := NewStatic(path, replica(0))
	if _, err := s.Desired(ctx); !errors.Is(err, ErrNoTopology) {
		t.Fatalf("Desired without a file: %v, want ErrNoTopology", err)
	}
	err := UpdateFile(path, func(f *File) error {
		f.Desired = 3
		f.Replicas = []Replica{replica(0), replica(1), replica(2), replica(3)}
		f.Processes = map[int]ProcessState{0: StateRunning, 1: StateRunning, 2: StateStopping, 3: StateStopped}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Desired(ctx); err != nil || n != 3 {
		t.Fatalf("Desired = %d, %v", n, err)
	}
	for ord, want := range map[int]bool{0: false, 1: false, 2: false, 3: true, 4: true} {
		if got, err := s.Gone(ctx, ord); err != nil || got != want {
			t.Errorf("Gone(%d) = %v, %v; want %v (a stopping replica is not gone)", ord, got, err, want)
		}
	}
	dir, err := LookupAll(ctx, s)
	if err != nil || len(dir) != 4 {
		t.Fatalf("LookupAll: %d replicas, %v", len(dir), err)
	}
	if got := dir.Ordinal([]string{"https://127.0.0.1:2400"}); got != 2 {
		t.Fatalf("Ordinal by peer URL = %d, want 2", got)
	}
	if got := dir.Ordinal([]string{"https://10.0.0.1:2380"}); got != NoOrdinal {
		t.Fatalf("unknown peer URL maps to %d", got)
	}
	if err := s.SetClusterRecord(ctx, "cluster c1"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.ClusterRecord(ctx); rec != "cluster c1" {
		t.Fatalf("record %q", rec)
	}
	// The record survives the supervisor's own updates.
	if err := UpdateFile(path, func(f *File) error { f.Desired = 5; return nil }); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.ClusterRecord(ctx); rec != "cluster c1" {
		t.Fatalf("record lost: %q", rec)
	}
}

func TestUpdateFileRefusesBadReplicas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topology.json")
	dup := replica(1)
	dup.Ordinal = 0
	tests := map[string][]Replica{
		"duplicate ordinal": {replica(0), dup},
		"duplicate URL":     {replica(0), {Name: "x", Ordinal: 1, ClientURL: replica(0).ClientURL, PeerURL: "p", AgentURL: "a"}},
		"missing URL":       {{Name: "x", Ordinal: 0}},
		"negative ordinal":  {{Name: "x", Ordinal: -1, ClientURL: "c", PeerURL: "p", AgentURL: "a"}},
	}
	for name, rs := range tests {
		t.Run(name, func(t *testing.T) {
			err := UpdateFile(path, func(f *File) error { f.Replicas = rs; return nil })
			if err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatal("a refused update wrote the file")
			}
		})
	}
}

// TestUpdateFileSerializes: concurrent writers (supervisor, vetcd scale,
// replicas) never lose each other's changes.
func TestUpdateFileSerializes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topology.json")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			if err := UpdateFile(path, func(f *File) error { f.Desired++; return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	f, err := ReadFile(path)
	if err != nil || f.Desired != 20 {
		t.Fatalf("desired %d after 20 increments (%v)", f.Desired, err)
	}
}

// TestUpdateFileSkipsNoOpWrites: an update that changes nothing leaves the
// file alone (no fsyncs competing with etcd's).
func TestUpdateFileSkipsNoOpWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topology.json")
	if err := UpdateFile(path, func(f *File) error { f.Desired = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := UpdateFile(path, func(f *File) error { f.Desired = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Fatal("a no-op update replaced the file")
	}
	// An empty change on a missing file still creates it.
	p2 := filepath.Join(t.TempDir(), "t.json")
	if err := UpdateFile(p2, func(*File) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p2); err != nil {
		t.Fatal(err)
	}
}

// lookupOnly hides Static's snapshot, so LookupAll asks it ordinal by
// ordinal: the answer one read of the file gives must be the same.
type lookupOnly struct{ s *Static }

func (l lookupOnly) Lookup(ctx context.Context, ordinal int) (Replica, bool, error) {
	return l.s.Lookup(ctx, ordinal)
}

func TestStaticLookupAllFromOneReadAnswersAlike(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		self   int
		inFile []int
		want   int
	}{
		{"self fills a gap", 2, []int{0, 1, 3}, 4},
		{"a gap ends the walk", 0, []int{0, 2}, 1},
		{"self only", 0, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "topology.json")
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(UpdateFile(path, func(f *File) error {
				for _, o := range tc.inFile {
					f.Replicas = append(f.Replicas, replica(o))
				}
				return nil
			}))
			s := NewStatic(path, replica(tc.self))
			once, err := LookupAll(ctx, s)
			must(err)
			each, err := LookupAll(ctx, lookupOnly{s})
			must(err)
			if len(once) != tc.want || !maps.Equal(once, each) {
				t.Fatalf("one read: %v; ordinal by ordinal: %v; want %d replicas", once, each, tc.want)
			}
		})
	}
	// A missing file is the same error either way.
	s := NewStatic(filepath.Join(t.TempDir(), "none.json"), replica(0))
	if _, err := LookupAll(ctx, s); !errors.Is(err, ErrNoTopology) {
		t.Fatalf("LookupAll without a file: %v, want ErrNoTopology", err)
	}
}
