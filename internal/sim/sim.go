package sim

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/vetcd/vetcd/internal/plan"
)

// Mutation breaks one safety rule on purpose, to prove that the simulator
// finds what that rule prevents.
type Mutation int

// Mutations.
const (
	MutationNone Mutation = iota
	// MutationNoGenerationCheck: every replica's observation reports the
	// record's generation as its data's marker, as a replica that never
	// checks its data against the record would.
	MutationNoGenerationCheck
	// MutationSkipRebuildClaim: the rebuild actor forces without claiming
	// the rebuild in the record first.
	MutationSkipRebuildClaim
)

func (m Mutation) String() string {
	switch m {
	case MutationNoGenerationCheck:
		return "no-generation-check"
	case MutationSkipRebuildClaim:
		return "skip-rebuild-claim"
	}
	return "none"
}

// Config is one schedule's shape.
type Config struct {
	// Replicas is N, the replica count (3 or 5).
	Replicas int
	// Steps is how many events a schedule runs.
	Steps    int
	Mutation Mutation
	// Trace records what happens, for a failure's report.
	Trace bool
}

// Violation is a broken invariant.
type Violation struct {
	Step   int
	Rule   int
	Detail string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("invariant %d (%s) broken at step %d: %s", v.Rule, ruleNames[v.Rule], v.Step, v.Detail)
}

var ruleNames = [...]string{1: "one serving group, no acknowledged write lost", 2: "no voter removal below quorum",
	3: "a removed member never runs again", 4: "one claim, one rebuild per member list", 5: "record generation and MaxRevision never decrease"}

// Result is one schedule's outcome.
type Result struct {
	Steps     int
	Violation *Violation
	Acked     int
	Excused   int
	// Regrown counts excused losses held by a replica that was desired
	// again by the time of the forced start (the desired count grew
	// between the rebuild's decision and its forced start).
	Regrown    int
	Rebuilds   int
	Generation uint64
	Trace      []string
}

type eventKind uint8

const (
	evPass eventKind = iota
	evLate
	evController
	evWrite
	evKill
	evStart
	evFreeze
	evThaw
	evScale
	evScaleKill
	evLoseWrite
	evKinds
)

var eventCodes = [evKinds]byte{'p', 'l', 'c', 'w', 'k', 's', 'f', 't', 'd', 'D', 'x'}

// event is one scheduler step: time advances by dt, then kind happens to
// replica ord (arg: the desired count, the lateness, the loss mode).
type event struct {
	kind eventKind
	ord  uint8
	arg  uint8
	dt   uint16 // milliseconds
}

func (e event) String() string {
	s := string(eventCodes[e.kind]) + strconv.Itoa(int(e.ord))
	if e.arg != 0 {
		s += "." + strconv.Itoa(int(e.arg))
	}
	return s + "+" + strconv.Itoa(int(e.dt))
}

// Schedule is a replayable list of events, written as in a failure report:
// "F p0+120 w0+40 d1+900 …" (F: start from a formed cluster, E: empty).
type Schedule struct {
	Formed bool
	events []event
}

func (s Schedule) String() string {
	var b strings.Builder
	if s.Formed {
		b.WriteString("F")
	} else {
		b.WriteString("E")
	}
	for _, e := range s.events {
		b.WriteByte(' ')
		b.WriteString(e.String())
	}
	return b.String()
}

// ParseSchedule reads a Schedule's String.
func ParseSchedule(s string) (Schedule, error) {
	f := strings.Fields(s)
	if len(f) == 0 || (f[0] != "F" && f[0] != "E") {
		return Schedule{}, fmt.Errorf("sim: schedule %q: must start with F or E", s)
	}
	out := Schedule{Formed: f[0] == "F"}
	for _, tok := range f[1:] {
		k := strings.IndexByte(string(eventCodes[:]), tok[0])
		body, dt, ok := strings.Cut(tok[1:], "+")
		if k < 0 || !ok {
			return Schedule{}, fmt.Errorf("sim: schedule event %q: want <kind><ordinal>[.<arg>]+<ms>", tok)
		}
		ordS, argS, _ := strings.Cut(body, ".")
		ord, err1 := strconv.Atoi(ordS)
		ms, err2 := strconv.Atoi(dt)
		arg := 0
		var err3 error
		if argS != "" {
			arg, err3 = strconv.Atoi(argS)
		}
		if err1 != nil || err2 != nil || err3 != nil {
			return Schedule{}, fmt.Errorf("sim: schedule event %q: bad number", tok)
		}
		out.events = append(out.events, event{kind: eventKind(k), ord: uint8(ord), arg: uint8(arg), dt: uint16(ms)})
	}
	return out, nil
}

