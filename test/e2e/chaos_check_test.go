package e2e

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// opKind is what a recorded client operation did.
type opKind uint8

const (
	opGet    opKind = iota // linearizable read of one key (a range is split into one get per key)
	opPut                  // put of a unique value
	opDelete               // delete of one key
	opCAS                  // txn: if value == Expect (or absent when Expect is "") then put, else get
	opRevoke               // lease revoke: deletes the one key attached to the lease
)

func (k opKind) String() string {
	return [...]string{"get", "put", "delete", "cas", "revoke"}[k]
}

func (k opKind) writes() bool { return k != opGet }

// kvInput is a recorded operation's request.
type kvInput struct {
	Kind   opKind
	Key    string
	Value  string // put and cas: the new value, unique in the run
	Expect string // cas: the expected value; "" means the key must be absent
}

// kvOutput is a recorded operation's response.
type kvOutput struct {
	// Unknown: the request may or may not have been applied (a timeout, or
	// an error after it was sent). Such an operation returns at "infinity".
	Unknown   bool
	Exists    bool   // get, and cas that did not succeed: the key existed
	Value     string // its value
	ModRev    int64  // its mod revision
	Succeeded bool   // cas
	Deleted   int64  // delete
	// Rev is the revision of the write (the response header's revision)
	// when the write created one; 0 otherwise.
	Rev int64
}

// record is one client operation with its invocation and return times (ns
// since the run began).
type record struct {
	Client int
	In     kvInput
	Out    kvOutput
	Call   int64
	Return int64
	Err    string
}

func (r record) String() string {
	out := "unknown: " + r.Err
	if !r.Out.Unknown {
		switch r.In.Kind {
		case opGet:
			out = fmt.Sprintf("exists=%v value=%q modrev=%d", r.Out.Exists, r.Out.Value, r.Out.ModRev)
		case opCAS:
			out = fmt.Sprintf("succeeded=%v rev=%d (current %q exists=%v)", r.Out.Succeeded, r.Out.Rev, r.Out.Value, r.Out.Exists)
		case opDelete:
			out = fmt.Sprintf("deleted=%d rev=%d", r.Out.Deleted, r.Out.Rev)
		default:
			out = fmt.Sprintf("rev=%d", r.Out.Rev)
		}
	}
	return fmt.Sprintf("client %d [%s .. %s] %s %s value=%q expect=%q -> %s", r.Client,
		time.Duration(r.Call).Round(time.Millisecond), time.Duration(r.Return).Round(time.Millisecond),
		r.In.Kind, r.In.Key, r.In.Value, r.In.Expect, out)
}

// history collects records from every client of a run.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []record
}

func newHistory() *history { return &history{start: time.Now()} }

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(r record) {
	h.mu.Lock()
	h.ops = append(h.ops, r)
	h.mu.Unlock()
}

func (h *history) snapshot() []record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]record(nil), h.ops...)
}

// kvState is the model's state of one key. Rev is the revision of the
// last write applied to it: 0 before any, -1 when that write's revision is
// unknown (its outcome was unknown).
type kvState struct {
	Exists bool
	Value  string
	Rev    int64
}

