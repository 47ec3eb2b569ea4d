package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The chaos suite's checks, on hand-made histories: each must pass a
// correct history and catch the violation it is for. No cluster needed.

func put(c int, key, val string, call, ret, rev int64) record {
	return record{Client: c, In: kvInput{Kind: opPut, Key: key, Value: val}, Out: kvOutput{Rev: rev}, Call: call, Return: ret}
}

func unknownPut(c int, key, val string, call int64) record {
	return record{Client: c, In: kvInput{Kind: opPut, Key: key, Value: val}, Out: kvOutput{Unknown: true}, Call: call, Return: call + 1}
}

func get(c int, key, val string, call, ret, modRev int64) record {
	out := kvOutput{}
	if val != "" {
		out = kvOutput{Exists: true, Value: val, ModRev: modRev}
	}
	return record{Client: c, In: kvInput{Kind: opGet, Key: key}, Out: out, Call: call, Return: ret}
}

func TestChaosLinearizabilityCheck(t *testing.T) {
	tests := []struct {
		name string
		ops  []record
		want porcupine.CheckResult
	}{
		{"sequential put then get", []record{put(0, "k", "a", 0, 10, 2), get(1, "k", "a", 20, 30, 2)}, porcupine.Ok},
		{"stale read after an acknowledged put", []record{put(0, "k", "a", 0, 10, 2), put(0, "k", "b", 20, 30, 3), get(1, "k", "a", 40, 50, 2)}, porcupine.Illegal},
		{"lost write: read of nothing after a put", []record{put(0, "k", "a", 0, 10, 2), get(1, "k", "", 20, 30, 0)}, porcupine.Illegal},
		{"concurrent put and get may see either", []record{put(0, "k", "a", 0, 10, 2), get(1, "k", "", 5, 15, 0)}, porcupine.Ok},
		{"unknown put may be applied late", []record{unknownPut(0, "k", "a", 0), get(1, "k", "", 20, 30, 0), get(1, "k", "a", 40, 50, 2)}, porcupine.Ok},
		{"unknown put may never be applied", []record{unknownPut(0, "k", "a", 0), get(1, "k", "", 20, 30, 0)}, porcupine.Ok},
		{"a value read before it was written", []record{get(1, "k", "a", 0, 5, 2), put(0, "k", "a", 10, 20, 2)}, porcupine.Illegal},
		{"cas that succeeded on a wrong expectation", []record{
			put(0, "k", "a", 0, 10, 2),
			{Client: 1, In: kvInput{Kind: opCAS, Key: "k", Value: "c", Expect: "b"}, Out: kvOutput{Succeeded: true, Rev: 3}, Call: 20, Return: 30},
		}, porcupine.Illegal},
		{"cas that failed and saw the current value", []record{
			put(0, "k", "a", 0, 10, 2),
			{Client: 1, In: kvInput{Kind: opCAS, Key: "k", Value: "c", Expect: "b"}, Out: kvOutput{Exists: true, Value: "a", ModRev: 2}, Call: 20, Return: 30},
		}, porcupine.Ok},
		{"delete count must match", []record{
			put(0, "k", "a", 0, 10, 2),
			{Client: 1, In: kvInput{Kind: opDelete, Key: "k"}, Out: kvOutput{Deleted: 0}, Call: 20, Return: 30},
		}, porcupine.Illegal},
		{"writes against revision order", []record{put(0, "k", "a", 0, 10, 5), put(1, "k", "b", 20, 30, 4)}, porcupine.Illegal},
		{"read with another mod revision", []record{put(0, "k", "a", 0, 10, 5), get(1, "k", "a", 20, 30, 6)}, porcupine.Illegal},
		{"keys are independent", []record{put(0, "k", "a", 0, 10, 2), get(1, "j", "", 20, 30, 0)}, porcupine.Ok},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, _, _ := checkLinearizable(tc.ops, time.Minute)
			if res != tc.want {
				t.Fatalf("porcupine says %v, want %v", chaosResult(res), chaosResult(tc.want))
			}
			if bad := illegalKeys(tc.ops); (len(bad) > 0) != (tc.want == porcupine.Illegal) {
				t.Fatalf("illegal keys %v for a history that is %v", bad, chaosResult(tc.want))
			}
		})
	}
}

