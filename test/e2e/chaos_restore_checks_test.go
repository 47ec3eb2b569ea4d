package e2e

import (
	be "encoding/binary"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/vetcd/vetcd/internal/plan"
)

// The checks of restore-during-rebuild and of the epochs it splits a run
// into, on hand-made inputs. No cluster needed.

func kvAt(key, val string, mod int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), ModRevision: mod, CreateRevision: mod, Version: 1}
}

func TestChaosCompareStates(t *testing.T) {
	want := map[string]*mvccpb.KeyValue{"chaos/kv/00": kvAt("chaos/kv/00", "a", 5), "chaos/log/0/1": kvAt("chaos/log/0/1", "b", 6)}
	clone := func() map[string]*mvccpb.KeyValue {
		m := map[string]*mvccpb.KeyValue{}
		for k, v := range want {
			m[k] = proto.Clone(v).(*mvccpb.KeyValue)
		}
		return m
	}
	tests := []struct {
		name      string
		edit      func(m map[string]*mvccpb.KeyValue)
		valueOnly bool
		want      string // substring of the violation; "" for none
	}{
		{"equal", func(map[string]*mvccpb.KeyValue) {}, false, ""},
		{"a key written after the snapshot survived the restore", func(m map[string]*mvccpb.KeyValue) { m["chaos/kv/01"] = kvAt("chaos/kv/01", "late", 9) }, false, "chaos/kv/01=\"late\"@9"},
		{"a key of the snapshot is missing", func(m map[string]*mvccpb.KeyValue) { delete(m, "chaos/log/0/1") }, false, "chaos/log/0/1 missing"},
		{"another value", func(m map[string]*mvccpb.KeyValue) { m["chaos/kv/00"].Value = []byte("x") }, false, "want \"a\"@5"},
		{"another mod revision", func(m map[string]*mvccpb.KeyValue) { m["chaos/kv/00"].ModRevision = 7 }, false, "1 keys differ"},
		{"another lease", func(m map[string]*mvccpb.KeyValue) { m["chaos/kv/00"].Lease = 3 }, false, "lease 3"},
		{"a lease is not compared by value", func(m map[string]*mvccpb.KeyValue) { m["chaos/kv/00"].Lease = 3 }, true, ""},
		{"a value is compared by value", func(m map[string]*mvccpb.KeyValue) { m["chaos/kv/00"].Value = []byte("x") }, true, "chaos/kv/00=\"x\"@5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := clone()
			tc.edit(got)
			v := compareStates("restored", want, got, tc.valueOnly)
			joined := strings.Join(v, "\n")
			if tc.want == "" && len(v) > 0 {
				t.Fatalf("unexpected: %s", joined)
			}
			if tc.want != "" && !strings.Contains(joined, tc.want) {
				t.Fatalf("want a violation with %q, got %q", tc.want, joined)
			}
		})
	}
}

func TestChaosStateAt(t *testing.T) {
	init := map[string]*mvccpb.KeyValue{"chaos/kv/00": kvAt("chaos/kv/00", "old", 3)}
	log := &watchLog{Name: "w", From: 10, Events: []watchEvent{
		{Rev: 10, Key: "chaos/kv/01", Value: "a"},
		{Rev: 11, Key: "chaos/kv/00", Delete: true},
		{Rev: 12, Key: "chaos/kv/01", Value: "b"},
	}}
	got, which, ok := stateAt([]*watchLog{log}, init, 11)
	if !ok || which != "w" {
		t.Fatalf("the watcher saw every revision up to 11: %v %q", ok, which)
	}
	if v := compareStates("at 11", map[string]*mvccpb.KeyValue{"chaos/kv/01": kvAt("chaos/kv/01", "a", 10)}, got, true); v != nil {
		t.Fatalf("state at 11: %v", v)
	}
	if got, _, _ := stateAt([]*watchLog{log}, init, 9); compareStates("at 9", init, got, true) != nil {
		t.Fatalf("before the watcher's first revision the state is the initial one: %v", got)
	}
	if _, _, ok := stateAt([]*watchLog{log}, init, 13); ok {
		t.Fatal("a watcher that saw up to 12 cannot tell the state at 13")
	}
	gapped := *log
	gapped.Gaps = [][2]int64{{10, 10}}
	if _, _, ok := stateAt([]*watchLog{&gapped}, init, 11); ok {
		t.Fatal("a watcher with a compaction gap below the revision cannot tell the state")
	}
	if _, which, ok := stateAt([]*watchLog{&gapped, log}, init, 11); !ok || which != "w" {
		t.Fatal("the watcher without a gap tells")
	}
}

