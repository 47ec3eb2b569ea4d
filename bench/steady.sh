#!/usr/bin/env bash
# steady.sh — steady-state comparison of a 3-replica `vetcd up` cluster with
# a stock etcd 3.7.3 three-member cluster started with the same etcd flags.
#
# Both clusters run on this machine at the same time. etcd's own load
# generator (bench/bin/benchmark) is pointed at one system, then the other,
# alternating (vetcd, etcd; then etcd, vetcd; ...) for ROUNDS rounds of every
# scenario, so that machine noise (other processes, disk, thermal) hits both
# systems alike and the median of the rounds compares like with like. Both
# systems receive exactly the same sequence of requests, so their databases
# have the same size at every comparable point.
#
# Output (OUT, default bench/out/):
#   steady.tsv   one row per benchmark run (medians are taken by the report)
#   rss.tsv      VmRSS/VmHWM of every server process, idle and after the load
#   idle.tsv     CPU used by each system while both sit idle
#   meta.tsv     machine, versions, parameters, load average
#   settings/    each member's "starting an etcd server" and TLS log lines,
#                so the report can prove the two systems ran the same settings
#   raw/         the benchmark tool's own output of every run
#
# Every process this script starts is stopped by the EXIT trap; every wait
# has a deadline. Knobs (environment): ROUNDS, PUT1_TOTAL, PUT100_TOTAL,
# RANGE100_TOTAL, IDLE_SECONDS, QUIET_WAIT, VETCD, OUT, KEEP_WORK=1 (keep
# the temp dir).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=$HERE/bin
VETCD=${VETCD:-$ROOT/bin/vetcd}
OUT=${OUT:-$HERE/out}

# Sizes: chosen so that one full run takes 5-6 minutes on a 2-core machine
# (about 4-6 s per benchmark run, 2 systems x 3 scenarios x ROUNDS). Many
# short alternating rounds beat a few long ones here: the noise on a small
# shared machine drifts over minutes, and pairs of adjacent runs share it.
# ROUNDS is even so that each system goes first equally often.
ROUNDS=${ROUNDS:-8}
PUT1_TOTAL=${PUT1_TOTAL:-5000}
PUT100_TOTAL=${PUT100_TOTAL:-20000}
RANGE100_TOTAL=${RANGE100_TOTAL:-40000}
IDLE_SECONDS=${IDLE_SECONDS:-10}
# How long to wait for other work on the machine to calm down first.
QUIET_WAIT=${QUIET_WAIT:-120}
VAL_SIZE=256
KEY_SIZE=8
# Puts draw random keys from this many, so the data set grows like a real
# one instead of rewriting a single key.
KEY_SPACE=100000
# The key the range scenario reads; it holds a VAL_SIZE value.
RANGE_KEY=bench-range-key
SCENARIOS=(put-1 put-100 range-100)
SYSTEMS=(vetcd etcd)
# A single benchmark run may not take longer than this.
RUN_DEADLINE=300

