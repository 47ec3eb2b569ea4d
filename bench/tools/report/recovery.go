package main

// The "Recovery" section: bench/recovery.sh's results (recovery.tsv and
// recovery-meta.tsv in the results directory).

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// recoveryTarget: vetcd's restart-to-healthy-voter time may be at most this
// many times the floor (etcd's own snapshot transfer), plus the configured
// detection threshold where the fault needs detecting.
const recoveryTarget = 1.5

// recoverySizes are the sizes the issue asks for, always listed (measured or
// not); sizes measured beyond these are listed too.
var recoverySizes = []string{"10MB", "100MB", "1GB"}

// recRow is one row of recovery.tsv. NA fields are NaN.
type recRow struct {
	size, system            string
	repeat, position        int
	dbSize, dbInUse         float64
	keys                    string
	ready                   float64 // vetcd: restart -> healthy voter; etcd: start -> caught up
	faultToReady            float64 // vetcd: kill -> healthy voter
	hold, restartDelay      float64 // vetcd: kill -> supervisor resumed; resumed -> new process
	promote                 float64 // etcd: member promote after catching up
	snapBytes, snapDownload float64
	snapSaved               float64 // snapshot saved, seconds after the process start
	serving                 float64 // caught up and published to the cluster, seconds after the start
	poll                    float64 // median duration of one poll
	check                   string
}

// num parses a number; "NA" (or anything else unparsable) is NaN.
func num(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func readRecovery(path string) ([]recRow, error) {
	rows, err := readTSV(path)
	if err != nil {
		return nil, err
	}
	var out []recRow
	for i, m := range rows {
		rep, err1 := strconv.Atoi(m["repeat"])
		pos, err2 := strconv.Atoi(m["position"])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+2, err)
		}
		out = append(out, recRow{
			size: m["size"], system: m["system"], repeat: rep, position: pos,
			dbSize: num(m["db_size_bytes"]), dbInUse: num(m["db_in_use_bytes"]), keys: m["keys"],
			ready: num(m["start_to_ready_s"]), faultToReady: num(m["fault_to_ready_s"]),
			hold: num(m["hold_s"]), restartDelay: num(m["restart_delay_s"]), promote: num(m["promote_s"]),
			snapBytes: num(m["snapshot_bytes"]), snapDownload: num(m["snapshot_download_s"]),
			snapSaved: num(m["snapshot_saved_s"]), serving: num(m["serving_s"]), poll: num(m["poll_s"]), check: m["check"],
		})
	}
	return out, nil
}

// readRecoveryMeta reads recovery-meta.tsv: size, key, value.
func readRecoveryMeta(path string) (map[string]map[string]string, error) {
	rows, err := readTSV(path)
	if err != nil {
		return nil, err
	}
	m := map[string]map[string]string{}
	for _, r := range rows {
		if m[r["size"]] == nil {
			m[r["size"]] = map[string]string{}
		}
		m[r["size"]][r["key"]] = r["value"]
	}
	return m, nil
}

var sizeRE = regexp.MustCompile(`^([0-9]+)(MB|GB)$`)

// sizeBytes: "10MB" is 10 MiB, "1GB" 1 GiB, as in recovery.sh.
func sizeBytes(s string) float64 {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return math.Inf(1)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	if m[2] == "GB" {
		return n * (1 << 30)
	}
	return n * (1 << 20)
}

// sizeTitle: "10MB" -> "10 MB".
func sizeTitle(s string) string {
	if m := sizeRE.FindStringSubmatch(s); m != nil {
		return m[1] + " " + m[2]
	}
	return s
}

// secs formats seconds; NaN is "–".
func secs(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if v < 10 {
		return fmt.Sprintf("%.2f s", v)
	}
	return fmt.Sprintf("%.1f s", v)
}

// bytesMiB formats bytes as MiB; NaN is "–".
func bytesMiB(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", v/(1<<20))
}