// TestChaosDBState reads a bbolt file laid out as etcd's key bucket:
// revisions in order, a later version replacing an earlier one, a
// tombstone deleting, a restore's empty revision bump, keys outside the
// prefix ignored.
func TestChaosDBState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	rev := func(main int64, tomb bool) []byte {
		b := make([]byte, 17, 18)
		be.BigEndian.PutUint64(b, uint64(main))
		b[8] = '_'
		if tomb {
			b = append(b, 't')
		}
		return b
	}
	put := func(kv *mvccpb.KeyValue) []byte {
		b, err := proto.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		for _, e := range []struct {
			k, v []byte
		}{
			{rev(2, false), put(kvAt("chaos/kv/00", "a", 2))},
			{rev(3, false), put(kvAt("other", "x", 3))},
			{rev(4, false), put(kvAt("chaos/kv/01", "b", 4))},
			{rev(5, false), put(kvAt("chaos/kv/00", "c", 5))},
			{rev(6, true), put(&mvccpb.KeyValue{Key: []byte("chaos/kv/01"), ModRevision: 6})},
			{rev(1_000_000_006, false), nil},
		} {
			if err := b.Put(e.k, e.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	state, top, err := dbState(path)
	if err != nil {
		t.Fatal(err)
	}
	if top != 1_000_000_006 {
		t.Fatalf("newest revision %d", top)
	}
	if v := compareStates("db", map[string]*mvccpb.KeyValue{"chaos/kv/00": kvAt("chaos/kv/00", "c", 5)}, state, false); v != nil {
		t.Fatal(v)
	}
}

func TestChaosRecordHistory(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	made := func(how plan.Origin) *plan.Made { return &plan.Made{How: how, At: t0} }
	gen := func(g uint64, id plan.ID, how plan.Origin, claim *plan.Claim) plan.Record {
		return plan.Record{Version: 1, ClusterID: id, Generation: g, Made: made(how), Claim: claim}
	}
	rebuild := func(holder int, at time.Time) *plan.Claim {
		return &plan.Claim{Kind: plan.ClaimRebuild, Holder: holder, At: at}
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name string
		obs  []recordObs
		want string
	}{
		{"rebuild claimed, finished, then restored", []recordObs{
			{at(0), gen(3, 1, plan.OriginFounded, nil)},
			{at(time.Second), gen(3, 1, plan.OriginFounded, rebuild(0, at(time.Second)))},
			{at(3 * time.Second), gen(4, 1, plan.OriginRebuilt, nil)},
			{at(5 * time.Second), gen(5, 2, plan.OriginRestored, nil)},
		}, ""},
		{"a pending rebuild claim superseded by a restore", []recordObs{
			{at(0), gen(3, 1, plan.OriginFounded, rebuild(0, at(0)))},
			{at(time.Second), gen(4, 2, plan.OriginRestored, nil)},
		}, ""},
		{"generation goes back", []recordObs{
			{at(0), gen(4, 2, plan.OriginRestored, nil)},
			{at(time.Second), gen(3, 1, plan.OriginRebuilt, nil)},
		}, "generation went back from 4 to 3"},
		{"two histories under one generation", []recordObs{
			{at(0), gen(4, 1, plan.OriginRebuilt, nil)},
			{at(time.Second), gen(4, 2, plan.OriginRestored, nil)},
		}, "generation 4 seen as cluster 1"},
		{"a held claim taken over by another survivor", []recordObs{
			{at(0), gen(3, 1, plan.OriginFounded, rebuild(0, at(0)))},
			{at(2 * time.Second), gen(3, 1, plan.OriginFounded, rebuild(1, at(2*time.Second)))},
		}, "rebuild claim of replica 0"},
		{"a stale claim taken over", []recordObs{
			{at(0), gen(3, 1, plan.OriginFounded, rebuild(0, at(0)))},
			{at(plan.ClaimStaleAfter + time.Second), gen(3, 1, plan.OriginFounded, rebuild(1, at(plan.ClaimStaleAfter+time.Second)))},
		}, ""},
		{"a restore claim replacing a held rebuild claim", []recordObs{
			{at(0), gen(3, 1, plan.OriginFounded, rebuild(0, at(0)))},
			{at(time.Second), gen(3, 1, plan.OriginFounded, &plan.Claim{Kind: plan.ClaimRestore, Holder: 1, At: at(time.Second)})},
		}, "replaced by a restore claim of replica 1"},
	}
	if got, want := describeRecords(tests[0].obs), "g3 founded → g3 rebuild claim of 0 → g4 rebuilt → g5 restored"; got != want {
		t.Errorf("describeRecords: %q, want %q", got, want)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := checkRecordHistory(tc.obs)
			joined := strings.Join(v, "\n")
			if tc.want == "" && len(v) > 0 {
				t.Fatalf("unexpected: %s", joined)
			}
			if tc.want != "" && !strings.Contains(joined, tc.want) {
				t.Fatalf("want a violation with %q, got %q", tc.want, joined)
			}
		})
	}
}