// Generate draws a schedule from seed.
func Generate(cfg Config, seed uint64) Schedule {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	s := Schedule{Formed: rng.IntN(5) != 0, events: make([]event, cfg.Steps)}
	n := cfg.Replicas
	for i := range s.events {
		e := event{ord: uint8(rng.IntN(n)), dt: uint16(50 + rng.IntN(1200))}
		switch x := rng.IntN(100); {
		case x < 46:
			e.kind = evPass
		case x < 52:
			e.kind, e.arg = evLate, uint8(1+rng.IntN(maxHist-1))
		case x < 62:
			e.kind = evController
		case x < 72:
			e.kind = evWrite
		case x < 77:
			e.kind = evKill
		case x < 84:
			e.kind = evStart
		case x < 87:
			e.kind = evFreeze
		case x < 90:
			e.kind = evThaw
		case x < 93:
			e.kind, e.arg = evScale, uint8(1+rng.IntN(n))
		case x < 97:
			e.kind, e.arg = evScaleKill, uint8(1+rng.IntN(n))
		default:
			e.kind, e.arg = evLoseWrite, uint8(1+rng.IntN(2))
		}
		s.events[i] = e
	}
	return s
}

// Record write faults armed by evLoseWrite.
const (
	loseApplied = 1 // applied, but reported failed
	loseLost    = 2 // never applied
)