// medianOf is the median of f over rows, leaving out NaN; NaN if none.
func medianOf(rows []recRow, f func(recRow) float64) float64 {
	var xs []float64
	for _, r := range rows {
		if v := f(r); !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	return median(xs)
}

// ratio formats a/b; "–" when either is unknown.
func ratio(a, b float64) string {
	r := a / b
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f", r)
}

// rangeOf is "min–max" of f over rows.
func rangeOf(rows []recRow, f func(recRow) float64) string {
	var xs []float64
	for _, r := range rows {
		if v := f(r); !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f–%.2f", slices.Min(xs), slices.Max(xs))
}

// durationLabel shows a configured duration ("2m"), or "?" if unknown.
func durationLabel(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

func renderRecovery(w func(string, ...any), in string) error {
	rows, err := readRecovery(filepath.Join(in, "recovery.tsv"))
	if errors.Is(err, fs.ErrNotExist) {
		w("## Recovery\n\nNot measured: bench/out/recovery.tsv does not exist. Run `make -C bench recovery`.\n\n")
		return nil
	}
	if err != nil {
		return err
	}
	meta, err := readRecoveryMeta(filepath.Join(in, "recovery-meta.tsv"))
	if err != nil {
		return err
	}

	// Sizes: the issue's, then any other that was run, smallest first.
	sizes := slices.Clone(recoverySizes)
	for s := range meta {
		if !slices.Contains(sizes, s) {
			sizes = append(sizes, s)
		}
	}
	for _, r := range rows {
		if !slices.Contains(sizes, r.size) {
			sizes = append(sizes, r.size)
		}
	}
	slices.SortStableFunc(sizes, func(a, b string) int {
		x, y := sizeBytes(a), sizeBytes(b)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	bySize := map[string]map[string][]recRow{}
	for _, r := range rows {
		if bySize[r.size] == nil {
			bySize[r.size] = map[string][]recRow{}
		}
		bySize[r.size][r.system] = append(bySize[r.size][r.system], r)
	}
	var shared map[string]string // the meta of some measured size, for the shared facts
	for _, s := range sizes {
		if m := meta[s]; m != nil && shared == nil {
			shared = m
		}
	}
	if shared == nil {
		shared = map[string]string{}
	}

	w("## Recovery: a replica whose volume is gone, against etcd's own snapshot transfer\n\n")
	w("Issue: the time from a recovered replica's restart to being a healthy voter, for databases of 10 MB, 100 MB\n")
	w("and 1 GB, set beside the time etcd's own snapshot transfer of the same database takes on this machine (the\n")
	w("floor). Target: within %.1f × the floor, plus the configured detection threshold.\n\n", recoveryTarget)
	w("Method (bench/recovery.sh). For each size, a 3-replica `vetcd up` cluster and a stock etcd %s three-member\n", shared["etcd_version"])
	w("cluster run side by side with the same etcd flags (steady.sh's, plus `--quota-backend-bytes=%s` on both). Both\n", shared["quota_bytes"])
	w("are filled the same way: the size in 256 KiB values under distinct keys (MB = MiB, GB = GiB), then %s small\n", shared["snap_puts"])
	w("puts to one key, so that etcd's raft log (it keeps 5000 entries behind the applied index) no longer holds the\n")
	w("big entries and a new member must catch up from a snapshot of the database. Then, %s times per size, alternating\n", shared["repeats"])
	w("which system goes first:\n\n")
	w("- **vetcd**, fault \"volume gone\": `vetcd up` is paused (SIGSTOP), replica vetcd-2 is killed (`kill -9`) and its\n")
	w("  data dir deleted, `vetcd up` resumes and restarts it after its 1 s back-off. The replica finds its data dir\n")
	w("  empty at start, removes its stale member, joins as a learner, etcd sends it a snapshot, and the leader's\n")
	w("  controller promotes it. Measured from the start of the new vetcd-2 process (its start time as the kernel\n")
	w("  records it) until `vetcd status` shows vetcd-2 as a healthy follower (a voter) with a new member ID.\n")
	w("- **Floor, stock etcd**: `etcdctl member add --learner` a 4th member, start a stock etcd with an empty data dir\n")
	w("  and `--initial-cluster-state=existing`; measured from its process start until it answers `etcdctl endpoint\n")
	w("  status` without error and its raft applied index has reached the voters' highest. That is etcd's own\n")
	w("  snapshot transfer and apply, plus its start. `member promote`, issued right after, is timed apart and not\n")
	w("  part of the floor; the member is then removed again.\n\n")
	w("During the measurements both clusters receive a light write load (%s puts of 8 B per second to one key, through\n", shared["trickle_rate"])
	w("members 0 and 1), as a live cluster does. Without it, stock etcd 3.7.3 can leave a joiner stuck, which happened\n")
	w("once while this benchmark was written (8 minutes, until killed): etcd does not update its applied index when it\n")
	w("applies a snapshot, only when it applies entries, so a joiner whose snapshot index is above 5000 refuses its own\n")
	w("\"publish member\" request with \"too many requests\" until the cluster commits another entry. A stock joiner that\n")
	w("has not caught up within the deadline is recorded as such and left out of the floor's median.\n\n")
	w("The detection threshold (`recovery.unresponsiveAfter`, configured %s; `learnerStuckAfter` %s) does not apply to\n",
		durationLabel(shared["unresponsive_after"]), durationLabel(shared["learner_stuck_after"]))
	w("this fault: the replica detects its empty data dir itself when it starts, so nothing waits for a threshold,\n")
	w("and the target is %.1f × the floor with nothing added. A fault that needs detecting (a member that hangs\n", recoveryTarget)
	w("without exiting) adds up to that threshold to vetcd's time; it is not measured here.\n\n")
	w("Each time is taken at the end of the first status poll that saw the state (a poll is one whole `vetcd status`\n")
	w("or `etcdctl` run), so it can be late by up to one poll; the median poll durations are listed per size.\n")
	w("Times are medians over the repeats.\n\n")

	memKiB, _ := strconv.ParseFloat(shared["mem_kib"], 64)
	w("| | |\n|---|---|\n")
	w("| Command | `make -C bench recovery` (all sizes) or `SIZES=100MB make -C bench recovery` (one; the others' results are kept) |\n")
	if shared["nproc"] != "" {
		w("| Machine | %s CPUs (%s), %.1f GiB memory, %s |\n", shared["nproc"], shared["cpu"], memKiB/1024/1024, shared["kernel"])
	}
	w("| etcd | %s (stock, from bench/tools/go.mod), same flags in both systems |\n", shared["etcd_version"])
	w("| vetcd | bin/vetcd built %s, repository at %s when the run started |\n\n", shared["vetcd_bin_mtime"], shared["repo_head"])

	w("### Summary\n\n")
	w("| Database | Size reached (vetcd, etcd) | vetcd restart → healthy voter | Floor: etcd start → caught up | Ratio vetcd/floor | Target ≤ %.1f × floor | Verdict | vetcd kill → healthy voter | etcd promote |\n", recoveryTarget)
	w("|---|---:|---:|---:|---:|---:|---|---:|---:|\n")
	type verdict struct {
		size string
		ok   bool
	}
	var verdicts []verdict
	var notMeasured []string
	for _, s := range sizes {
		v, e := bySize[s]["vetcd"], bySize[s]["etcd"]
		if len(v) == 0 || len(e) == 0 {
			why := "not run"
			if m := meta[s]; m != nil && m["not_measured"] != "" {
				why = m["not_measured"]
			}
			notMeasured = append(notMeasured, s)
			w("| %s | – | not measured | not measured | – | – | – (%s) | – | – |\n", sizeTitle(s), why)
			continue
		}
		vm := medianOf(v, func(r recRow) float64 { return r.ready })
		em := medianOf(e, func(r recRow) float64 { return r.ready })
		if math.IsNaN(vm) || math.IsNaN(em) {
			notMeasured = append(notMeasured, s)
			w("| %s | – | %s | %s | – | – | – (no complete run) | – | – |\n", sizeTitle(s), secs(vm), secs(em))
			continue
		}
		ok := vm <= recoveryTarget*em
		verdicts = append(verdicts, verdict{s, ok})
		w("| %s | %s, %s | %s | %s | %s | %s | %s | %s | %s |\n", sizeTitle(s),
			bytesMiB(medianOf(v, func(r recRow) float64 { return r.dbSize })),
			bytesMiB(medianOf(e, func(r recRow) float64 { return r.dbSize })),
			secs(vm), secs(em), ratio(vm, em), secs(recoveryTarget*em), metOrNot(ok),
			secs(medianOf(v, func(r recRow) float64 { return r.faultToReady })),
			secs(medianOf(e, func(r recRow) float64 { return r.promote })))
	}
	w("\n")
	var failed, passed []string
	for _, v := range verdicts {
		if v.ok {
			passed = append(passed, sizeTitle(v.size))
		} else {
			failed = append(failed, sizeTitle(v.size))
		}
	}
	switch {
	case len(verdicts) == 0:
		w("No size was measured.\n\n")
	case len(failed) == 0:
		w("The target is met for every size measured (%s).\n\n", strings.Join(passed, ", "))
	default:
		w("The target is **not met** for %s", strings.Join(failed, ", "))
		if len(passed) > 0 {
			w("; it is met for %s", strings.Join(passed, ", "))
		}
		w(".\n\n")
	}
	for _, s := range notMeasured {
		why := "it was not run"
		if m := meta[s]; m != nil && m["not_measured"] != "" {
			why = m["not_measured"]
		} else if len(bySize[s]["vetcd"])+len(bySize[s]["etcd"]) > 0 {
			why = "no run of one of the systems completed (see its section below)"
		}
		w("**%s was not measured**: %s. To measure it: `SIZES=%s make -C bench recovery`, then `make -C bench report`.\n\n",
			sizeTitle(s), why, s)
	}
	w("\"vetcd kill → healthy voter\" adds, to the restart time, how long the benchmark held `vetcd up` paused to kill\n")
	w("the replica and delete its data, and the supervisor's 1 s restart back-off. \"Size reached\" is the leader's\n")
	w("database file size (etcd's `dbSize`) just before the fault.\n\n")

	for _, s := range sizes {
		v, e := bySize[s]["vetcd"], bySize[s]["etcd"]
		if len(v) == 0 || len(e) == 0 {
			continue
		}
		m := meta[s]
		if m == nil {
			m = map[string]string{}
		}
		w("### %s\n\n", sizeTitle(s))
		w("%s: %s values of 256 KiB and %s small puts; filling took %s s (vetcd) and %s s (etcd), of which the big values\n",
			m["date"], m["puts"], m["snap_puts"], m["fill_s_vetcd"], m["fill_s_etcd"])
		w("%s s and %s s. Database size in use (`dbSizeInUse`) %s (vetcd), %s (etcd); keys on the recovered member equal\n",
			m["fill_big_s_vetcd"], m["fill_big_s_etcd"],
			bytesMiB(medianOf(v, func(r recRow) float64 { return r.dbInUse })),
			bytesMiB(medianOf(e, func(r recRow) float64 { return r.dbInUse })))
		w("to the leader's: %s. Load average %s at start, %s at end.\n\n", keysLabel(v, e), m["loadavg_start"], m["loadavg_end"])

		w("| Repeat | vetcd restart → healthy voter | vetcd kill → healthy voter | etcd start → caught up | Ratio | etcd promote | Snapshot received (vetcd, etcd) | Snapshot download (vetcd, etcd) | Snapshot saved after start (vetcd, etcd) | Serving, caught up, after start (vetcd, etcd) | Checks |\n")
		w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		reps := map[int][2]*recRow{}
		for i := range v {
			p := reps[v[i].repeat]
			p[0] = &v[i]
			reps[v[i].repeat] = p
		}
		for i := range e {
			p := reps[e[i].repeat]
			p[1] = &e[i]
			reps[e[i].repeat] = p
		}
		var keys []int
		for k := range reps {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := reps[k]
			if p[0] == nil || p[1] == nil {
				continue
			}
			vr, er := p[0], p[1]
			first := "vetcd first"
			if er.position == 1 {
				first = "etcd first"
			}
			checks := "ok"
			if vr.check != "ok" || er.check != "ok" {
				checks = fmt.Sprintf("vetcd: %s; etcd: %s", vr.check, er.check)
			}
			w("| %d (%s) | %s | %s | %s | %s | %s | %s, %s | %s, %s | %s, %s | %s, %s | %s |\n", k, first,
				secs(vr.ready), secs(vr.faultToReady), secs(er.ready), ratio(vr.ready, er.ready), secs(er.promote),
				bytesMiB(vr.snapBytes), bytesMiB(er.snapBytes), secs(vr.snapDownload), secs(er.snapDownload),
				secs(vr.snapSaved), secs(er.snapSaved), secs(vr.serving), secs(er.serving), checks)
		}
		w("\n")
		var failed []string
		for _, r := range append(slices.Clone(v), e...) {
			if r.check != "ok" {
				failed = append(failed, fmt.Sprintf("%s repeat %d: %s", r.system, r.repeat, r.check))
			}
		}
		if len(failed) > 0 {
			w("**Runs with a failed check** (%d of %d): %s. A run without a time is left out of the medians.\n\n",
				len(failed), len(v)+len(e), strings.Join(failed, "; "))
		}
		vm := medianOf(v, func(r recRow) float64 { return r.ready })
		em := medianOf(e, func(r recRow) float64 { return r.ready })
		vs := medianOf(v, func(r recRow) float64 { return r.snapSaved })
		es := medianOf(e, func(r recRow) float64 { return r.snapSaved })
		vv := medianOf(v, func(r recRow) float64 { return r.serving })
		ev := medianOf(e, func(r recRow) float64 { return r.serving })
		vp := medianOf(v, func(r recRow) float64 { return r.ready - r.serving })
		ep := medianOf(e, func(r recRow) float64 { return r.ready - r.serving })
		w("Median vetcd %s against a floor of %s: ratio %s (per repeat %s; target ≤ %.1f: %s).\n", secs(vm), secs(em), ratio(vm, em),
			rangeOf(pair(v, e), func(r recRow) float64 { return r.ready }), recoveryTarget, metOrNot(vm <= recoveryTarget*em))
		if !math.IsNaN(vs) && !math.IsNaN(es) && !math.IsNaN(vv) && !math.IsNaN(ev) {
			w("Where the time goes (medians, from the joiners' own logs): the snapshot was on disk %s (vetcd) and %s (etcd)\n", secs(vs), secs(es))
			w("after the process start, and the joiner was caught up and serving (it had published itself to the cluster)\n")
			w("after %s and %s; vetcd's part includes its start-up checks, removing its stale member and adding itself as\n", secs(vv), secs(ev))
			w("a learner. From serving to a healthy voter vetcd took %s more: the leader's controller promotes a caught-up\n", secs(vp))
			w("learner on one of its passes (1 s apart) and the next `vetcd status` poll sees it. etcd's poll saw its caught-up\n")
			w("joiner %s after it was serving.\n", secs(ep))
		} else {
			w("**A joiner's log lacks the snapshot or the publish line** in at least one run (see the table): it may have\n")
			w("caught up without a snapshot.\n")
		}
		w("Median poll durations: `vetcd status` %s, `etcdctl` %s. vetcd hold (kill to supervisor resumed) %s, restart\n",
			secs(medianOf(v, func(r recRow) float64 { return r.poll })), secs(medianOf(e, func(r recRow) float64 { return r.poll })),
			secs(medianOf(v, func(r recRow) float64 { return r.hold })))
		w("delay (resumed to new process) %s. Snapshots sent by the leaders in this size's run: vetcd %s, etcd %s. Supervisor\n",
			secs(medianOf(v, func(r recRow) float64 { return r.restartDelay })), m["vetcd_snapshots_sent"], m["etcd_snapshots_sent"])
		w("restarts of vetcd replicas: %s (one per fault expected).\n\n", m["vetcd_restarts"])
	}
	return nil
}

// pair turns the vetcd rows into rows whose ready is vetcd's divided by the
// etcd row's of the same repeat.
func pair(v, e []recRow) []recRow {
	var out []recRow
	for _, a := range v {
		for _, b := range e {
			if a.repeat == b.repeat {
				r := a
				r.ready = a.ready / b.ready
				out = append(out, r)
			}
		}
	}
	return out
}

// keysLabel says whether the recovered members held as many keys as the
// leader, and how many.
func keysLabel(v, e []recRow) string {
	seen := map[string]bool{}
	bad := 0
	for _, r := range append(slices.Clone(v), e...) {
		if strings.HasPrefix(r.check, "keys differ") {
			bad++
		}
		seen[r.keys] = true
	}
	ks := slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
	if bad > 0 {
		return fmt.Sprintf("**no** in %d runs (key counts %s)", bad, strings.Join(ks, ", "))
	}
	return fmt.Sprintf("yes in every run (%s keys)", strings.Join(ks, ", "))
}
