package replica

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// Finding 2 (issue 15), deterministically: two survivors that decide to
// rebuild from the same record at the same moment both try to claim it;
// the compare-and-swap lets exactly one through, and the other's rebuild
// returns before it touches its member.
func TestRebuildClaimExactlyOneWins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topology.json")
	start := plan.Record{ClusterID: 0xc1, Generation: 1, Members: []plan.ID{0x10}, Made: &plan.Made{How: plan.OriginFounded}}
	if err := topology.UpdateFile(path, func(f *topology.File) error { f.ClusterRecord = start.Encode(); return nil }); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 20; round++ {
		var replicas []*Replica
		for ord := 0; ord < 2; ord++ {
			self := topology.Replica{Name: "vetcd-" + string(rune('0'+ord)), Ordinal: ord}
			replicas = append(replicas, &Replica{lg: zaptest.NewLogger(t), topo: topology.NewStatic(path, self), self: self})
		}
		rec, raw, err := replicas[0].readRecord(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		errs := make([]error, len(replicas))
		var wg sync.WaitGroup
		for i, r := range replicas {
			wg.Go(func() {
				_, _, errs[i] = r.claim(t.Context(), rec, raw, plan.Claim{Kind: plan.ClaimRebuild, Member: plan.ID(0x10 + i)})
			})
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, errRecordChanged):
				t.Fatalf("round %d: replica %d: %v", round, i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d replicas won the rebuild claim, want exactly 1 (%v)", round, won, errs)
		}
		got, _, err := replicas[1].readRecord(t.Context())
		if err != nil || got.Claim == nil || got.Claim.Kind != plan.ClaimRebuild {
			t.Fatalf("round %d: record after the claims: %+v, %v", round, got, err)
		}
		// Release for the next round.
		if err := topology.UpdateFile(path, func(f *topology.File) error { f.ClusterRecord = start.Encode(); return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// An earlier vetcd's prose record is converted once, by whoever reads it
// first, and every reader decides on the same typed record.
func TestReadRecordConvertsProseOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topology.json")
	const prose = "cluster e3c22db0480411dc founded by vetcd-0 at 2026-11-24T00:00:00Z"
	if err := topology.UpdateFile(path, func(f *topology.File) error { f.ClusterRecord = prose; return nil }); err != nil {
		t.Fatal(err)
	}
	r := &Replica{lg: zaptest.NewLogger(t), topo: topology.NewStatic(path, topology.Replica{Name: "vetcd-1", Ordinal: 1})}
	rec, raw, err := r.readRecord(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rec.ClusterID != 0xe3c22db0480411dc || rec.Generation != 1 || rec.Made.How != plan.OriginConverted || rec.Made.Note != prose {
		t.Fatalf("converted record %s", rec.Encode())
	}
	f, err := topology.ReadFile(path)
	if err != nil || f.ClusterRecord != raw {
		t.Fatalf("stored record %q (%v), want the typed form %q", f.ClusterRecord, err, raw)
	}
	again, raw2, err := r.readRecord(t.Context())
	if err != nil || raw2 != raw || again.Encode() != rec.Encode() {
		t.Fatalf("second read %s / %q (%v), want the same record", again.Encode(), raw2, err)
	}
}