log() { printf '%s steady: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

HZ=$(getconf CLK_TCK)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

for f in "$VETCD" "$BIN/etcd" "$BIN/etcdctl" "$BIN/benchmark"; do
	[[ -x $f ]] || die "$f is missing: run 'make build' in the repo root and 'make tools' in bench/"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vetcd-bench.XXXXXX")
VDIR=$WORK/vetcd        # the `vetcd up` cluster dir (pki, data, logs)
PKI=$VDIR/pki
UP_PID=""               # `vetcd up`
VETCD_PIDS=()           # its 3 `vetcd serve` replicas
ETCD_PIDS=()            # the 3 stock etcd members
BENCH_PID=""            # the benchmark run in progress

# replica_pids: the pids `vetcd up` wrote for its replicas.
replica_pids() {
	local i
	for i in 0 1 2; do
		[[ -s $VDIR/vetcd-$i/pid ]] && cat "$VDIR/vetcd-$i/pid"
	done
	return 0
}

cleanup() {
	local rc=$? p pids=()
	set +e
	trap - EXIT INT TERM
	[[ -n $BENCH_PID ]] && alive "$BENCH_PID" && kill -KILL "$BENCH_PID" 2>/dev/null
	# vetcd up stops its replicas itself on SIGTERM (they keep membership);
	# give it the time a replica needs to stop, then kill what is left.
	if [[ -n $UP_PID ]] && alive "$UP_PID"; then
		mapfile -t pids < <(replica_pids)
		pids+=("$UP_PID" "${VETCD_PIDS[@]}")
		local t0=$SECONDS
		kill -TERM "$UP_PID" 2>/dev/null
		if wait_gone 45 "${pids[@]}"; then
			log "vetcd up stopped in $((SECONDS - t0)) s"
		else
			log "vetcd up did not stop within 45 s; killing it"
		fi
	fi
	for p in "$UP_PID" $(replica_pids) "${VETCD_PIDS[@]}"; do
		ours "$p" && kill -KILL "$p" 2>/dev/null
	done
	for p in "${ETCD_PIDS[@]}"; do alive "$p" && kill -TERM "$p" 2>/dev/null; done
	wait_gone 20 "${ETCD_PIDS[@]}" || log "etcd did not stop within 20 s; killing it"
	for p in "${ETCD_PIDS[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
	if ((rc != 0)); then
		log "failed (exit $rc); last log lines:"
		for p in "$WORK/up.out" "$WORK/up.err" "$VDIR"/vetcd-*/serve.log "$WORK"/etcd-*.log; do
			[[ -f $p ]] && { echo "--- $p" >&2; tail -n 15 "$p" >&2; }
		done
	fi
	if [[ ${KEEP_WORK:-0} == 1 ]]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- ports: vetcd uses BASE..BASE+23, stock etcd BASE+100..BASE+121 ----
BASE=$(pick_base)
VETCD_EPS=https://127.0.0.1:$BASE,https://127.0.0.1:$((BASE + 10)),https://127.0.0.1:$((BASE + 20))
ETCD_EPS=https://127.0.0.1:$((BASE + 100)),https://127.0.0.1:$((BASE + 110)),https://127.0.0.1:$((BASE + 120))
log "work dir $WORK, ports $BASE-$((BASE + 199))"

mkdir -p "$OUT"
rm -rf "$OUT/raw" "$OUT/settings"
mkdir -p "$OUT/raw" "$OUT/settings"
# Every result file is rewritten, so a failed run cannot leave a mix.
rm -f "$OUT"/{steady,rss,idle,meta}.tsv

META=$OUT/meta.tsv
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
record_machine meta
meta etcd_version "$("$BIN/etcd" --version | awk '/^etcd Version/ {print $3}')"
meta vetcd_bin "$VETCD"
meta etcd_bin "$BIN/etcd"
meta benchmark_bin "$BIN/benchmark"
meta rounds "$ROUNDS"
meta val_size "$VAL_SIZE"
meta key_size "$KEY_SIZE"
meta key_space "$KEY_SPACE"

# Numbers taken while other work runs on this 2-core machine are noisy.
# Wait up to QUIET_WAIT s for it to be mostly idle (under a quarter of its
# CPU busy over 2 s), then go on either way and record what it was.
wait_quiet "$QUIET_WAIT"
meta busy_before_start_pct "$BUSY"
meta quiet_waited_seconds "$QUIET_WAITED"
meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
START=$SECONDS

# ---- start both clusters -------------------------------------------------
# vetcd first: `vetcd up` creates the CA and the member certificate that
# the stock cluster uses too, so both serve the same certificates.
log "starting vetcd up (3 replicas)"
"$VETCD" up --dir "$VDIR" --replicas 3 --base-port "$BASE" >"$WORK/up.out" 2>"$WORK/up.err" &
UP_PID=$!

deadline=$((SECONDS + 60))
until [[ -s $PKI/member.key && -s $PKI/client.key ]]; do
	alive "$UP_PID" || die "vetcd up exited before writing its certificates"
	((SECONDS < deadline)) || die "vetcd up wrote no certificates within 60 s"
	sleep 0.2
done

# The same flags vetcd gives its embedded etcd (internal/replica/etcd.go):
# client and peer TLS with client-certificate auth on the member
# certificate, snapshot-count 10000, strict reconfig check; everything else
# (heartbeat 100 ms, election 1000 ms, quota, compaction off, ...) is etcd's
# default in both. The report compares the settings each member logs.
ETCD_TLS=(
	--cert-file="$PKI/member.crt" --key-file="$PKI/member.key" --trusted-ca-file="$PKI/ca.crt" --client-cert-auth
	--peer-cert-file="$PKI/member.crt" --peer-key-file="$PKI/member.key" --peer-trusted-ca-file="$PKI/ca.crt" --peer-client-cert-auth
)
ETCD_TUNING=(--snapshot-count=10000 --strict-reconfig-check)
cluster=""
for i in 0 1 2; do
	cluster+="${cluster:+,}etcd-$i=https://127.0.0.1:$((BASE + 100 + 10 * i + 1))"
done
log "starting stock etcd (3 members)"
for i in 0 1 2; do
	cp=$((BASE + 100 + 10 * i))
	"$BIN/etcd" --name "etcd-$i" --data-dir "$WORK/etcd-$i" \
		--listen-client-urls "https://127.0.0.1:$cp" --advertise-client-urls "https://127.0.0.1:$cp" \
		--listen-peer-urls "https://127.0.0.1:$((cp + 1))" --initial-advertise-peer-urls "https://127.0.0.1:$((cp + 1))" \
		--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "vetcd-bench-$BASE" \
		"${ETCD_TLS[@]}" "${ETCD_TUNING[@]}" >"$WORK/etcd-$i.log" 2>&1 &
	ETCD_PIDS+=($!)
done


deadline=$((SECONDS + 120))
until grep -q "cluster is ready" "$WORK/up.out"; do
	alive "$UP_PID" || die "vetcd up exited before the cluster was ready"
	((SECONDS < deadline)) || die "vetcd cluster not ready within 120 s"
	sleep 0.5
done
until ctl "$ETCD_EPS" endpoint health >/dev/null 2>&1; do
	for p in "${ETCD_PIDS[@]}"; do alive "$p" || die "an etcd member exited while starting"; done
	((SECONDS < deadline)) || die "stock etcd cluster not healthy within 120 s"
	sleep 0.5
done
mapfile -t VETCD_PIDS < <(replica_pids)
((${#VETCD_PIDS[@]} == 3)) || die "expected 3 replica pid files, found ${#VETCD_PIDS[@]}"
for p in "${VETCD_PIDS[@]}"; do ours "$p" || die "replica pid $p is not a running vetcd serve of this run"; done
log "both clusters ready after $((SECONDS - START)) s (vetcd pids ${VETCD_PIDS[*]}, etcd pids ${ETCD_PIDS[*]})"
meta startup_seconds "$((SECONDS - START))"

# set_pids SYSTEM: PIDS := the processes measured for SYSTEM (vetcd-up is
# the local supervisor, measured on its own).
set_pids() {
	case $1 in
	vetcd) PIDS=("${VETCD_PIDS[@]}") ;;
	etcd) PIDS=("${ETCD_PIDS[@]}") ;;
	vetcd-up) PIDS=("$UP_PID") ;;
	*) die "unknown system $1" ;;
	esac
}
eps_of() {
	case $1 in
	vetcd) echo "$VETCD_EPS" ;;
	etcd) echo "$ETCD_EPS" ;;
	esac
}