func TestChaosResolveUnknown(t *testing.T) {
	ops := []record{
		unknownPut(0, "k", "seen", 0),
		unknownPut(0, "k", "never", 5),
		put(1, "k", "b", 10, 100, 5),
	}
	logs := []*watchLog{{Name: "w", From: 2, Events: []watchEvent{{Rev: 4, Key: "k", Value: "seen"}, {Rev: 5, Key: "k", Value: "b"}}}}
	got := resolveUnknown(ops, logs, 1000)
	if len(got) != 2 {
		t.Fatalf("want the unseen unknown put dropped: %v", got)
	}
	if got[0].Out.Unknown || got[0].Out.Rev != 4 || got[0].Return != 100 {
		t.Fatalf("the seen unknown put must be applied at rev 4 and return by 100 (when rev 5 returned): %+v", got[0])
	}
	// With a compaction gap nothing can be dropped: it stays possibly applied.
	logs[0].Gaps = [][2]int64{{2, 3}}
	if got := resolveUnknown(ops, logs, 1000); len(got) != 3 || !got[1].Out.Unknown {
		t.Fatalf("with a gap the unseen unknown put must stay unknown: %v", got)
	}
	// A read of a value written at revision 4 after revision 5 returned is
	// caught once resolved.
	logs[0].Gaps = nil
	hist := append(resolveUnknown(ops, logs, 1000), get(2, "k", "seen", 200, 210, 4))
	if res, _, _ := checkLinearizable(hist, time.Minute); res != porcupine.Illegal {
		t.Fatalf("a read of an overwritten value must be illegal, got %v", chaosResult(res))
	}
}

func TestChaosWatchCheck(t *testing.T) {
	ops := []record{put(0, "k", "a", 0, 10, 2), put(0, "k", "b", 20, 30, 3), put(0, "j", "c", 40, 50, 4)}
	good := func() []watchEvent {
		return []watchEvent{{Rev: 2, Key: "k", Value: "a"}, {Rev: 3, Key: "k", Value: "b"}, {Rev: 4, Key: "j", Value: "c"}}
	}
	tests := []struct {
		name   string
		events []watchEvent
		gaps   [][2]int64
		want   string // substring of a violation; "" for none
	}{
		{"complete", good(), nil, ""},
		{"gap", append(good()[:1], good()[2]), nil, "missed revision 3"},
		{"gap accounted to compaction", append(good()[:1], good()[2]), [][2]int64{{3, 3}}, ""},
		{"duplicate", append(good()[:2], good()[1], good()[2]), nil, "duplicate or out of order"},
		{"out of order", []watchEvent{good()[1], good()[0], good()[2]}, nil, "duplicate or out of order"},
		{"wrong value", []watchEvent{good()[0], {Rev: 3, Key: "k", Value: "x"}, good()[2]}, nil, "the acknowledged write at that revision"},
		{"stopped early", good()[:2], nil, "want at least 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &watchLog{Name: "w", From: 2, Events: tc.events, Gaps: tc.gaps}
			ref := &watchLog{Name: "ref", From: 2, Events: good(), Gaps: tc.gaps}
			v := checkWatches(ops, []*watchLog{ref, w}, 4)
			joined := strings.Join(v, "\n")
			if tc.want == "" && len(v) > 0 {
				t.Fatalf("unexpected violations:\n%s", joined)
			}
			if tc.want != "" && !strings.Contains(joined, tc.want) {
				t.Fatalf("want a violation with %q, got:\n%s", tc.want, joined)
			}
		})
	}
}

func TestChaosReadRevisionCheck(t *testing.T) {
	ops := []record{put(0, "k", "a", 0, 10, 2), get(1, "k", "a", 20, 30, 2)}
	if v := checkReadRevisions(ops); len(v) > 0 {
		t.Fatalf("unexpected: %v", v)
	}
	ops = append(ops, get(1, "k", "a", 40, 50, 7))
	if v := checkReadRevisions(ops); len(v) != 1 {
		t.Fatalf("a read with another mod revision than its write's must be caught: %v", v)
	}
}