// kvModel is a linearizable single-key register with put, delete,
// compare-and-swap and get, partitioned per key. etcd orders writes by
// revision, so a write with a known revision must come after the previous
// write's, and a read's mod revision must be its write's. An operation with
// an unknown outcome is applied (it returns at the end of the history, so
// the checker may place it after every other operation: "possibly
// applied"), as in porcupine's etcd example.
var kvModel = porcupine.Model{
	Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range ops {
			k := op.Input.(kvInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		// after is the state after a write; ok says whether a known
		// revision follows the last one.
		after := func(exists bool, value string) (bool, any) {
			if out.Unknown || out.Rev == 0 {
				return true, kvState{Exists: exists, Value: value, Rev: -1}
			}
			return s.Rev < 0 || out.Rev > s.Rev, kvState{Exists: exists, Value: value, Rev: out.Rev}
		}
		read := func() bool {
			return out.Exists == s.Exists && (!s.Exists || (out.Value == s.Value && (s.Rev <= 0 || out.ModRev == s.Rev)))
		}
		switch in.Kind {
		case opGet:
			return read(), s
		case opPut:
			return after(true, in.Value)
		case opDelete:
			if out.Unknown {
				return after(false, "")
			}
			if !s.Exists {
				return out.Deleted == 0, s // no revision is made
			}
			if out.Deleted != 1 {
				return false, s
			}
			return after(false, "")
		case opRevoke:
			if !s.Exists {
				return true, s
			}
			return after(false, "")
		case opCAS:
			match := (in.Expect == "" && !s.Exists) || (in.Expect != "" && s.Exists && s.Value == in.Expect)
			if out.Unknown {
				if match {
					return after(true, in.Value)
				}
				return true, s
			}
			if out.Succeeded != match {
				return false, s
			}
			if match {
				return after(true, in.Value)
			}
			return read(), s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		res := "?"
		if !out.Unknown {
			switch in.Kind {
			case opGet:
				res = describeValue(out.Exists, out.Value)
			case opCAS:
				res = fmt.Sprintf("%v", out.Succeeded)
				if !out.Succeeded {
					res += " " + describeValue(out.Exists, out.Value)
				}
			case opDelete:
				res = fmt.Sprintf("%d", out.Deleted)
			default:
				res = "ok"
			}
		}
		switch in.Kind {
		case opGet:
			return fmt.Sprintf("get(%s) -> %s", in.Key, res)
		case opPut:
			return fmt.Sprintf("put(%s, %s) -> %s", in.Key, in.Value, res)
		case opCAS:
			return fmt.Sprintf("cas(%s, %s→%s) -> %s", in.Key, describeValue(in.Expect != "", in.Expect), in.Value, res)
		default:
			return fmt.Sprintf("%s(%s) -> %s", in.Kind, in.Key, res)
		}
	},
	DescribeState: func(state any) string {
		s := state.(kvState)
		return fmt.Sprintf("%s @%d", describeValue(s.Exists, s.Value), s.Rev)
	},
}

func describeValue(exists bool, v string) string {
	if !exists {
		return "∅"
	}
	return v
}

// watchLog is what one watcher saw: every event under the prefix, and the
// revisions it could not see because they were compacted before it resumed.
type watchLog struct {
	Name     string
	From     int64 // the first revision watched
	Events   []watchEvent
	Gaps     [][2]int64 // inclusive revision ranges lost to compaction, accounted for
	Restarts int
	Reasons  map[string]int // why streams ended, by error
}

func (w *watchLog) restartReason(why string) {
	if w.Reasons == nil {
		w.Reasons = map[string]int{}
	}
	w.Reasons[why]++
}

// watchEvent is one event as a watcher saw it.
type watchEvent struct {
	Rev    int64
	Key    string
	Value  string
	Delete bool
}

// last is the highest revision the watcher has accounted for: seen, or
// lost to compaction.
func (w *watchLog) last() int64 {
	l := w.From - 1
	if len(w.Events) > 0 {
		l = w.Events[len(w.Events)-1].Rev
	}
	for _, g := range w.Gaps {
		l = max(l, g[1])
	}
	return l
}

func (w *watchLog) inGap(rev int64) bool {
	for _, g := range w.Gaps {
		if rev >= g[0] && rev <= g[1] {
			return true
		}
	}
	return false
}

// checkWatches checks what the watchers saw against each other and against
// the writes with known revisions: mod revisions strictly increasing (no
// duplicates), every known write revision in the watched range seen with
// its key and value (no gaps, except ranges lost to compaction, which are
// accounted for), and the watchers agree on every revision both could see.
func checkWatches(ops []record, logs []*watchLog, upTo int64) []string {
	var v []string
	known := map[int64]record{}
	for _, op := range ops {
		if op.In.Kind.writes() && !op.Out.Unknown && op.Out.Rev > 0 {
			if prev, dup := known[op.Out.Rev]; dup {
				v = append(v, fmt.Sprintf("two acknowledged writes at revision %d: %s and %s", op.Out.Rev, prev, op))
			}
			known[op.Out.Rev] = op
		}
	}
	seen := make([]map[int64]watchEvent, len(logs))
	for i, w := range logs {
		seen[i] = map[int64]watchEvent{}
		prev := w.From - 1
		for _, e := range w.Events {
			if e.Rev <= prev {
				v = append(v, fmt.Sprintf("watch %s: event at revision %d after revision %d (duplicate or out of order)", w.Name, e.Rev, prev))
			}
			prev = e.Rev
			seen[i][e.Rev] = e
			if op, ok := known[e.Rev]; ok {
				if e.Key != op.In.Key || e.Delete != (op.In.Kind == opDelete || op.In.Kind == opRevoke) || (!e.Delete && e.Value != op.In.Value) {
					v = append(v, fmt.Sprintf("watch %s: revision %d is %s=%q (delete %v), but the acknowledged write at that revision is %s", w.Name, e.Rev, e.Key, e.Value, e.Delete, op))
				}
			}
		}
		if w.last() < upTo {
			v = append(v, fmt.Sprintf("watch %s: saw revisions up to %d, want at least %d", w.Name, w.last(), upTo))
		}
		missing := 0
		for rev, op := range known {
			if rev < w.From || rev > upTo || w.inGap(rev) {
				continue
			}
			if _, ok := seen[i][rev]; !ok {
				if missing < 10 {
					v = append(v, fmt.Sprintf("watch %s: missed revision %d of %s", w.Name, rev, op))
				}
				missing++
			}
		}
		if missing > 10 {
			v = append(v, fmt.Sprintf("watch %s: missed %d acknowledged write revisions in all", w.Name, missing))
		}
	}
	// Watchers agree on every revision both could see.
	for i := 1; i < len(logs); i++ {
		a, b := logs[0], logs[i]
		from := max(a.From, b.From)
		to := min(a.last(), b.last())
		diff := 0
		check := func(x, y *watchLog, sx, sy map[int64]watchEvent) {
			for rev, e := range sx {
				if rev < from || rev > to || y.inGap(rev) {
					continue
				}
				if f, ok := sy[rev]; !ok || f != e {
					if diff < 10 {
						v = append(v, fmt.Sprintf("watches %s and %s disagree at revision %d: %+v vs %+v (present %v)", x.Name, y.Name, rev, e, f, ok))
					}
					diff++
				}
			}
		}
		check(a, b, seen[0], seen[i])
		check(b, a, seen[i], seen[0])
	}
	return v
}

// resolveUnknown uses what the watchers saw to narrow writes whose outcome
// the client could not know, as etcd's robustness tests do. Values are
// unique, so a put or cas whose value a watcher saw was applied at that
// revision: it must have been linearized before any write with a higher
// revision returned, so its return time becomes the earliest such return.
// One whose value no watcher saw, when the watchers saw every revision up
// to upTo without a compaction gap, was never applied and is dropped.
// Anything else stays possibly-applied with its return at infinity. This
// can only remove freedom from the checker, never add it: a wrong
// resolution makes a violation appear, not disappear.
func resolveUnknown(ops []record, logs []*watchLog, end int64) []record {
	byValue := map[string]int64{}
	gaps := false
	for _, w := range logs {
		for _, e := range w.Events {
			if !e.Delete {
				byValue[e.Value] = e.Rev
			}
		}
		gaps = gaps || len(w.Gaps) > 0
	}
	// Earliest return among writes with a known revision above r.
	type rr struct{ rev, ret int64 }
	var acked []rr
	for _, op := range ops {
		if op.In.Kind.writes() && !op.Out.Unknown && op.Out.Rev > 0 {
			acked = append(acked, rr{op.Out.Rev, op.Return})
		}
	}
	sort.Slice(acked, func(i, j int) bool { return acked[i].rev < acked[j].rev })
	minRetAbove := make([]int64, len(acked)+1)
	minRetAbove[len(acked)] = math.MaxInt64
	for i := len(acked) - 1; i >= 0; i-- {
		minRetAbove[i] = min(minRetAbove[i+1], acked[i].ret)
	}
	out := make([]record, 0, len(ops))
	for _, op := range ops {
		if !op.Out.Unknown || (op.In.Kind != opPut && op.In.Kind != opCAS) {
			out = append(out, op)
			continue
		}
		rev, applied := byValue[op.In.Value]
		switch {
		case applied:
			i := sort.Search(len(acked), func(i int) bool { return acked[i].rev > rev })
			op.Return = max(op.Call, min(minRetAbove[i], end))
			op.Out = kvOutput{Rev: rev, Succeeded: true}
			if op.In.Kind == opCAS {
				// Applied: known to have succeeded; its expectation held.
				op.Out.Succeeded = true
			}
		case !gaps:
			continue // never applied
		default:
			op.Return = end
		}
		out = append(out, op)
	}
	return out
}

// checkReadRevisions checks that a read's mod revision is the revision at
// which the write of that (unique) value was acknowledged.
func checkReadRevisions(ops []record) []string {
	rev := map[string]int64{}
	for _, op := range ops {
		if (op.In.Kind == opPut || op.In.Kind == opCAS) && !op.Out.Unknown && op.Out.Rev > 0 {
			rev[op.In.Value] = op.Out.Rev
		}
	}
	var v []string
	for _, op := range ops {
		if op.In.Kind != opGet || op.Out.Unknown || !op.Out.Exists {
			continue
		}
		if r, ok := rev[op.Out.Value]; ok && r != op.Out.ModRev {
			v = append(v, fmt.Sprintf("read of %s=%q has mod revision %d; its write was acknowledged at revision %d", op.In.Key, op.Out.Value, op.Out.ModRev, r))
			if len(v) >= 10 {
				break
			}
		}
	}
	return v
}

// toPorcupine turns records into porcupine operations; unknown outcomes
// return at end (infinity for the checker: after every other operation).
func toPorcupine(ops []record, end int64) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		ret := op.Return
		if op.Out.Unknown {
			ret = end
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: op.In, Call: op.Call, Output: op.Out, Return: ret})
	}
	return out
}