# cpu_ticks PID...: user+system CPU of the PIDs so far, in clock ticks.
cpu_ticks() {
	local p sum=0 t
	for p in "$@"; do
		t=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
		sum=$((sum + t))
	done
	echo "$sum"
}
# cpu_of SYSTEM: cpu_ticks of SYSTEM's processes.
cpu_of() {
	set_pids "$1"
	cpu_ticks "${PIDS[@]}"
}
# ours_ticks: sets OURS to the CPU ticks used so far by everything this
# script started: both clusters, the supervisor, and every child this shell
# has reaped (bash's `times`), which includes each finished benchmark run.
# Not for $(...): a subshell's `times` would not see this shell's children.
ours_ticks() {
	local servers
	servers=$(cpu_ticks "${VETCD_PIDS[@]}" "${ETCD_PIDS[@]}" "$UP_PID")
	times >"$WORK/times"
	OURS=$(awk -v s="$servers" -v hz="$HZ" '
		function secs(f,  a) { split(f, a, "m"); return a[1] * 60 + substr(a[2], 1, length(a[2]) - 1) }
		NR == 2 { printf "%d", s + (secs($1) + secs($2)) * hz }' "$WORK/times")
}

# record_rss PHASE: VmRSS and VmHWM of every server process of both systems.
record_rss() {
	local sys p i
	[[ -f $OUT/rss.tsv ]] || printf 'phase\tsystem\tprocess\tpid\tvmrss_kib\tvmhwm_kib\n' >"$OUT/rss.tsv"
	for sys in "${SYSTEMS[@]}"; do
		i=0
		set_pids "$sys"
		for p in "${PIDS[@]}"; do
			alive "$p" || die "$sys process $p is gone"
			printf '%s\t%s\t%s-%d\t%s\t%s\t%s\n' "$1" "$sys" "$sys" "$i" "$p" \
				"$(awk '/^VmRSS/ {print $2}' "/proc/$p/status")" "$(awk '/^VmHWM/ {print $2}' "/proc/$p/status")" >>"$OUT/rss.tsv"
			i=$((i + 1))
		done
	done
	# The local supervisor has no counterpart in Kubernetes (the StatefulSet
	# controller plays its part there), so it is recorded on its own row.
	printf '%s\tvetcd-up\tsupervisor\t%s\t%s\t%s\n' "$1" "$UP_PID" \
		"$(awk '/^VmRSS/ {print $2}' "/proc/$UP_PID/status")" "$(awk '/^VmHWM/ {print $2}' "/proc/$UP_PID/status")" >>"$OUT/rss.tsv"
}

# Copy the startup settings each member logged, for the report's check.
for i in 0 1 2; do
	grep -E '"msg":"(starting an etcd server|starting with client TLS|starting with peer TLS)"' \
		"$VDIR/vetcd-$i/serve.log" >"$OUT/settings/vetcd-$i.jsonl" || true
	grep -E '"msg":"(starting an etcd server|starting with client TLS|starting with peer TLS)"' \
		"$WORK/etcd-$i.log" >"$OUT/settings/etcd-$i.jsonl" || true
done

record_rss idle

# log_lines SYSTEM: lines the system's members have logged so far. vetcd
# logs through its own zap logger, which does not sample repeated messages
# the way etcd's default logger does; the count shows whether that matters.
log_lines() {
	case $1 in
	vetcd) cat "$VDIR"/vetcd-*/serve.log | wc -l ;;
	etcd) cat "$WORK"/etcd-*.log | wc -l ;;
	esac
}
for sys in "${SYSTEMS[@]}"; do meta "${sys}_log_lines_idle" "$(log_lines "$sys")"; done

