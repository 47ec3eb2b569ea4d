package main

// The "Recovery" section: bench/recovery.sh's results (recovery.tsv and
// recovery-meta.tsv in the results directory).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
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
	// publishFailed: the joiner's log has "failed to publish local member
	// to cluster through raft" with "request timed out" (its first publish
	// request timed out after etcd's 7 s publish timeout); -1 when its log
	// is not in the results.
	publishFailed int
	// publishRestarted: the vetcd joiner found its publish request lost in
	// the snapshot and restarted its member rather than wait the timeout.
	publishRestarted bool
	// retried: the errors of the vetcd replica's failed steps that it
	// retried ("replica step failed; retrying"), from its log.
	retried []string
}

// joinerLog is where recovery.sh keeps the joiner's log of one run.
func joinerLog(in string, r recRow) string {
	if r.system == "vetcd" {
		return filepath.Join(in, "recovery-raw", r.size, fmt.Sprintf("vetcd.%d.serve.log", r.repeat))
	}
	return filepath.Join(in, "recovery-raw", r.size, fmt.Sprintf("etcd.%d.etcd-3.log", r.repeat))
}

// loadPublishFailures reads every run's joiner log for failed publish
// requests.
func loadPublishFailures(in string, rows []recRow) {
	for i := range rows {
		b, err := os.ReadFile(joinerLog(in, rows[i]))
		if err != nil {
			rows[i].publishFailed = -1
			continue
		}
		rows[i].publishFailed = 0
		for _, l := range bytes.Split(b, []byte("\n")) {
			// vetcd's restart cancels the pending request ("request
			// cancelled"): only a timeout is etcd's 7 s wait.
			if bytes.Contains(l, []byte(`"msg":"failed to publish local member to cluster through raft"`)) &&
				bytes.Contains(l, []byte(`request timed out`)) {
				rows[i].publishFailed++
			}
			if bytes.Contains(l, []byte(`"msg":"this member's publish request was applied through the snapshot`)) {
				rows[i].publishRestarted = true
			}
			if !bytes.Contains(l, []byte(`"msg":"replica step failed; retrying"`)) {
				continue
			}
			var m struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(l, &m) == nil {
				rows[i].retried = append(rows[i].retried, m.Error)
			}
		}
	}
}

// clean keeps the runs whose joiner's publish request did not time out.
func clean(rows []recRow) []recRow {
	var out []recRow
	for _, r := range rows {
		if r.publishFailed == 0 {
			out = append(out, r)
		}
	}
	return out
}

// yesNo shows a publish-failure count.
func yesNo(n int) string {
	switch {
	case n < 0:
		return "?"
	case n == 0:
		return "no"
	}
	return "**yes**"
}

