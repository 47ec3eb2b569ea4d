package sim

import (
	"flag"
	"fmt"
	"testing"
)

var (
	schedules = flag.Int("sim.schedules", 20000, "schedules TestSimulate explores (make simulate: 1000000)")
	steps     = flag.Int("sim.steps", 80, "events per schedule")
	firstSeed = flag.Uint64("sim.seed", 1, "first seed")
)

// TestSimulate explores sim.schedules schedules on two workers and fails
// with the first violation's seed and shrunk trace.
func TestSimulate(t *testing.T) {
	sum := Explore(Config{Steps: *steps}, *firstSeed, *schedules, 2, false)
	fmt.Println(sum.String()) // the summary line of make simulate
	if sum.Violations > 0 {
		t.Fatalf("%s\n%s", sum.String(), sum.First.String())
	}
}

// TestMutations proves the simulator's power: with a safety rule broken on
// purpose, the short run must find what the rule prevents (a zombie cluster
// or a double rebuild). It stops at the first violation.
func TestMutations(t *testing.T) {
	for _, tc := range []struct {
		m    Mutation
		rule int
	}{
		{MutationNoGenerationCheck, 1},
		{MutationSkipRebuildClaim, 4},
	} {
		t.Run(tc.m.String(), func(t *testing.T) {
			sum := Explore(Config{Steps: *steps, Mutation: tc.m}, *firstSeed, *schedules, 2, true)
			t.Log(sum.String())
			if sum.First == nil || (sum.First.Violation.Rule != 1 && sum.First.Violation.Rule != 4) {
				t.Fatalf("mutation %s: no violation in %d schedules", tc.m, sum.Schedules)
			}
			t.Logf("first: %s", sum.First.String())
		})
	}
}

// TestRegressions replays the schedules the mutations found (seed, shrunk
// schedule): each must break its invariant under its mutation, and keep
// every invariant with the rules intact.
func TestRegressions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		seed     uint64
		replicas int
		m        Mutation
		rule     int
		schedule string
	}{
		{"superseded voters restart without the generation check", 1030, 3, MutationNoGenerationCheck, 1,
			"F D2.1+1189 p0+618 p0+601 s1+813 p0+264 p0+1207 p0+1010 l0.3+132 k0+1006 D1.3+196 p2+728 l1.2+771"},
		{"voters restart between an unclaimed forced start and its record", 122, 3, MutationSkipRebuildClaim, 1,
			"F D2.1+559 p0+563 c2+810 p0+245 k0+740 D2.3+767 p1+1000 l2.1+94"},
		{"two survivors force from the same member list without a claim", 10851, 5, MutationSkipRebuildClaim, 4,
			"F k0+125 w3+760 D3.2+724 p1+677 p1+836 D2.2+629 p1+808 D3.1+610 p0+636 l0.1+742 p4+182 p0+911"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSchedule(tc.schedule)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.String(); got != tc.schedule {
				t.Fatalf("schedule does not round-trip: %q", got)
			}
			if g := Generate(Config{Replicas: tc.replicas, Steps: *steps}, tc.seed); g.Formed != s.Formed {
				t.Fatalf("seed %d no longer generates this schedule's start", tc.seed)
			}
			res := Run(Config{Replicas: tc.replicas, Steps: len(s.events), Mutation: tc.m, Trace: true}, s)
			if res.Violation == nil || res.Violation.Rule != tc.rule {
				t.Fatalf("mutation %s: want invariant %d broken, got %v", tc.m, tc.rule, res.Violation)
			}
			if res := Run(Config{Replicas: tc.replicas, Steps: len(s.events)}, s); res.Violation != nil {
				t.Fatalf("without the mutation: %v", res.Violation)
			}
		})
	}
}

// TestDeterministic: a seed replays exactly, whatever the worker split.
func TestDeterministic(t *testing.T) {
	a := Explore(Config{Steps: *steps}, 7, 500, 1, false)
	b := Explore(Config{Steps: *steps}, 7, 500, 2, false)
	if a.Steps != b.Steps || a.Rebuilds != b.Rebuilds || a.Excused != b.Excused {
		t.Fatalf("1 worker: %s\n2 workers: %s", a, b)
	}
}
