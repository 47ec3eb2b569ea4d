// Command report turns the results of bench/steady.sh (the TSV files and
// logged settings in bench/out/) into BENCHMARKS.md.
//
// It computes nothing the script did not measure: per scenario and system it
// takes the median over the rounds of each run's throughput and latency
// percentiles; per round it divides vetcd's throughput by etcd's (the two
// runs of a round are adjacent in time), and compares the median of those
// ratios with the target. When the target is not met, the file says so.
//
// Usage (from bench/tools):
//
//	go run ./report -in ../out -out ../../BENCHMARKS.md
package main

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// target is the lowest acceptable vetcd/etcd throughput ratio: the
// controller must cost nothing measurable.
const target = 0.95

// noisyForeign is the share of the machine's CPU (percent) that other work
// may use during a run before the report calls the run disturbed.
const noisyForeign = 10.0

// scenario describes one load shape of steady.sh, in report order.
type scenario struct {
	name  string // as in steady.tsv
	title string
	what  string
}

var scenarios = []scenario{
	{"put-1", "Put, 1 client", "1 client on 1 connection, sequential puts of 256 B values to random 8 B keys"},
	{"put-100", "Put, 100 clients", "100 clients on 100 connections, puts of 256 B values to random 8 B keys"},
	{"range-100", "Range, 100 clients (linearizable)", "100 clients on 100 connections, linearizable gets of one key holding a 256 B value"},
}

// systems in report order; the ratio is systems[0]/systems[1].
var systems = []string{"vetcd", "etcd"}

// run is one row of steady.tsv: one benchmark run against one system.
type run struct {
	system, scenario string
	round            int
	totalSeconds     float64
	reqPerSec        float64
	p50, p90, p99    float64 // seconds
	errors           int
	serverCPU        float64 // CPU seconds of the system's 3 server processes
	machineBusy      float64 // percent of the whole machine's CPU
	foreignCPU       float64 // percent of the machine used by work steady.sh did not start
}

// requests is the number of requests the run sent.
func (r run) requests() float64 { return r.totalSeconds * r.reqPerSec }

func main() {
	in := flag.String("in", "../out", "directory with steady.sh's results")
	out := flag.String("out", "../../BENCHMARKS.md", "markdown file to write")
	flag.Parse()
	// The report being replaced: its sections stand in for results that
	// are not in the results directory.
	old, err := os.ReadFile(*out)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	md, err := render(*in, previous{text: string(old)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, md, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "report: wrote", *out)
}

// readTSV reads a TSV file with a header row into maps keyed by column.
func readTSV(path string) ([]map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("%s: no rows", path)
	}
	head := strings.Split(lines[0], "\t")
	var rows []map[string]string
	for i, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != len(head) {
			return nil, fmt.Errorf("%s:%d: %d fields, header has %d", path, i+2, len(f), len(head))
		}
		m := map[string]string{}
		for j, h := range head {
			m[h] = f[j]
		}
		rows = append(rows, m)
	}
	return rows, nil
}

// readMeta reads meta.tsv: key TAB value, no header.
func readMeta(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, _ := strings.Cut(s.Text(), "\t")
		m[k] = strings.TrimSpace(v)
	}
	return m, s.Err()
}

// parser converts TSV fields and remembers the first error.
type parser struct{ err error }

func (p *parser) float(m map[string]string, k string) float64 {
	v, err := strconv.ParseFloat(m[k], 64)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("column %s: %w", k, err)
	}
	return v
}

func (p *parser) int(m map[string]string, k string) int {
	v, err := strconv.Atoi(m[k])
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("column %s: %w", k, err)
	}
	return v
}

