package main

// The "Crash restart" section: bench/restart.sh's results (restart.tsv and
// restart-meta.tsv in the results directory).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// restartTarget: vetcd's kill -9 -> healthy voter may take at most this
// many times stock etcd's kill -9 -> restarted on its data and caught up
// (issue 15).
const restartTarget = 1.2

// restartSizes are the sizes the issue asks for, always listed.
var restartSizes = []string{"10MB", "1GB"}

// restartRow is one row of restart.tsv. NA fields are NaN.
type restartRow struct {
	size, system, member string
	repeat               int
	dbSize               float64
	startToReady         float64 // process start -> healthy voter (vetcd) / caught up (etcd)
	faultToReady         float64 // kill -> the same moment
	restartDelay         float64 // kill -> process start
	marks                []float64
	// corruptCheck: when etcd's initial corruption check started and
	// ended, seconds after the process start (from the member's log in
	// restart-raw/); NaN when it did not run.
	corruptCheck [2]float64
	poll         float64
	check        string
}

// restartLog is where restart.sh keeps the restarted member's log of one run.
func restartLog(in string, r restartRow) string {
	if r.system == "vetcd" {
		return filepath.Join(in, "restart-raw", r.size, fmt.Sprintf("vetcd.%d.serve.log", r.repeat))
	}
	return filepath.Join(in, "restart-raw", r.size, fmt.Sprintf("etcd.%d.%s.log", r.repeat, r.member))
}

// loadCorruptChecks finds etcd's initial corruption check in each run's log.
// Its moments are placed relative to the process start through "starting an
// etcd server", which restart.sh timed (etcd_starting_s).
func loadCorruptChecks(in string, rows []restartRow) {
	for i := range rows {
		r := &rows[i]
		r.corruptCheck = [2]float64{math.NaN(), math.NaN()}
		b, err := os.ReadFile(restartLog(in, *r))
		if err != nil || math.IsNaN(r.marks[2]) {
			continue
		}
		var anchor time.Time
		for _, l := range bytes.Split(b, []byte("\n")) {
			var e struct {
				TS  string `json:"ts"`
				Msg string `json:"msg"`
			}
			if json.Unmarshal(l, &e) != nil {
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, e.TS)
			if err != nil {
				continue
			}
			switch {
			case e.Msg == "starting an etcd server" && anchor.IsZero():
				anchor = ts
			case e.Msg == "starting initial corruption check" && !anchor.IsZero():
				r.corruptCheck[0] = r.marks[2] + ts.Sub(anchor).Seconds()
			case strings.HasPrefix(e.Msg, "initial corruption checking passed") && !anchor.IsZero():
				r.corruptCheck[1] = r.marks[2] + ts.Sub(anchor).Seconds()
			}
		}
	}
}

// restartMarks are the log lines restart.sh times, seconds after the
// process start, in the order a restart passes them.
var restartMarks = []struct{ col, title string }{
	{"replica_started_s", "vetcd: replica started"},
	{"decision_s", "vetcd: replica decision (restart on its data)"},
	{"etcd_starting_s", "etcd: starting an etcd server"},
	{"published_s", "etcd: published local member to cluster"},
	{"etcd_ready_s", "etcd: ready to serve client requests"},
	{"serving_s", "vetcd: etcd member is serving"},
}

func readRestart(path string) ([]restartRow, error) {
	rows, err := readTSV(path)
	if err != nil {
		return nil, err
	}
	out := make([]restartRow, 0, len(rows))
	for i, m := range rows {
		rep, err := strconv.Atoi(m["repeat"])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: repeat: %w", path, i+2, err)
		}
		r := restartRow{
			size: m["size"], system: m["system"], member: m["member"], repeat: rep,
			dbSize: num(m["db_size_bytes"]), startToReady: num(m["start_to_ready_s"]),
			faultToReady: num(m["fault_to_ready_s"]), restartDelay: num(m["restart_delay_s"]),
			poll: num(m["poll_s"]), check: m["check"],
		}
		for _, mk := range restartMarks {
			r.marks = append(r.marks, num(m[mk.col]))
		}
		out = append(out, r)
	}
	return out, nil
}

// restartMedian is the median of f over rows, leaving out NaN; NaN if none.
func restartMedian(rows []restartRow, f func(restartRow) float64) (med float64, lo, hi float64, n int) {
	var xs []float64
	for _, r := range rows {
		if v := f(r); !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return math.NaN(), math.NaN(), math.NaN(), 0
	}
	return median(xs), slices.Min(xs), slices.Max(xs), len(xs)
}