# ---- idle CPU -------------------------------------------------------------
# Both systems idle side by side: what each costs with no load at all (for
# vetcd, this is mostly its controller's passes and its agent).
log "measuring idle CPU for $IDLE_SECONDS s"
v0=$(cpu_of vetcd) e0=$(cpu_of etcd) u0=$(cpu_of vetcd-up)
sleep "$IDLE_SECONDS"
v1=$(cpu_of vetcd) e1=$(cpu_of etcd) u1=$(cpu_of vetcd-up)
{
	printf 'system\tseconds\tcpu_seconds\n'
	printf 'vetcd\t%s\t%s\n' "$IDLE_SECONDS" "$(awk -v t=$((v1 - v0)) -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}')"
	printf 'etcd\t%s\t%s\n' "$IDLE_SECONDS" "$(awk -v t=$((e1 - e0)) -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}')"
	printf 'vetcd-up\t%s\t%s\n' "$IDLE_SECONDS" "$(awk -v t=$((u1 - u0)) -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}')"
} >"$OUT/idle.tsv"

# ---- load -----------------------------------------------------------------
# scenario_args NAME: sets ARGS to the benchmark tool's arguments for NAME.
# A new scenario is one more case here and one more name in SCENARIOS.
scenario_args() {
	case $1 in
	put-1) ARGS=(--conns=1 --clients=1 put --total="$PUT1_TOTAL") ;;
	put-100) ARGS=(--conns=100 --clients=100 put --total="$PUT100_TOTAL") ;;
	range-100) ARGS=(--conns=100 --clients=100 range "$RANGE_KEY" --consistency=l --total="$RANGE100_TOTAL") ;;
	warmup) ARGS=(--conns=100 --clients=100 put --total=2000) ;;
	*) die "unknown scenario $1" ;;
	esac
	if [[ ${ARGS[2]} == put ]]; then
		ARGS+=(--val-size="$VAL_SIZE" --key-size="$KEY_SIZE" --key-space-size="$KEY_SPACE")
	fi
}

# parse FILE: one TSV fragment from the benchmark tool's summary:
# total_seconds req_per_sec p50 p90 p99 p99.9 (seconds) errors.
parse() {
	awk '
		/^ *Total:/          { total = $2 }
		/^ *Requests\/sec:/  { rps = $2 }
		/^ *50% in/          { p50 = $3 }
		/^ *90% in/          { p90 = $3 }
		/^ *99% in/          { p99 = $3 }
		/^ *99\.9% in/       { p999 = $3 }
		/^Error distribution/ { inerr = 1; next }
		inerr && /^ *\[[0-9]+\]/ { n = $1; gsub(/[][]/, "", n); errors += n; next }
		inerr && /^ *$/      { inerr = 0 }
		END {
			if (rps == "" || p99 == "") exit 1
			if (p999 == "") p999 = "NA"  # absent below 1000 requests
			printf "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", total, rps, p50, p90, p99, p999, errors
		}' "$1"
}