// publishCell is the publish column of one run: etcd's timeout, vetcd's
// restart that avoided it, or neither.
func publishCell(r recRow) string {
	if r.publishRestarted && r.publishFailed == 0 {
		return "lost; member restarted"
	}
	return yesNo(r.publishFailed)
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

// verdictOf is the target verdict for medians v (vetcd) and e (floor).
func verdictOf(v, e float64) string {
	if math.IsNaN(v) || math.IsNaN(e) {
		return "no verdict"
	}
	return metOrNot(v <= recoveryTarget*e)
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

func renderRecovery(w func(string, ...any), in string, prev previous) error {
	rows, err := readRecovery(filepath.Join(in, "recovery.tsv"))
	if errors.Is(err, fs.ErrNotExist) {
		prev.keep(w, "", "## Recovery", "make -C bench recovery")
		return nil
	}
	if err != nil {
		return err
	}
	meta, err := readRecoveryMeta(filepath.Join(in, "recovery-meta.tsv"))
	if err != nil {
		return err
	}
	loadPublishFailures(in, rows)

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
	w("big entries and a new member must catch up from a snapshot of the database. Then, %s times per size: %s joins\n", shared["repeats"], shared["floor_runs"])
	w("of a stock etcd member (the floor), then one vetcd fault; the joins fill most of the minute that vetcd-2 must run\n")
	w("before its next fault, so that the supervisor's restart back-off is always its first, 1 s.\n\n")
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
	w("In some runs the joiner's first \"publish member\" request is applied by the leader before it takes the snapshot\n")
	w("it sends the joiner (etcd-io/etcd#16436). The joiner then receives its own attributes inside the snapshot, never\n")
	w("applies the request as an entry, and stock etcd waits out its 7 s publish timeout (its log says \"failed to\n")
	w("publish local member to cluster through raft\": \"request timed out\") before the retry succeeds at once.\n")
	w("vetcd detects this case (the joiner is not ready but already sees its own name and client URLs for 30 ms)\n")
	w("and restarts its member, which publishes again at once (the restart skips the start-up corruption check of\n")
	w("data the leader has just sent, and does not wait for the old peer connections to drain); such runs are\n")
	w("marked \"lost; member restarted\" and keep the restart's cost. The verdict is given twice: over all runs, and\n")
	w("over the runs without the 7 s timeout (the floor without an etcd delay that vetcd avoids; vetcd's runs include\n")
	w("their restarts).\n\n")
	w("The detection threshold (`recovery.unresponsiveAfter`, configured %s; `learnerStuckAfter` %s) does not apply to\n",
		durationLabel(shared["unresponsive_after"]), durationLabel(shared["learner_stuck_after"]))
	w("this fault: the replica detects its empty data dir itself when it starts, so nothing waits for a threshold,\n")
	w("and the target is %.1f × the floor with nothing added. A fault that needs detecting (a member that hangs\n", recoveryTarget)
	w("without exiting) adds up to that threshold to vetcd's time; it is not measured here.\n\n")
	w("Each time is taken at the end of the first status poll that saw the state (a poll is one whole `vetcd status`\n")
	w("or `etcdctl` run), so it can be late by up to one poll; the median poll durations are listed per size.\n")
	w("Times are medians over the runs.\n\n")

	memKiB, _ := strconv.ParseFloat(shared["mem_kib"], 64)
	w("| | |\n|---|---|\n")
	w("| Command | `make -C bench recovery` (all sizes) or `SIZES=100MB make -C bench recovery` (one; the others' results are kept); knobs SIZES, REPEATS, FLOOR_RUNS, FILL_DEADLINE, READY_DEADLINE, FLOOR_DEADLINE, TRICKLE_RATE, QUIET_WAIT |\n")
	if shared["nproc"] != "" {
		w("| Machine | %s CPUs (%s), %.1f GiB memory, %s |\n", shared["nproc"], shared["cpu"], memKiB/1024/1024, shared["kernel"])
	}
	w("| etcd | %s (stock, from bench/tools/go.mod), same flags in both systems |\n", shared["etcd_version"])
	w("| vetcd | bin/vetcd built %s, repository at %s when the run started |\n\n", shared["vetcd_bin_mtime"], shared["repo_head"])

	w("### Summary\n\n")
	// verdictLine writes which sizes met the target.
	verdictLine := func(prefix string, passed, failed []string) {
		switch {
		case len(passed)+len(failed) == 0:
			w("%sno size has runs to compare.\n\n", prefix)
		case len(failed) == 0:
			w("%sthe target is met for every size measured (%s).\n\n", prefix, strings.Join(passed, ", "))
		default:
			w("%sthe target is **not met** for %s", prefix, strings.Join(failed, ", "))
			if len(passed) > 0 {
				w("; it is met for %s", strings.Join(passed, ", "))
			}
			w(".\n\n")
		}
	}
	ready := func(r recRow) float64 { return r.ready }
	var notMeasured []string

	w("Runs in which the joiner's first publish request did not time out (vetcd's own cost against etcd's transfer;\n")
	w("vetcd's runs in which the publish was lost and the member restarted are kept, with the restart's cost):\n\n")
	w("| Database | Size reached (vetcd, etcd) | Runs kept (vetcd, etcd) | vetcd runs with the member restarted | vetcd restart → healthy voter | Floor: etcd start → caught up | Ratio vetcd/floor | Target ≤ %.1f × floor | Verdict |\n", recoveryTarget)
	w("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	var passed, failed []string
	for _, s := range sizes {
		av, ae := bySize[s]["vetcd"], bySize[s]["etcd"]
		if len(av) == 0 || len(ae) == 0 {
			why := "not run"
			if m := meta[s]; m != nil && m["not_measured"] != "" {
				why = m["not_measured"]
			}
			notMeasured = append(notMeasured, s)
			w("| %s | – | – | – | not measured | not measured | – | – | – (%s) |\n", sizeTitle(s), why)
			continue
		}
		v, e := clean(av), clean(ae)
		vm, em := medianOf(v, ready), medianOf(e, ready)
		size := fmt.Sprintf("%s, %s", bytesMiB(medianOf(av, func(r recRow) float64 { return r.dbSize })),
			bytesMiB(medianOf(ae, func(r recRow) float64 { return r.dbSize })))
		kept := fmt.Sprintf("%d of %d, %d of %d", len(v), len(av), len(e), len(ae))
		restarted := 0
		for _, r := range v {
			if r.publishRestarted {
				restarted++
			}
		}
		if math.IsNaN(vm) || math.IsNaN(em) {
			w("| %s | %s | %s | %d | %s | %s | – | – | – (too few runs) |\n", sizeTitle(s), size, kept, restarted, secs(vm), secs(em))
			continue
		}
		ok := vm <= recoveryTarget*em
		if ok {
			passed = append(passed, sizeTitle(s))
		} else {
			failed = append(failed, sizeTitle(s))
		}
		w("| %s | %s | %s | %d | %s | %s | %s | %s | %s |\n", sizeTitle(s), size, kept, restarted, secs(vm), secs(em), ratio(vm, em),
			secs(recoveryTarget*em), metOrNot(ok))
	}
	w("\n")
	verdictLine("Over these runs, ", passed, failed)

	w("All runs, including those with etcd's 7 s publish timeout:\n\n")
	w("| Database | vetcd restart → healthy voter | Floor: etcd start → caught up | Ratio vetcd/floor | Target ≤ %.1f × floor | Verdict | Runs with the publish timeout (vetcd, etcd) | vetcd kill → healthy voter | etcd promote |\n", recoveryTarget)
	w("|---|---:|---:|---:|---:|---|---:|---:|---:|\n")
	passed, failed = nil, nil
	for _, s := range sizes {
		v, e := bySize[s]["vetcd"], bySize[s]["etcd"]
		if len(v) == 0 || len(e) == 0 {
			continue
		}
		vm, em := medianOf(v, ready), medianOf(e, ready)
		stalls := fmt.Sprintf("%d of %d, %d of %d", len(v)-len(clean(v)), len(v), len(e)-len(clean(e)), len(e))
		if math.IsNaN(vm) || math.IsNaN(em) {
			notMeasured = append(notMeasured, s)
			w("| %s | %s | %s | – | – | – (no complete run) | %s | – | – |\n", sizeTitle(s), secs(vm), secs(em), stalls)
			continue
		}
		ok := vm <= recoveryTarget*em
		if ok {
			passed = append(passed, sizeTitle(s))
		} else {
			failed = append(failed, sizeTitle(s))
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sizeTitle(s), secs(vm), secs(em), ratio(vm, em),
			secs(recoveryTarget*em), metOrNot(ok), stalls,
			secs(medianOf(v, func(r recRow) float64 { return r.faultToReady })),
			secs(medianOf(e, func(r recRow) float64 { return r.promote })))
	}
	w("\n")
	verdictLine("Over all runs, ", passed, failed)
	w("Over all runs the medians depend on how many runs of each system met the publish timeout, which happened at\n")
	w("random here; the per-size tables below show every run.\n\n")

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
		w("to the leader's: %s. Load average %s at start, %s at end; this size took %s s in all.\n\n", keysLabel(v, e),
			m["loadavg_start"], m["loadavg_end"], m["duration_seconds"])

		w("Every run, in the order run (\"ready\" is restart → healthy voter for vetcd, start → caught up for etcd):\n\n")
		w("| # | System | Ready | vetcd kill → healthy voter | etcd promote | 7 s publish timeout | Snapshot received | Snapshot download | Snapshot saved after start | Serving after start | Check |\n")
		w("|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|\n")
		runs := append(slices.Clone(v), e...)
		slices.SortFunc(runs, func(a, b recRow) int { return a.position - b.position })
		for _, r := range runs {
			check := r.check
			if len(r.retried) > 0 {
				check += fmt.Sprintf("; the replica retried a failed step (%s)", strings.Join(r.retried, "; "))
			}
			w("| %d | %s %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.position, r.system, r.repeat,
				secs(r.ready), secs(r.faultToReady), secs(r.promote), publishCell(r), bytesMiB(r.snapBytes),
				secs(r.snapDownload), secs(r.snapSaved), secs(r.serving), check)
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
		// The breakdown leaves out the runs with etcd's publish timeout,
		// which would put 7 s into "serving" for both systems.
		cv, ce := clean(v), clean(e)
		vs := medianOf(cv, func(r recRow) float64 { return r.snapSaved })
		es := medianOf(ce, func(r recRow) float64 { return r.snapSaved })
		vv := medianOf(cv, func(r recRow) float64 { return r.serving })
		ev := medianOf(ce, func(r recRow) float64 { return r.serving })
		vp := medianOf(cv, func(r recRow) float64 { return r.ready - r.serving })
		ep := medianOf(ce, func(r recRow) float64 { return r.ready - r.serving })
		cvm, cem := medianOf(cv, func(r recRow) float64 { return r.ready }), medianOf(ce, func(r recRow) float64 { return r.ready })
		w("Runs without the publish timeout: vetcd %d of %d, median %s (range %s); floor %d of %d, median %s (range %s);\n",
			len(cv), len(v), secs(cvm), rangeOf(cv, func(r recRow) float64 { return r.ready }),
			len(ce), len(e), secs(cem), rangeOf(ce, func(r recRow) float64 { return r.ready }))
		w("ratio %s (target ≤ %.1f: %s). All runs: vetcd median %s, floor median %s, ratio %s (%s).\n", ratio(cvm, cem), recoveryTarget,
			verdictOf(cvm, cem), secs(vm), secs(em), ratio(vm, em), verdictOf(vm, em))
		if !math.IsNaN(vs) && !math.IsNaN(es) && !math.IsNaN(vv) && !math.IsNaN(ev) {
			w("Where the time goes (medians over the runs without the publish timeout, from the joiners' own logs): the\n")
			w("snapshot was on disk %s (vetcd) and %s (etcd) after the process start, and the joiner was caught up and\n", secs(vs), secs(es))
			w("serving (it had published itself to the cluster) after %s and %s; vetcd's part includes its start-up checks,\n", secs(vv), secs(ev))
			w("removing its stale member and adding itself as a learner. From serving to a healthy voter vetcd took %s more:\n", secs(vp))
			w("the leader's controller promotes a caught-up learner once it sees it answer, and the next `vetcd status` poll\n")
			w("sees the promotion. etcd's poll saw its caught-up joiner %s after it was serving.\n", secs(ep))
		} else {
			w("No breakdown: no run without the publish timeout, or a joiner's log lacks the snapshot or the publish line\n")
			w("(see the table; a joiner without a snapshot line may have caught up without a snapshot).\n")
		}
		w("Median poll durations: `vetcd status` %s, `etcdctl` %s (a poll that reaches a joiner which does not serve yet\n",
			secs(medianOf(v, func(r recRow) float64 { return r.poll })), secs(medianOf(e, func(r recRow) float64 { return r.poll })))
		w("waits for it and returns once it answers). vetcd hold (kill to supervisor resumed) %s, restart delay (resumed\n",
			secs(medianOf(v, func(r recRow) float64 { return r.hold })))
		w("to new process) %s. Snapshots sent by the leaders in this size's run: vetcd %s, etcd %s. Supervisor\n",
			secs(medianOf(v, func(r recRow) float64 { return r.restartDelay })), m["vetcd_snapshots_sent"], m["etcd_snapshots_sent"])
		w("restarts of vetcd replicas: %s (one per fault expected).\n\n", m["vetcd_restarts"])
	}
	return nil
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