// restartCell is "median (min–max, n runs)".
func restartCell(rows []restartRow, f func(restartRow) float64) string {
	med, lo, hi, n := restartMedian(rows, f)
	if n == 0 {
		return "not measured"
	}
	return fmt.Sprintf("%s (%.2f–%.2f, %d runs)", secs(med), lo, hi, n)
}

func restartVerdict(v, e float64) string {
	if math.IsNaN(v) || math.IsNaN(e) {
		return "no verdict"
	}
	return metOrNot(v <= restartTarget*e)
}

// renderRestart writes the section, or says how to produce it. It reports
// whether restart.tsv was there.
func renderRestart(w func(string, ...any), in string) (bool, error) {
	const cmd = "make -C bench restart"
	rows, err := readRestart(filepath.Join(in, "restart.tsv"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	meta, err := readRecoveryMeta(filepath.Join(in, "restart-meta.tsv"))
	if err != nil {
		return false, err
	}
	loadCorruptChecks(in, rows)
	sizes := slices.Clone(restartSizes)
	for _, r := range rows {
		if !slices.Contains(sizes, r.size) {
			sizes = append(sizes, r.size)
		}
	}
	slices.SortStableFunc(sizes, func(a, b string) int { return int(math.Copysign(1, sizeBytes(a)-sizeBytes(b))) })
	of := func(size, system string) []restartRow {
		var out []restartRow
		for _, r := range rows {
			if r.size == size && r.system == system {
				out = append(out, r)
			}
		}
		return out
	}
	anyMeta := map[string]string{}
	for _, sz := range sizes {
		if m := meta[sz]; m["date"] != "" {
			anyMeta = m
			break
		}
	}

	w("## Crash restart: a follower killed with -9, against stock etcd restarted on its data\n\n")
	w("Target (issue 15): a vetcd replica killed with -9 is a healthy voter again, on its own data, within %.1f× the\n", restartTarget)
	w("time stock etcd %s takes to restart a member on its own data dir, at the same database size.\n\n", orQ(anyMeta["etcd_version"]))
	w("bench/restart.sh ran a 3-replica `vetcd up` cluster and a stock etcd three-member cluster side by side on\n")
	w("this machine, with the same etcd flags (those of the recovery benchmark), each filled with the size in\n")
	w("256 KiB values and then %s small puts, under a light write load (%s puts/s through members 0 and 1).\n", orQ(anyMeta["snap_puts"]), orQ(anyMeta["trickle_rate"]))
	w("Each repeat killed one follower of each system with -9 (the highest-numbered follower; the order of\n")
	w("the systems alternated between repeats):\n\n")
	w("- vetcd: the supervisor of `vetcd up` restarted the replica after its back-off for a replica that had run for\n")
	w("  at least 62 s (1 s until the supervisor restarted such a replica at once; the row \"kill → new process\"\n")
	w("  below shows which). Done when `vetcd status` showed it a healthy follower whose applied index had reached the\n")
	w("  other members'. Checked: the same member ID as before the kill, and no `data.aside-*` dir made.\n")
	w("- etcd: restarted at once by the script with the same command line on its data dir. Done when it answered\n")
	w("  `etcdctl endpoint status` with no error and its applied index had reached the voters' (asked just before).\n\n")
	w("\"kill →\" counts from the kill -9, \"start →\" from the new process's start as the kernel records it; the\n")
	w("difference is the time to a new process (vetcd: the supervisor's back-off; etcd: this script). The verdict\n")
	w("uses kill →, the issue's measure; each is the median over the runs (range and count in brackets).\n\n")

	w("| Size | DB | vetcd kill → healthy voter | etcd kill → caught up | ratio | target ≤ %.1f× | verdict | vetcd start → voter | etcd start → caught up | ratio from start |\n", restartTarget)
	w("|---|---|---|---|---|---|---|---|---|---|\n")
	var failed []string
	for _, sz := range sizes {
		v, e := of(sz, "vetcd"), of(sz, "etcd")
		for _, r := range append(slices.Clone(v), e...) {
			if r.check != "ok" {
				failed = append(failed, fmt.Sprintf("%s %s #%d: %s", sizeTitle(sz), r.system, r.repeat, r.check))
			}
		}
		if len(v) == 0 && len(e) == 0 {
			why := "not measured"
			if nm := meta[sz]["not_measured"]; nm != "" {
				why = "not measured: " + nm
			}
			w("| %s | – | %s | | – | – | no verdict | | | – |\n", sizeTitle(sz), why)
			continue
		}
		vk, _, _, _ := restartMedian(v, func(r restartRow) float64 { return r.faultToReady })
		ek, _, _, _ := restartMedian(e, func(r restartRow) float64 { return r.faultToReady })
		vs, _, _, _ := restartMedian(v, func(r restartRow) float64 { return r.startToReady })
		es, _, _, _ := restartMedian(e, func(r restartRow) float64 { return r.startToReady })
		db, _, _, _ := restartMedian(v, func(r restartRow) float64 { return r.dbSize })
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sizeTitle(sz), bytesMiB(db),
			restartCell(v, func(r restartRow) float64 { return r.faultToReady }),
			restartCell(e, func(r restartRow) float64 { return r.faultToReady }),
			ratio(vk, ek), secs(restartTarget*ek), restartVerdict(vk, ek),
			restartCell(v, func(r restartRow) float64 { return r.startToReady }),
			restartCell(e, func(r restartRow) float64 { return r.startToReady }), ratio(vs, es))
	}
	w("\n")

	w("### Where the time goes\n\n")
	w("Medians, seconds after the restarted process started, of the moments its log shows (etcd's lines come\n")
	w("from the embedded etcd in vetcd's log); \"–\" where that system does not log the line.\n\n")
	w("| Step |")
	for _, sz := range sizes {
		w(" vetcd %s | etcd %s |", sizeTitle(sz), sizeTitle(sz))
	}
	w("\n|---|")
	for range sizes {
		w("---:|---:|")
	}
	w("\n")
	step := func(title string, f func(restartRow) float64) {
		w("| %s |", title)
		for _, sz := range sizes {
			for _, sys := range []string{"vetcd", "etcd"} {
				m, _, _, _ := restartMedian(of(sz, sys), f)
				w(" %s |", secs(m))
			}
		}
		w("\n")
	}
	step("kill → new process (back-off / script)", func(r restartRow) float64 { return r.restartDelay })
	for i, mk := range restartMarks {
		step(mk.title, func(r restartRow) float64 { return r.marks[i] })
		if mk.col == "etcd_starting_s" {
			step("etcd: initial corruption check started", func(r restartRow) float64 { return r.corruptCheck[0] })
			step("etcd: initial corruption check passed", func(r restartRow) float64 { return r.corruptCheck[1] })
		}
	}
	step("status poll saw it a caught-up voter", func(r restartRow) float64 { return r.startToReady })
	step("median duration of one status poll", func(r restartRow) float64 { return r.poll })
	w("\n")

	var notes []string
	for _, sz := range sizes {
		m := meta[sz]
		if m["duration_seconds"] == "" {
			continue
		}
		kept := 0
		v := of(sz, "vetcd")
		for _, r := range v {
			if !strings.Contains(r.check, "member ID changed") && !strings.Contains(r.check, "data moved aside") {
				kept++
			}
		}
		notes = append(notes, fmt.Sprintf("- %s: vetcd restarted on its own data (same member ID, no aside dir) in %d of %d runs; "+
			"`data.aside-*` dirs at the end: %s; database snapshots sent: vetcd %s, etcd %s; supervisor restarts: %s; "+
			"fill %s s (vetcd), %s s (etcd); run time %s s.",
			sizeTitle(sz), kept, len(v), orQ(m["vetcd_asides"]), orQ(m["vetcd_snapshots_sent"]), orQ(m["etcd_snapshots_sent"]),
			orQ(m["vetcd_restarts"]), orQ(m["fill_s_vetcd"]), orQ(m["fill_s_etcd"]), orQ(m["duration_seconds"])))
	}
	if len(notes) > 0 {
		w("%s\n\n", strings.Join(notes, "\n"))
	}
	if len(failed) > 0 {
		w("Runs whose check failed (counted above): %s.\n\n", strings.Join(failed, "; "))
	}
	memKiB, _ := strconv.ParseFloat(anyMeta["mem_kib"], 64)
	w("| | |\n|---|---|\n")
	w("| Command | `%s` (knobs: SIZES, REPEATS, READY_DEADLINE, FILL_DEADLINE, TRICKLE_RATE) |\n", cmd)
	w("| Date | %s, vetcd at %s |\n", orQ(anyMeta["date"]), orQ(anyMeta["repo_head"]))
	w("| Machine | %s CPUs (%s), %.1f GiB memory, %s, %s |\n\n", orQ(anyMeta["nproc"]), orQ(anyMeta["cpu"]), memKiB/1024/1024,
		orQ(anyMeta["kernel"]), orQ(anyMeta["go"]))
	return true, nil
}