// checkLinearizable runs porcupine over ops (already resolved). It returns
// the result and the info to visualize.
func checkLinearizable(ops []record, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo, int64) {
	var end int64
	for _, op := range ops {
		end = max(end, op.Return, op.Call)
	}
	end++
	res, info := porcupine.CheckOperationsVerbose(kvModel, toPorcupine(ops, end), timeout)
	return res, info, end
}

// faultEvent is one entry of the fault timeline.
type faultEvent struct {
	Kind    string
	Targets []int
	Start   int64 // ns since the run began
	End     int64
	Detail  string
}

func (f faultEvent) String() string {
	var t []string
	for _, i := range f.Targets {
		t = append(t, fmt.Sprintf("vetcd-%d", i))
	}
	return fmt.Sprintf("[%9s .. %9s] %-18s %-20s %s", time.Duration(f.Start).Round(time.Millisecond),
		time.Duration(f.End).Round(time.Millisecond), f.Kind, strings.Join(t, ","), f.Detail)
}

// annotations puts the fault timeline into the porcupine visualization.
func annotations(faults []faultEvent) []porcupine.Annotation {
	var a []porcupine.Annotation
	for _, f := range faults {
		a = append(a, porcupine.Annotation{Tag: "faults", Start: f.Start, End: max(f.End, f.Start), Description: f.Kind, Details: f.String(), BackgroundColor: "#fbe3c4"})
	}
	return a
}