func readRuns(path string) ([]run, error) {
	rows, err := readTSV(path)
	if err != nil {
		return nil, err
	}
	var runs []run
	for _, m := range rows {
		var p parser
		r := run{
			system: m["system"], scenario: m["scenario"], round: p.int(m, "round"),
			totalSeconds: p.float(m, "total_seconds"), reqPerSec: p.float(m, "req_per_sec"),
			p50: p.float(m, "p50_s"), p90: p.float(m, "p90_s"), p99: p.float(m, "p99_s"),
			errors: p.int(m, "errors"), serverCPU: p.float(m, "server_cpu_s"),
			machineBusy: p.float(m, "machine_busy_pct"), foreignCPU: p.float(m, "foreign_cpu_pct"),
		}
		if p.err != nil {
			return nil, fmt.Errorf("%s: %w", path, p.err)
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// median of xs (mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// stats summarizes the rounds of one system in one scenario.
type stats struct {
	rounds      int
	rps, rpsMin float64
	rpsMax      float64
	p50, p99    float64 // medians over the rounds, seconds
	cpuPer1k    float64 // median server CPU seconds per 1000 requests
	errors      int
	perRound    map[int]float64 // req/s by round
	foreign     map[int]float64 // other work's share of the machine, by round
}

func summarize(runs []run) stats {
	st := stats{rounds: len(runs), perRound: map[int]float64{}, foreign: map[int]float64{}}
	var rps, p50, p99, cpu []float64
	for _, r := range runs {
		rps = append(rps, r.reqPerSec)
		p50 = append(p50, r.p50)
		p99 = append(p99, r.p99)
		if n := r.requests(); n > 0 {
			cpu = append(cpu, r.serverCPU*1000/n)
		}
		st.errors += r.errors
		st.perRound[r.round] = r.reqPerSec
		st.foreign[r.round] = r.foreignCPU
	}
	st.rps, st.p50, st.p99, st.cpuPer1k = median(rps), median(p50), median(p99), median(cpu)
	st.rpsMin, st.rpsMax = slices.Min(rps), slices.Max(rps)
	return st
}

// pairedRounds lists, in round order, the rounds both a and b ran.
func pairedRounds(a, b stats) []int {
	var rounds []int
	for k := range a.perRound {
		if _, ok := b.perRound[k]; ok {
			rounds = append(rounds, k)
		}
	}
	sort.Ints(rounds)
	return rounds
}

// pairedRatios divides a's req/s by b's in every round both ran, in round
// order: each ratio compares two runs adjacent in time.
func pairedRatios(a, b stats) []float64 {
	var out []float64
	for _, k := range pairedRounds(a, b) {
		out = append(out, a.perRound[k]/b.perRound[k])
	}
	return out
}

// ms formats seconds as milliseconds.
func ms(s float64) string {
	switch {
	case s < 0.01:
		return fmt.Sprintf("%.2f ms", s*1000)
	case s < 0.1:
		return fmt.Sprintf("%.1f ms", s*1000)
	}
	return fmt.Sprintf("%.0f ms", s*1000)
}

// mib formats KiB as MiB.
func mib(kib float64) string { return fmt.Sprintf("%.0f MiB", kib/1024) }

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func render(in string, prev previous) ([]byte, error) {
	var b bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	w("# Benchmarks\n\n")
	w("Generated by `make bench` (the scripts in bench/, then bench/tools/report) from the results in bench/out/.\n")
	w("A section whose results are not in bench/out/ is kept as the previous report had it, and says so.\n")
	w("Do not edit by hand: run `make bench` again.\n\n")

	if _, err := os.Stat(filepath.Join(in, "meta.tsv")); errors.Is(err, fs.ErrNotExist) {
		prev.keep(w, "", "## Steady state", "make -C bench steady")
	} else if err := renderSteady(w, in); err != nil {
		return nil, err
	}
	if err := renderRecovery(w, in, prev); err != nil {
		return nil, err
	}
	if err := renderMembership(w, in, prev); err != nil {
		return nil, err
	}
	if ok, err := renderRestart(w, in); err != nil {
		return nil, err
	} else if !ok {
		prev.keep(w, "", "## Crash restart", "make -C bench restart")
	}
	// Sections the Go benchmarks write themselves (bench/*_test.go with
	// BENCH_OUT set), in a fixed order; a missing one says how to make it.
	fragments := []struct{ file, title, make string }{
		{"snapshot.md", "Snapshot create and restore", "make -C bench snapshot"},
		{"migrate.md", "Migration from kine SQLite", "make -C bench migrate"},
		{"footprint.md", "Footprint", "make -C bench footprint"},
		{"chaos.md", "Chaos", "make chaos"},
		{"simulate.md", "Deterministic simulation", "make simulate"},
	}
	for _, f := range fragments {
		md, err := os.ReadFile(filepath.Join(in, f.file))
		if errors.Is(err, os.ErrNotExist) {
			prev.keep(w, "", "## "+f.title, f.make)
			continue
		}
		if err != nil {
			return nil, err
		}
		w("%s\n\n", bytes.TrimSpace(md))
	}
	return append(bytes.TrimRight(b.Bytes(), "\n"), '\n'), nil
}

// renderSteady writes the steady-state section from steady.sh's results.
func renderSteady(w func(string, ...any), in string) error {
	meta, err := readMeta(filepath.Join(in, "meta.tsv"))
	if err != nil {
		return err
	}
	if meta["duration_seconds"] == "" {
		return errors.New("meta.tsv has no duration_seconds: steady.sh did not finish")
	}
	runs, err := readRuns(filepath.Join(in, "steady.tsv"))
	if err != nil {
		return err
	}
	rss, err := readTSV(filepath.Join(in, "rss.tsv"))
	if err != nil {
		return err
	}
	idle, err := readTSV(filepath.Join(in, "idle.tsv"))
	if err != nil {
		return err
	}

	w("## Steady state: vetcd against stock etcd %s\n\n", meta["etcd_version"])
	w("A 3-replica `vetcd up` cluster and a stock etcd %s three-member cluster, started with the same etcd\n", meta["etcd_version"])
	w("flags, both running on this machine at the same time, were loaded in turn by etcd's own load generator\n")
	w("(`tools/benchmark`), alternating the systems in every round (vetcd then etcd in odd rounds, etcd then\n")
	w("vetcd in even rounds) for %s rounds. Each number is the median over the rounds. Both systems received\n", meta["rounds"])
	w("the same sequence of requests. The client ran on the same machine, against all three members' client\n")
	w("endpoints (gRPC round robin, so two requests in three go to a follower and are forwarded to the leader).\n\n")

	w("| | |\n|---|---|\n")
	w("| Command | `make bench` in the repository root (builds bin/vetcd, then `make -C bench`) |\n")
	w("| Date | %s |\n", meta["date"])
	memKiB, _ := strconv.ParseFloat(meta["mem_kib"], 64)
	w("| Machine | %s CPUs (%s), %.1f GiB memory, %s |\n", meta["nproc"], meta["cpu"], memKiB/1024/1024, meta["kernel"])
	w("| Go | %s |\n", meta["go"])
	w("| etcd | %s (stock, built from go.etcd.io/etcd/server/v3 as pinned in bench/tools/go.mod) |\n", meta["etcd_version"])
	w("| Load | %s; 256 B values, 8 B keys from a space of %s keys |\n", meta["totals"], meta["key_space"])
	w("| Load average (1, 5, 15 min) | %s at start, %s at end |\n", meta["loadavg_start"], meta["loadavg_end"])
	w("| Run time | %s s (startup of both clusters %s s) |\n\n", meta["duration_seconds"], meta["startup_seconds"])

	// Summary first, then one table per scenario.
	type result struct {
		sc     scenario
		st     map[string]stats
		paired []float64 // vetcd/etcd req/s of each round
		// ratio is the median of the per-round ratios: the verdict's number.
		// ratioOfMedians divides the two systems' median req/s.
		ratio, ratioOfMedians float64
	}
	var results []result
	for _, sc := range scenarios {
		res := result{sc: sc, st: map[string]stats{}}
		for _, sys := range systems {
			var rs []run
			for _, r := range runs {
				if r.scenario == sc.name && r.system == sys {
					rs = append(rs, r)
				}
			}
			if len(rs) == 0 {
				return fmt.Errorf("steady.tsv has no %s run of %s", sys, sc.name)
			}
			res.st[sys] = summarize(rs)
		}
		v, e := res.st[systems[0]], res.st[systems[1]]
		res.paired = pairedRatios(v, e)
		if len(res.paired) == 0 {
			return fmt.Errorf("steady.tsv has no round of %s that ran both systems", sc.name)
		}
		res.ratio = median(res.paired)
		res.ratioOfMedians = v.rps / e.rps
		results = append(results, res)
	}

	w("### Summary\n\n")
	noisy := 0
	for _, r := range runs {
		if r.foreignCPU > noisyForeign {
			noisy++
		}
	}
	if noisy*10 > len(runs) {
		w("**Disturbed run:** in %d of %d benchmark runs, other work on this machine (not started by steady.sh) used\n", noisy, len(runs))
		w("more than %.0f %% of its CPU; see the per-round tables. Numbers from a quiet machine are more trustworthy.\n\n", noisyForeign)
	}
	w("Target: vetcd's throughput at least %.2f × stock etcd's in every scenario.\n\n", target)
	w("| Scenario | vetcd req/s | etcd req/s | Throughput ratio vetcd/etcd | Target ≥ %.2f | Per-round ratios min–max | Ratio of the medians | p99 vetcd | p99 etcd | p99 ratio vetcd/etcd |\n", target)
	w("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
	var notMet, disagree []string
	for _, r := range results {
		v, e := r.st["vetcd"], r.st["etcd"]
		ok := r.ratio >= target
		if !ok {
			notMet = append(notMet, r.sc.title)
		}
		if ok != (r.ratioOfMedians >= target) {
			disagree = append(disagree, r.sc.title)
		}
		w("| %s | %.0f | %.0f | %.3f | %s | %.2f–%.2f | %.3f | %s | %s | %.2f |\n", r.sc.title, v.rps, e.rps, r.ratio, metOrNot(ok),
			slices.Min(r.paired), slices.Max(r.paired), r.ratioOfMedians, ms(v.p99), ms(e.p99), v.p99/e.p99)
	}
	w("\n")
	if len(notMet) == 0 {
		w("The throughput target is met in every scenario.\n\n")
	} else {
		w("The throughput target is **not met** in %d of %d scenarios: %s.\n\n", len(notMet), len(results), strings.Join(notMet, "; "))
	}
	w("How to read it: req/s and p99 are each system's median over the rounds. The throughput ratio is the median,\n")
	w("over the rounds, of vetcd's req/s divided by etcd's in the same round; the two runs of a round are adjacent in\n")
	w("time and share the machine's noise, so this pairing is what the alternation is for, and the verdict uses it.\n")
	w("The ratio of the two medians, which ignores the pairing, is shown next to it. The min–max of the per-round\n")
	w("ratios is how far one comparison moves with this machine's noise; a difference inside it is not resolved here.\n")
	if len(disagree) > 0 {
		w("The two ratios fall on different sides of the target in: %s.\n", strings.Join(disagree, "; "))
	}
	w("A p99 ratio above 1 means vetcd's 99th percentile latency is higher; it has no target here.\n\n")

	for _, r := range results {
		v, e := r.st["vetcd"], r.st["etcd"]
		w("### %s\n\n%s.\n\n", r.sc.title, r.sc.what)
		w("| System | req/s (median) | req/s (min–max) | p50 | p99 | Server CPU s per 1000 requests | Errors |\n")
		w("|---|---:|---:|---:|---:|---:|---:|\n")
		for _, sys := range systems {
			st := r.st[sys]
			w("| %s | %.0f | %.0f–%.0f | %s | %s | %.2f | %d |\n", sys, st.rps, st.rpsMin, st.rpsMax, ms(st.p50), ms(st.p99), st.cpuPer1k, st.errors)
		}
		w("\nThroughput ratio vetcd/etcd %.3f (target ≥ %.2f: %s; ratio of the medians %.3f); p99 ratio vetcd/etcd %.2f.\n\n",
			r.ratio, target, metOrNot(r.ratio >= target), r.ratioOfMedians, v.p99/e.p99)
		w("| Round | vetcd req/s | etcd req/s | Ratio | Other work on the machine (vetcd run, etcd run) |\n|---:|---:|---:|---:|---:|\n")
		for _, k := range pairedRounds(v, e) {
			w("| %d | %.0f | %.0f | %.2f | %.0f %%, %.0f %% |\n", k, v.perRound[k], e.perRound[k], v.perRound[k]/e.perRound[k], v.foreign[k], e.foreign[k])
		}
		w("\n")
	}

	if err := renderRSS(w, rss); err != nil {
		return err
	}
	renderIdle(w, idle)
	if err := renderSettings(w, in); err != nil {
		return err
	}
	renderBuild(w, meta)

	w("### Checks\n\n")
	w("- Members at the end: vetcd `%s`, etcd `%s` (learners would be marked).\n", meta["vetcd_members"], meta["etcd_members"])
	w("- vetcd replica restarts by the supervisor during the run: %s (the replica pids were also checked unchanged).\n", meta["vetcd_restarts"])
	dbV, _ := strconv.ParseFloat(meta["vetcd_db_size"], 64)
	dbE, _ := strconv.ParseFloat(meta["etcd_db_size"], 64)
	w("- Database size at the end: vetcd %s, etcd %s.\n", mib(dbV/1024), mib(dbE/1024))
	w("- Log lines written by the 3 members (startup, then the load): vetcd %s + %s, etcd %s + %s.\n",
		meta["vetcd_log_lines_idle"], diff(meta["vetcd_log_lines_end"], meta["vetcd_log_lines_idle"]),
		meta["etcd_log_lines_idle"], diff(meta["etcd_log_lines_end"], meta["etcd_log_lines_idle"]))
	var busy []float64
	for _, r := range runs {
		busy = append(busy, r.machineBusy)
	}
	w("- Whole-machine CPU use during the runs (both clusters, the load generator and anything else): %.0f–%.0f %% (median %.0f %%).\n",
		slices.Min(busy), slices.Max(busy), median(busy))
	var foreign []float64
	for _, r := range runs {
		foreign = append(foreign, r.foreignCPU)
	}
	w("- Other work on the machine (CPU that steady.sh did not start, as a share of the machine) during the runs:\n")
	w("  median %.0f %%, max %.0f %%; %d of %d runs above %.0f %%. Before the start it was %s %% busy (waited %s s for it to calm down).\n\n",
		median(foreign), slices.Max(foreign), noisy, len(runs), noisyForeign, meta["busy_before_start_pct"], meta["quiet_waited_seconds"])

	w("### Reproduce\n\n")
	w("```\nmake bench                      # in the repository root: every benchmark; steady.sh took %s s here\n", meta["duration_seconds"])
	w("ROUNDS=3 make -C bench steady    # steady.sh's knobs: ROUNDS, PUT1_TOTAL, PUT100_TOTAL, RANGE100_TOTAL, IDLE_SECONDS, QUIET_WAIT\n")
	w("make -C bench report             # rewrite this file from bench/out/\n```\n\n")
	w("On a machine with only a few cores the clusters and the load generator compete for the same CPUs, so\n")
	w("absolute numbers mean little; the ratio of the two systems measured alternately in the same run is the result.\n\n")

	return nil
}

// diff returns a-b for two decimal integers, or "?" if either is missing.
func diff(a, b string) string {
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return "?"
	}
	return strconv.Itoa(x - y)
}

// renderRSS writes the memory table: the sum over the 3 server processes.
func renderRSS(w func(string, ...any), rows []map[string]string) error {
	sum := map[string]float64{} // key: phase/system/column
	for _, m := range rows {
		for _, col := range []string{"vmrss_kib", "vmhwm_kib"} {
			v, err := strconv.ParseFloat(m[col], 64)
			if err != nil {
				return fmt.Errorf("rss.tsv: %s: %w", col, err)
			}
			sum[m["phase"]+"/"+m["system"]+"/"+col] += v
		}
	}
	w("### Memory\n\n")
	w("Resident set size (VmRSS) summed over each system's 3 server processes, once both clusters were\n")
	w("ready (idle) and after all the load; peak is VmHWM at the end.\n\n")
	w("| System | RSS idle | RSS after load | Peak RSS |\n|---|---:|---:|---:|\n")
	for _, sys := range systems {
		w("| %s (3 processes) | %s | %s | %s |\n", sys, mib(sum["idle/"+sys+"/vmrss_kib"]),
			mib(sum["after-load/"+sys+"/vmrss_kib"]), mib(sum["after-load/"+sys+"/vmhwm_kib"]))
	}
	w("| `vetcd up` supervisor (1 process) | %s | %s | %s |\n\n", mib(sum["idle/vetcd-up/vmrss_kib"]),
		mib(sum["after-load/vetcd-up/vmrss_kib"]), mib(sum["after-load/vetcd-up/vmhwm_kib"]))
	v, e := sum["after-load/vetcd/vmrss_kib"], sum["after-load/etcd/vmrss_kib"]
	w("After load vetcd's replicas hold %.2f × stock etcd's RSS. The `vetcd up` supervisor is the local stand-in\n", v/e)
	w("for a StatefulSet controller and has no counterpart in a Kubernetes deployment, so it is listed apart.\n\n")
	return nil
}

// renderIdle writes the CPU both systems used while idle side by side.
func renderIdle(w func(string, ...any), rows []map[string]string) {
	w("### Idle CPU\n\n")
	w("CPU time used while both clusters sat idle, side by side, before the load.\n\n")
	w("| System | Window | CPU seconds | Share of one core |\n|---|---:|---:|---:|\n")
	for _, m := range rows {
		secs, _ := strconv.ParseFloat(m["seconds"], 64)
		cpu, _ := strconv.ParseFloat(m["cpu_seconds"], 64)
		name := m["system"] + " (3 processes)"
		if m["system"] == "vetcd-up" {
			name = "`vetcd up` supervisor"
		}
		share := 0.0
		if secs > 0 {
			share = 100 * cpu / secs
		}
		w("| %s | %s s | %.2f | %.1f %% |\n", name, m["seconds"], cpu, share)
	}
	w("\n")
}

// identity lists logged settings that name a member rather than configure
// it; they differ between any two members and are not compared.
var identity = map[string]bool{
	"level": true, "ts": true, "caller": true, "logger": true, "msg": true, "replica": true, "ordinal": true,
	"name": true, "data-dir": true, "member-dir": true, "initial-advertise-peer-urls": true,
	"listen-peer-urls": true, "advertise-client-urls": true, "listen-client-urls": true,
	"initial-cluster": true, "initial-cluster-state": true, "initial-cluster-token": true,
}

// renderSettings compares the etcd settings every member logged at start
// ("starting an etcd server" and the two TLS lines) between the systems.
func renderSettings(w func(string, ...any), in string) error {
	// values[system][msg+"."+key] = set of distinct JSON values.
	values := map[string]map[string][]string{}
	members := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(in, "settings", "*.jsonl"))
	for _, f := range files {
		sys, _, _ := strings.Cut(filepath.Base(f), "-")
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		lines := 0
		for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				continue
			}
			lines++
			msg, _ := m["msg"].(string)
			for k, v := range m {
				if identity[k] {
					continue
				}
				js := normalize(v)
				if values[sys] == nil {
					values[sys] = map[string][]string{}
				}
				key := msg + ": " + k
				if !slices.Contains(values[sys][key], js) {
					values[sys][key] = append(values[sys][key], js)
				}
			}
		}
		if lines == 3 {
			members[sys]++
		}
	}
	w("### Settings check\n\n")
	if members["vetcd"] != 3 || members["etcd"] != 3 {
		w("The settings could not be compared: the startup log lines of %d vetcd and %d etcd members were found (3 each expected).\n\n",
			members["vetcd"], members["etcd"])
		return nil
	}
	keys := map[string]bool{}
	for _, sys := range systems {
		for k := range values[sys] {
			keys[k] = true
		}
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		a, b := values["vetcd"][k], values["etcd"][k]
		sort.Strings(a)
		sort.Strings(b)
		if !reflect.DeepEqual(a, b) {
			diffs = append(diffs, fmt.Sprintf("| %s | %s | %s |", k, strings.Join(a, " / "), strings.Join(b, " / ")))
		}
	}
	w("Every member logs its effective etcd settings at start (\"starting an etcd server\", \"starting with client TLS\",\n")
	w("\"starting with peer TLS\"). Compared across all %d values, leaving out only the member's identity (name, dirs,\n", len(keys))
	w("URLs, initial cluster, token and state: vetcd's replicas 1 and 2 join an existing cluster, stock etcd bootstraps\n")
	w("all three statically).\n\n")
	if len(diffs) == 0 {
		w("No setting differs between the two systems (heartbeat, election timeout, snapshot count, quota, TLS with\n")
		w("client-certificate auth on the same certificates, and everything else etcd logs).\n\n")
		return nil
	}
	w("These settings differ:\n\n| Setting | vetcd | etcd |\n|---|---|---|\n%s\n\n", strings.Join(diffs, "\n"))
	return nil
}