// TestChaosEpochStart: an epoch after a restore starts from the restored
// state, so the checks of one history hold within it: a read of a
// restored value at its mod revision is fine, a read that misses it or
// sees a value from before the snapshot is not, and a restored
// append-only key must still read back.
func TestChaosEpochStart(t *testing.T) {
	clock := newHistory()
	w := newWorkload(1, 1, clock)
	if got := w.tag(); got != "e1." {
		t.Fatalf("epoch 1 tags its values %q", got)
	}
	if newWorkload(1, 0, clock).tag() != "" {
		t.Fatal("epoch 0 keeps the values of a run without a restore")
	}
	w.startFrom(map[string]*mvccpb.KeyValue{
		"chaos/kv/00":   kvAt("chaos/kv/00", "c0-5", 40),
		"chaos/log/0/1": kvAt("chaos/log/0/1", "c0-1", 12),
		"chaos/fence":   kvAt("chaos/fence", "f", 50),
	}, 100)
	if w.logPuts["chaos/log/0/1"] != "c0-1" {
		t.Fatalf("restored append-only key not counted as acknowledged: %v", w.logPuts)
	}
	base := w.h.snapshot()
	if len(base) != 1 || base[0].In.Key != "chaos/kv/00" || base[0].Out.Rev != 40 || base[0].Return != 100 {
		t.Fatalf("want one put standing for the restored hot key: %v", base)
	}
	tests := []struct {
		name string
		ops  []record
		want porcupine.CheckResult
	}{
		{"read of the restored value", []record{get(1, "chaos/kv/00", "c0-5", 200, 210, 40)}, porcupine.Ok},
		{"then a write of this epoch", []record{put(1, "chaos/kv/00", "e1.c1-0", 200, 210, 1_000_000_100), get(2, "chaos/kv/00", "e1.c1-0", 300, 310, 1_000_000_100)}, porcupine.Ok},
		{"the restored value missing", []record{get(1, "chaos/kv/00", "", 200, 210, 0)}, porcupine.Illegal},
		{"a value written after the snapshot still there", []record{get(1, "chaos/kv/00", "c0-9", 200, 210, 45)}, porcupine.Illegal},
		{"the restored value at another revision", []record{get(1, "chaos/kv/00", "c0-5", 200, 210, 1_000_000_050)}, porcupine.Illegal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, _, _ := checkLinearizable(append(append([]record(nil), base...), tc.ops...), time.Minute)
			if res != tc.want {
				t.Fatalf("porcupine says %v, want %v", chaosResult(res), chaosResult(tc.want))
			}
		})
	}
}

// TestChaosRestoreApplied: a restore counts as applied by the record, also
// when the restored cluster was rebuilt since (seed 1341: the scale-down
// landed after the restore and broke the restored cluster's quorum, so the
// record went g2 restored → g3 rebuilt; judged by the current origin alone,
// the applied restore was taken for a refused one).
func TestChaosRestoreApplied(t *testing.T) {
	const url = "file:///s/restore-1"
	before := plan.Record{Generation: 1, Made: &plan.Made{How: plan.OriginFounded}}
	restored := plan.RestoredRecord(before, 2, 3, "vetcd snapshot restore", url, 20, 1e9, time.Now())
	rebuilt := plan.NextGeneration(restored, 2, 3, plan.Made{How: plan.OriginRebuilt})
	tests := []struct {
		name  string
		after plan.Record
		want  bool
	}{
		{"restored", restored, true},
		{"restored, then rebuilt", rebuilt, true},
		{"only rebuilt", plan.NextGeneration(before, 1, 1, plan.Made{How: plan.OriginRebuilt}), false},
		{"unchanged", before, false},
	}
	for _, tc := range tests {
		if got := restoreApplied(before, tc.after, url); got != tc.want {
			t.Errorf("%s: applied %v, want %v", tc.name, got, tc.want)
		}
	}
	if restoreApplied(restored, rebuilt, url) {
		t.Error("a restore from an earlier fault with the same URL is not this one's")
	}
}