type world struct {
	cfg        Config
	now        time.Time
	step       int
	desired    int
	rec        plan.Record
	recVer     uint64
	loseNext   uint8
	reps       []*replica
	seq        uint64
	acked      []uint32
	excused    int
	regrown    int
	rebuilds   int
	removed    []uint64
	forcedFrom []string
	violation  *Violation
	trace      []string
	curCluster uint64
	taken      [8]bool
	tried      [8]bool
	ls         []*replica
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newWorld(cfg Config) *world {
	w := &world{cfg: cfg, now: epoch, desired: cfg.Replicas, seq: 0x10}
	for i := range cfg.Replicas {
		w.reps = append(w.reps, &replica{ord: i, name: "vetcd-" + strconv.Itoa(i), proc: true, hist: make([]snap, 0, maxHist)})
	}
	return w
}

func (w *world) newID() uint64    { w.seq++; return w.seq }
func (w *world) newEntry() uint32 { w.seq++; return uint32(w.seq) }
func (w *world) tracef(f string, a ...any) {
	if w.cfg.Trace {
		w.trace = append(w.trace, fmt.Sprintf(f, a...))
	}
}

func (w *world) violate(rule int, f string, a ...any) {
	if w.violation == nil {
		w.violation = &Violation{Step: w.step, Rule: rule, Detail: fmt.Sprintf(f, a...)}
		w.tracef("  VIOLATION: %s", w.violation.Error())
	}
}

// form brings the world to a formed cluster of N voters by running the
// actors without faults: ordinal 0 founds, the others join, the leader's
// controller promotes them.
func (w *world) form() {
	for round := 0; round < 20*len(w.reps); round++ {
		for _, r := range w.reps {
			w.pass(r, 0)
			w.settle()
			w.controller()
			w.settle()
		}
		w.now = w.now.Add(time.Second)
		if l := w.clusterLeader(uint64(w.rec.ClusterID)); l != nil && l.d.voters() == len(w.reps) && w.rec.Claim == nil {
			all := true
			for _, r := range w.reps {
				all = all && len(r.pending) == 0 && r.leader != 0 && r.d.gen == w.rec.Generation
			}
			if all {
				return
			}
		}
	}
}

// Run runs one schedule.
func Run(cfg Config, s Schedule) Result {
	w := newWorld(cfg)
	if s.Formed {
		tr := w.cfg.Trace
		w.cfg.Trace = false
		w.form()
		w.cfg.Trace = tr
		w.tracef("formed: %s", recordString(w.rec))
	}
	res := Result{}
	for i, e := range s.events {
		w.step = i
		w.now = w.now.Add(time.Duration(e.dt) * time.Millisecond)
		w.apply(e)
		w.settle()
		w.check()
		res.Steps = i + 1
		if w.violation != nil {
			break
		}
	}
	res.Violation, res.Acked, res.Excused, res.Rebuilds, res.Generation, res.Trace = w.violation, len(w.acked), w.excused, w.rebuilds, w.rec.Generation, w.trace
	res.Regrown = w.regrown
	return res
}

func (w *world) apply(e event) {
	if int(e.ord) >= len(w.reps) {
		return
	}
	r := w.reps[e.ord]
	if w.cfg.Trace {
		w.tracef("step %d t=%s: %s", w.step, w.now.Sub(epoch), e.describe())
	}
	switch e.kind {
	case evPass:
		w.pass(r, 0)
	case evLate:
		w.pass(r, int(e.arg))
	case evController:
		w.controller()
	case evWrite:
		w.write()
	case evKill:
		if r.proc {
			r.proc = false
			r.reset()
		}
	case evStart:
		if int(e.ord) < w.desired {
			r.reset()
			r.proc = true
		}
	case evFreeze:
		if r.proc {
			r.frozen = true
		}
	case evThaw:
		r.frozen = false
	case evScale, evScaleKill:
		n := int(e.arg)
		if n < 1 || n > len(w.reps) {
			return
		}
		w.desired = n
		for _, x := range w.reps {
			switch {
			case x.ord >= n && e.kind == evScaleKill && x.proc:
				x.proc = false
				x.reset()
			case x.ord < n && !x.proc:
				x.reset()
				x.proc = true
			}
		}
	case evLoseWrite:
		w.loseNext = e.arg
	}
}

func (e event) describe() string {
	switch e.kind {
	case evPass:
		return fmt.Sprintf("replica %d passes", e.ord)
	case evLate:
		return fmt.Sprintf("replica %d passes on its observation %d passes old", e.ord, e.arg)
	case evController:
		return "the leader's controller passes"
	case evWrite:
		return "a client writes"
	case evKill:
		return fmt.Sprintf("kill replica %d", e.ord)
	case evStart:
		return fmt.Sprintf("(re)start replica %d's process", e.ord)
	case evFreeze:
		return fmt.Sprintf("freeze replica %d", e.ord)
	case evThaw:
		return fmt.Sprintf("thaw replica %d", e.ord)
	case evScale:
		return fmt.Sprintf("scale to %d", e.arg)
	case evScaleKill:
		return fmt.Sprintf("scale to %d, surplus killed at once", e.arg)
	case evLoseWrite:
		if e.arg == loseApplied {
			return "the next record write is applied but reported failed"
		}
		return "the next record write is lost"
	}
	return "?"
}

// write is a client write: every leader acknowledges one (a second leader is
// already a violation), after its log was checked to hold every write
// acknowledged before.
func (w *world) write() {
	for _, l := range w.leaders() {
		if !containsAll(l.d.log, w.acked) {
			w.violate(1, "zombie cluster: leader %x (replica %d, cluster %x, data generation %d) acknowledges a write but its log lacks acknowledged writes", l.d.memberID, l.ord, l.d.clusterID, l.d.gen)
			return
		}
		id := w.newEntry()
		l.d.log = append(l.d.log, id)
		w.acked = append(w.acked, id)
		w.tracef("  write %d acknowledged by replica %d", id, l.ord)
	}
}

// containsAll reports whether log holds every entry of want; both ascend.
func containsAll(log, want []uint32) bool {
	i := 0
	for _, x := range want {
		for i < len(log) && log[i] < x {
			i++
		}
		if i == len(log) || log[i] != x {
			return false
		}
	}
	return true
}

// checkForcedLoss is invariant 1 at a forced start: the acknowledged writes
// the survivor lacks are lost; that is excused only if no replica desired
// when the rebuild was decided held them in its data.
func (w *world) checkForcedLoss(r *replica, desired int) {
	kept := w.acked[:0:0]
	for _, x := range w.acked {
		if containsAll(r.d.log, []uint32{x}) {
			kept = append(kept, x)
			continue
		}
		regrown := false
		for _, o := range w.reps {
			if o.d != nil && o.d.clusterID == r.d.clusterID && containsAll(o.d.log, []uint32{x}) {
				if o.ord < desired {
					w.violate(1, "rebuild from replica %d drops acknowledged write %d held by desired replica %d", r.ord, x, o.ord)
				}
				regrown = regrown || o.ord < w.desired
			}
		}
		if regrown {
			w.regrown++
		}
		w.excused++
		w.tracef("  write %d lost to the rebuild (no desired survivor held it): excused", x)
	}
	w.acked = kept
}

// checkRemoval is invariant 2, on the model's truth: a voter's removal must
// leave a quorum of healthy voters.
func (w *world) checkRemoval(l *replica, id uint64, who string) {
	if !l.d.isVoter(id) {
		return
	}
	voters, healthy := 0, 0
	for _, m := range l.d.members {
		if m.learner || m.id == id {
			continue
		}
		voters++
		if v := w.byMember(l.d.clusterID, m.id); v != nil && v.leader == l.d.memberID {
			healthy++
		}
	}
	if healthy < plan.Quorum(voters) {
		w.violate(2, "%s of voter %x leaves %d healthy of %d voters", who, id, healthy, voters)
	}
}

// check runs the invariants that hold between steps.
func (w *world) check() {
	ls := w.leaders()
	if len(ls) > 1 {
		var b strings.Builder
		for _, l := range ls {
			fmt.Fprintf(&b, " replica %d (member %x, cluster %x, data generation %d, log %d);", l.ord, l.d.memberID, l.d.clusterID, l.d.gen, len(l.d.log))
		}
		w.violate(1, "zombie cluster: %d groups can acknowledge writes:%s", len(ls), b.String())
	}
	for _, l := range ls {
		for _, r := range w.reps {
			if r.leader != l.d.memberID || r.d.clusterID != l.d.clusterID || !w.isRemoved(r.d.memberID) {
				continue
			}
			if l.d.isVoter(r.d.memberID) {
				// Removed voters vote again: a member list that was
				// superseded (a rebuild dropped it) or shrunk serves.
				w.violate(1, "zombie cluster: leader %x (replica %d, data generation %d, record generation %d) serves with removed voter %x (replica %d)",
					l.d.memberID, l.ord, l.d.gen, w.rec.Generation, r.d.memberID, r.ord)
			}
			w.violate(3, "removed member %x (replica %d) runs again in a serving group", r.d.memberID, r.ord)
		}
	}
	if c := w.rec.Claim; c != nil && c.Holder >= len(w.reps) {
		w.violate(4, "claim held by unknown replica %d", c.Holder)
	}
}