// normalize renders a logged value for comparison. The two systems log
// through differently configured zap encoders: vetcd's writes a duration
// as a number of seconds (60), etcd's as a Go duration string ("1m0s").
// A duration string becomes its number of seconds, so that both compare
// equal and only real differences remain.
func normalize(v any) string {
	if s, ok := v.(string); ok && strings.ContainsAny(s, "0123456789") && strings.HasSuffix(s, "s") {
		if d, err := time.ParseDuration(s); err == nil {
			v = d.Seconds()
		}
	}
	js, _ := json.Marshal(v)
	return string(js)
}

// renderBuild lists what the two measured binaries were built with, from
// their embedded build information, and the dependencies whose versions
// differ between them.
func renderBuild(w func(string, ...any), meta map[string]string) {
	w("### Build\n\n")
	vi, verr := buildinfo.ReadFile(meta["vetcd_bin"])
	ei, eerr := buildinfo.ReadFile(meta["etcd_bin"])
	if verr != nil || eerr != nil {
		w("Build information unavailable: %v %v\n\n", verr, eerr)
		return
	}
	deps := func(bi *buildinfo.BuildInfo) map[string]string {
		m := map[string]string{}
		for _, d := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
			if d.Replace != nil {
				d = d.Replace
			}
			m[d.Path] = d.Version
		}
		return m
	}
	vd, ed := deps(vi), deps(ei)
	w("vetcd (%s) built with %s, etcd server %s; stock etcd built with %s, etcd server %s.\n",
		vi.Main.Path, vi.GoVersion, vd["go.etcd.io/etcd/server/v3"], ei.GoVersion, ed["go.etcd.io/etcd/server/v3"])
	var diffs []string
	for p, v := range vd {
		if ev, ok := ed[p]; ok && ev != v {
			diffs = append(diffs, fmt.Sprintf("| %s | %s | %s |", p, v, ev))
		}
	}
	sort.Strings(diffs)
	if len(diffs) == 0 {
		w("Every module the two binaries share is at the same version.\n\n")
		return
	}
	w("Modules both binaries link, at different versions (vetcd's go.mod decides vetcd's; bench/tools/go.mod,\n")
	w("which requires only etcd's modules, decides stock etcd's):\n\n| Module | vetcd | stock etcd |\n|---|---|---|\n%s\n\n",
		strings.Join(diffs, "\n"))
}