# run SYSTEM SCENARIO ROUND: one benchmark run, appended to steady.tsv.
run() {
	local sys=$1 sc=$2 round=$3 raw c0 c1 m0 m1 o0 o1 fields rc
	scenario_args "$sc"
	raw=$OUT/raw/$sc.$round.$sys.txt
	c0=$(cpu_of "$sys")
	ours_ticks
	o0=$OURS
	m0=$(machine_ticks)
	# In the background, so that a signal reaches the EXIT trap at once;
	# timeout bounds the run.
	GRPC_GO_LOG_SEVERITY_LEVEL=error timeout --kill-after=10 "$RUN_DEADLINE" "$BIN/benchmark" --precise \
		--endpoints="$(eps_of "$sys")" --cacert="$PKI/ca.crt" --cert="$PKI/client.crt" --key="$PKI/client.key" \
		--dial-timeout=5s "${ARGS[@]}" >"$raw" 2>"$WORK/benchmark.err" &
	BENCH_PID=$!
	rc=0
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=""
	((rc == 0)) || die "benchmark $sc on $sys exited $rc (124: over ${RUN_DEADLINE} s); see $raw and: $(tail -n 3 "$WORK/benchmark.err")"
	m1=$(machine_ticks)
	ours_ticks
	o1=$OURS
	c1=$(cpu_of "$sys")
	[[ $sc == warmup ]] && return 0
	fields=$(parse "$raw") || die "cannot parse the benchmark output in $raw"
	[[ -f $OUT/steady.tsv ]] ||
		printf 'system\tscenario\tround\ttotal_seconds\treq_per_sec\tp50_s\tp90_s\tp99_s\tp999_s\terrors\tserver_cpu_s\tmachine_busy_pct\tforeign_cpu_pct\n' >"$OUT/steady.tsv"
	# machine_busy_pct: the whole machine's CPU use during the run;
	# foreign_cpu_pct: the part of it this script did not start (other
	# users of the machine), which makes a comparison less trustworthy.
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$sc" "$round" "$fields" \
		"$(awk -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}')" \
		"$(pct "$m0" "$m1")" "$(pct "$m0" "$m1" $((${m0%% *} - o0)) $((${m1%% *} - o1)))" \
		>>"$OUT/steady.tsv"
	log "$(printf '%-9s %-5s round %d: %s' "$sc" "$sys" "$round" "$(cut -f2,5 <<<"$fields" | awk '{printf "%.0f req/s, p99 %.2f ms", $1, $2 * 1000}')")"
}

# Warm up both (connections, first snapshot, Go heaps), then seed the key
# the range scenario reads.
value=$(head -c "$VAL_SIZE" /dev/zero | tr '\0' v)
for sys in "${SYSTEMS[@]}"; do
	run "$sys" warmup 0
	ctl "$(eps_of "$sys")" put "$RANGE_KEY" "$value" >/dev/null
done

for ((round = 1; round <= ROUNDS; round++)); do
	# Alternate which system goes first, so neither always runs right
	# after the other (vetcd, etcd; etcd, vetcd; ...).
	order=("${SYSTEMS[@]}")
	((round % 2 == 0)) && order=("${SYSTEMS[1]}" "${SYSTEMS[0]}")
	for sc in "${SCENARIOS[@]}"; do
		for sys in "${order[@]}"; do
			run "$sys" "$sc" "$round"
		done
	done
done

record_rss after-load

# A replica the supervisor restarted mid-run would make every number above
# suspect: record the restart counters and check the pids did not change.
restarts=0
for i in 0 1 2; do
	[[ -s $VDIR/vetcd-$i/restarts ]] && restarts=$((restarts + $(cat "$VDIR/vetcd-$i/restarts")))
done
meta vetcd_restarts "$restarts"
[[ "$(replica_pids | tr '\n' ' ')" == "${VETCD_PIDS[*]} " ]] || die "vetcd replica pids changed during the run"
meta vetcd_members "$(ctl "$VETCD_EPS" member list | awk -F', ' '{print $3 ($6 == "true" ? "(learner)" : "")}' | sort | tr '\n' ' ')"
meta etcd_members "$(ctl "$ETCD_EPS" member list | awk -F', ' '{print $3 ($6 == "true" ? "(learner)" : "")}' | sort | tr '\n' ' ')"
for sys in "${SYSTEMS[@]}"; do
	meta "${sys}_db_size" "$(ctl "$(eps_of "$sys")" endpoint status -w json | grep -o '"dbSize":[0-9]*' | head -1 | cut -d: -f2)"
done
for sys in "${SYSTEMS[@]}"; do meta "${sys}_log_lines_end" "$(log_lines "$sys")"; done
meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta duration_seconds "$((SECONDS - START))"
meta totals "put-1=$PUT1_TOTAL put-100=$PUT100_TOTAL range-100=$RANGE100_TOTAL"
log "done in $((SECONDS - START)) s; results in $OUT"
