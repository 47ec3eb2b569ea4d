package sim

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Failure is a schedule that broke an invariant, shrunk.
type Failure struct {
	Seed      uint64
	Replicas  int
	Violation *Violation
	// Schedule replays the failure (Run with ParseSchedule's result).
	Schedule Schedule
	// Trace is what happened in the shrunk schedule.
	Trace []string
}

func (f *Failure) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d replicas: %s\nreplay: sim.Run(sim.Config{Replicas: %d, Steps: %d}, sim.ParseSchedule(%q))\n",
		f.Seed, f.Replicas, f.Violation.Error(), f.Replicas, len(f.Schedule.events), f.Schedule.String())
	for _, l := range f.Trace {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// Summary is what an exploration found.
type Summary struct {
	Schedules, Steps int
	Violations       int
	// ByRule counts the violating schedules by the invariant they broke.
	ByRule   [6]int
	Excused  int
	Regrown  int
	Rebuilds int
	// First is the first failure found (lowest seed), shrunk.
	First   *Failure
	Elapsed time.Duration
}

func (s Summary) String() string {
	out := fmt.Sprintf("simulate: %d schedules, %d steps, %d violations in %s (%d rebuilds; %d acknowledged writes lost to rebuilds, excused: no desired survivor held them; %d of them held by a replica desired again at the forced start)",
		s.Schedules, s.Steps, s.Violations, s.Elapsed.Round(time.Millisecond), s.Rebuilds, s.Excused, s.Regrown)
	for rule, n := range s.ByRule {
		if n > 0 {
			out += fmt.Sprintf("; invariant %d: %d", rule, n)
		}
	}
	return out
}

// Explore runs the schedules of seeds [from, from+count) on workers
// goroutines, alternating 3 and 5 replicas by seed unless cfg.Replicas is
// set, and stops early after the first violation when stopEarly. The
// schedules are independent: each worker owns its seeds (seed ≡ worker mod
// workers), and the run is deterministic whatever the interleaving.
func Explore(cfg Config, from uint64, count, workers int, stopEarly bool) Summary {
	start := time.Now()
	parts := make([]Summary, workers)
	firstSeed := make([]uint64, workers)
	var mu sync.Mutex
	stop := false
	var wg sync.WaitGroup
	for k := range workers {
		wg.Go(func() {
			p := &parts[k]
			for i, n := k, 0; i < count; i, n = i+workers, n+1 {
				if stopEarly && n%32 == 0 {
					mu.Lock()
					s := stop
					mu.Unlock()
					if s {
						return
					}
				}
				seed := from + uint64(i)
				c := cfg
				if c.Replicas == 0 {
					c.Replicas = 3 + 2*int(seed%2)
				}
				res := Run(c, Generate(c, seed))
				p.Schedules++
				p.Steps += res.Steps
				p.Excused += res.Excused
				p.Regrown += res.Regrown
				p.Rebuilds += res.Rebuilds
				if res.Violation != nil {
					p.Violations++
					p.ByRule[res.Violation.Rule]++
					if p.First == nil {
						p.First, firstSeed[k] = &Failure{Seed: seed, Replicas: c.Replicas, Violation: res.Violation}, seed
						if stopEarly {
							mu.Lock()
							stop = true
							mu.Unlock()
						}
					}
				}
			}
		})
	}
	wg.Wait()
	var sum Summary
	for k, p := range parts {
		sum.Schedules += p.Schedules
		sum.Steps += p.Steps
		sum.Violations += p.Violations
		for i, n := range p.ByRule {
			sum.ByRule[i] += n
		}
		sum.Excused += p.Excused
		sum.Regrown += p.Regrown
		sum.Rebuilds += p.Rebuilds
		if p.First != nil && (sum.First == nil || firstSeed[k] < sum.First.Seed) {
			sum.First = p.First
		}
	}
	if f := sum.First; f != nil {
		c := cfg
		c.Replicas = f.Replicas
		*f = Shrink(c, f.Seed)
	}
	sum.Elapsed = time.Since(start)
	return sum
}

// Shrink replays seed's schedule and makes it smaller while it still breaks
// the same invariant: first cut at the violating step, then drop events one
// at a time. It returns the shrunk failure with its trace.
func Shrink(cfg Config, seed uint64) Failure {
	s := Generate(cfg, seed)
	res := Run(cfg, s)
	if res.Violation == nil {
		return Failure{Seed: seed, Replicas: cfg.Replicas}
	}
	rule := res.Violation.Rule
	s.events = s.events[:res.Steps]
	fails := func(t Schedule) bool {
		r := Run(cfg, t)
		return r.Violation != nil && r.Violation.Rule == rule
	}
	for i := len(s.events) - 1; i >= 0; i-- {
		t := Schedule{Formed: s.Formed, events: append(s.events[:i:i], s.events[i+1:]...)}
		if fails(t) {
			s = t
		}
	}
	tc := cfg
	tc.Trace = true
	res = Run(tc, s)
	return Failure{Seed: seed, Replicas: cfg.Replicas, Violation: res.Violation, Schedule: s, Trace: res.Trace}
}
