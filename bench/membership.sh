#!/usr/bin/env bash
# membership.sh — the membership benchmarks of issue 7: scale-up, failover
# and rebuild of vetcd, each set beside stock etcd 3.7.3 on this machine in
# the same run, with the same etcd flags as recovery.sh.
#
#   scaleup   For each size in SIZES: a 1-replica `vetcd up` cluster and a
#             1-member stock etcd cluster are filled the same way as in
#             recovery.sh (SIZE of 256 KiB values, then SNAP_PUTS small
#             puts, so that a joiner can only catch up from a snapshot).
#             Then SCALE_REPEATS times:
#               etcd  the floor: `member add --learner`, start an etcd with
#                     an empty data dir, wait until it has applied what the
#                     leader had applied, `member promote` — for the 2nd and
#                     then the 3rd member (etcd allows one learner at a
#                     time). Measured from the first member add to the
#                     second promote. Then both are removed again.
#               vetcd `vetcd scale 3`; measured from the command's start
#                     until `vetcd status` shows 3 healthy voters. Then
#                     `vetcd scale 1 --wait`, and the removed replicas' data
#                     dirs are deleted, so that every repeat starts from
#                     empty joiners as the floor does.
#   failover  A 3-replica `vetcd up` cluster and a 3-member stock etcd
#             cluster (no fill). REPEATS times for each system: the writer
#             (bench/tools/writer: one client, puts back to back through
#             all three endpoints, each with a WRITE_TIMEOUT deadline,
#             logging the time of every success) runs; after PRE seconds
#             the leader is killed with -9; the run ends POST seconds after
#             the cluster has 3 healthy voters again. The unavailability is
#             the longest gap between two successful writes that ends after
#             the kill. vetcd's supervisor restarts the killed replica;
#             stock etcd's killed member stays down and is restarted (same
#             data dir and flags) after the run, before the next.
#   rebuild   The 3-replica `vetcd up` cluster, REPEATS times: with the
#             writer running, `vetcd scale 1`; the window is the longest
#             gap between successful writes ending after the command
#             started, the run ends POST seconds after `vetcd status` shows
#             one healthy voter. Then `vetcd scale 3 --wait` for the next.
#             The meta records how many force-new-cluster rebuilds the
#             replicas logged (in the smoke runs: none; the surplus
#             replicas left cleanly and the survivor kept quorum).
#             Stock etcd has no automatic 3->1 operation; its closest
#             procedure, `member remove` of the two followers one after the
#             other, is measured the same way (then the two are added back
#             as learners with empty dirs and promoted).
#   abrupt    As rebuild, but the two surplus replicas are killed with -9
#             first (vetcd-0 leads, as vetcd keeps it), then `vetcd scale 1`:
#             the survivor must rebuild with force-new-cluster by itself.
#             Stock etcd's floor is a perfect operator: the two followers
#             killed with -9, the survivor stopped and at once restarted
#             with --force-new-cluster. Not in the default MODES.
#
# Output (OUT, default bench/out/); a run replaces the rows of the modes it
# ran and keeps the others:
#   membership.tsv       one row per measurement
#   membership-meta.tsv  mode, key, value: machine, parameters
#   membership-raw/      writer logs and status polls, per run
#
# Knobs (environment): MODES ("scaleup failover rebuild"), SIZES ("100MB
# 1GB"; MB = MiB, GB = GiB), SCALE_REPEATS (3), REPEATS (5), WRITE_TIMEOUT
# (500ms), PRE (3 s), POST (3 s), SNAP_PUTS (6000), FILL_DEADLINE (600 s),
# READY_DEADLINE (900 s), QUIET_WAIT (120), VETCD, OUT, KEEP_WORK=1. A quick
# run: SIZES=10MB SCALE_REPEATS=1 REPEATS=2. Every process this script
# starts is stopped by the EXIT trap; every wait has a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=$HERE/bin
VETCD=${VETCD:-$ROOT/bin/vetcd}
OUT=${OUT:-$HERE/out}

MODES=${MODES:-scaleup failover rebuild}
SIZES=${SIZES:-100MB 1GB}
SCALE_REPEATS=${SCALE_REPEATS:-3}
REPEATS=${REPEATS:-5}
WRITE_TIMEOUT=${WRITE_TIMEOUT:-500ms}
PRE=${PRE:-3}
POST=${POST:-3}
SNAP_PUTS=${SNAP_PUTS:-6000}
FILL_DEADLINE=${FILL_DEADLINE:-600}
READY_DEADLINE=${READY_DEADLINE:-900}
QUIET_WAIT=${QUIET_WAIT:-120}
VAL_SIZE=262144 # 256 KiB, as recovery.sh
QUOTA=8589934592
SETTLE=3

log() { printf '%s membership: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# shellcheck source=lib.sh
source "$HERE/lib.sh"

for f in "$VETCD" "$BIN/etcd" "$BIN/etcdctl" "$BIN/benchmark" "$BIN/writer"; do
	[[ -x $f ]] || die "$f is missing: run 'make build' in the repo root and 'make tools' in bench/"
done
command -v jq >/dev/null || die "jq is needed"
for m in $MODES; do
	[[ $m =~ ^(scaleup|failover|rebuild|abrupt)$ ]] || die "bad mode $m in MODES (want scaleup, failover, rebuild, abrupt)"
done
for s in $SIZES; do
	[[ $s =~ ^[1-9][0-9]*[MG]B$ ]] || die "bad size $s in SIZES (want e.g. 10MB or 1GB)"
done
[[ $SCALE_REPEATS =~ ^[1-9][0-9]*$ && $REPEATS =~ ^[1-9][0-9]*$ ]] || die "SCALE_REPEATS and REPEATS must be at least 1"


WORK=$(mktemp -d "${TMPDIR:-/tmp}/vetcd-membership.XXXXXX")
UP_PID=""
VDIR=""
PKI=""
declare -A EPID=() # stock etcd member index -> pid
WRITER_PID=""
BENCH_PID=""
TRICKLE_PIDS=()
TRICKLE_RATE=${TRICKLE_RATE:-10}

# ---- time: wall clock, as the writer logs it -------------------------------
now() { echo "$EPOCHREALTIME"; }

# ---- processes ---------------------------------------------------------------

stop_writer() {
	if [[ -n $WRITER_PID ]] && alive "$WRITER_PID"; then
		kill -TERM "$WRITER_PID" 2>/dev/null
		wait_gone 10 "$WRITER_PID" || kill -KILL "$WRITER_PID" 2>/dev/null
	fi
	WRITER_PID=""
	return 0
}

stop_clusters() {
	local p pids=()
	stop_writer
	stop_trickle
	[[ -n $BENCH_PID ]] && alive "$BENCH_PID" && kill -KILL "$BENCH_PID" 2>/dev/null
	BENCH_PID=""
	if [[ -n $UP_PID ]] && alive "$UP_PID"; then
		mapfile -t pids < <(replica_pids)
		pids+=("$UP_PID")
		kill -TERM "$UP_PID" 2>/dev/null
		wait_gone 45 "${pids[@]}" || log "vetcd up did not stop within 45 s; killing it"
	fi
	for p in "$UP_PID" $(replica_pids); do
		ours "$p" && kill -KILL "$p" 2>/dev/null
	done
	UP_PID=""
	for p in "${EPID[@]}"; do alive "$p" && kill -TERM "$p" 2>/dev/null; done
	wait_gone 20 "${EPID[@]}" || log "etcd did not stop within 20 s; killing it"
	for p in "${EPID[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
	EPID=()
	VDIR=""
	return 0
}

cleanup() {
	local rc=$? p
	set +e
	trap - EXIT INT TERM
	if ((rc != 0)); then
		log "failed (exit $rc); last log lines:"
		for p in "$WORK/up.err" "$VDIR"/vetcd-*/serve.log "$WORK"/etcd-*.log; do
			[[ -f $p ]] && { echo "--- $p" >&2; tail -n 15 "$p" >&2; }
		done
	fi
	stop_clusters
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

# ---- output --------------------------------------------------------------------
mkdir -p "$OUT"
TSV=$OUT/membership.tsv
META=$OUT/membership-meta.tsv
RAW=$OUT/membership-raw
HEADER=$'mode\tsize\tsystem\trepeat\tseconds\tbaseline_gap_s\twrites\tdb_size_bytes\tpoll_s\tcheck'
keep_other_modes() { # FILE HEADER: keep the rows of the modes not run now
	local tmp=$1.tmp
	if [[ -f $1 ]] && [[ "$(head -n 1 "$1")" == "$2" ]]; then
		awk -F'\t' -v modes=" $MODES " 'NR > 1 && index(modes, " " $1 " ") == 0' "$1" >"$tmp"
	else
		: >"$tmp"
	fi
	{ printf '%s\n' "$2"; cat "$tmp"; } >"$1"
	rm -f "$tmp"
}
keep_other_modes "$TSV" "$HEADER"
keep_other_modes "$META" $'mode\tkey\tvalue'
for m in $MODES; do rm -rf "${RAW:?}/$m"; done

MODE=""
meta() { printf '%s\t%s\t%s\n' "$MODE" "$1" "$2" >>"$META"; }
row() {
	local IFS=$'\t'
	printf '%s\n' "$*" >>"$TSV"
}

# ---- clusters ------------------------------------------------------------------
# voters N: true once `vetcd status` shows exactly N members, all healthy
# voters, one of them the leader.
voters() {
	local st
	st=$(vstatus) || return 1
	jq -e --argjson n "$1" '(.members | length == $n) and ([.members[] | select(.healthy and .role != "learner")] | length == $n) and ([.members[] | select(.role == "leader")] | length == 1)' <<<"$st" >/dev/null 2>&1
}
wait_voters() { # N DEADLINE_S
	local deadline=$((SECONDS + $2))
	until voters "$1"; do
		alive "$UP_PID" || die "vetcd up exited"
		((SECONDS < deadline)) || die "vetcd not $1 healthy voters within $2 s: $(vstatus || true)"
		nap 0.2
	done
}
eurl() { echo "https://127.0.0.1:$((BASE + 100 + 10 * $1))"; }
purl() { echo "https://127.0.0.1:$((BASE + 100 + 10 * $1 + 1))"; }
etcd_eps() {
	local i e=""
	for i in $(printf '%s\n' "${!EPID[@]}" | sort -n); do e+="${e:+,}$(eurl "$i")"; done
	echo "$e"
}

# start_etcd I STATE CLUSTER DATADIR [FLAG]: one stock etcd member.
start_etcd() {
	"$BIN/etcd" --name "etcd-$1" --data-dir "$4" \
		--listen-client-urls "$(eurl "$1")" --advertise-client-urls "$(eurl "$1")" \
		--listen-peer-urls "$(purl "$1")" --initial-advertise-peer-urls "$(purl "$1")" \
		--initial-cluster "$3" --initial-cluster-state "$2" --initial-cluster-token "vetcd-membership-$BASE" \
		--cert-file="$PKI/member.crt" --key-file="$PKI/member.key" --trusted-ca-file="$PKI/ca.crt" --client-cert-auth \
		--peer-cert-file="$PKI/member.crt" --peer-key-file="$PKI/member.key" --peer-trusted-ca-file="$PKI/ca.crt" --peer-client-cert-auth \
		--snapshot-count=10000 --strict-reconfig-check --quota-backend-bytes="$QUOTA" ${5:-} >>"$WORK/etcd-$1.log" 2>&1 &
	EPID[$1]=$!
	disown "$!" # no "Killed" notice when a run kills it
}

# start_clusters N: a `vetcd up --replicas N` cluster and an N-member stock
# etcd cluster, both ready.
start_clusters() {
	local n=$1 i cluster="" deadline
	BASE=$(pick_base)
	VDIR=$WORK/vetcd
	PKI=$VDIR/pki
	rm -rf "$VDIR" "$WORK"/etcd-*
	log "$MODE: work dir $WORK, ports $BASE-$((BASE + 199)), $n replicas"
	printf 'extraArgs:\n  - --quota-backend-bytes=%s\n' "$QUOTA" >"$WORK/vetcd.yaml"
	"$VETCD" up --dir "$VDIR" --replicas "$n" --base-port "$BASE" --config "$WORK/vetcd.yaml" \
		>"$WORK/up.out" 2>"$WORK/up.err" &
	UP_PID=$!
	deadline=$((SECONDS + 60))
	until [[ -s $PKI/member.key && -s $PKI/client.key ]]; do
		alive "$UP_PID" || die "vetcd up exited before writing its certificates"
		((SECONDS < deadline)) || die "vetcd up wrote no certificates within 60 s"
		nap 0.2
	done
	for ((i = 0; i < n; i++)); do cluster+="${cluster:+,}etcd-$i=$(purl "$i")"; done
	ECLUSTER=$cluster
	for ((i = 0; i < n; i++)); do start_etcd "$i" new "$cluster" "$WORK/etcd-$i"; done
	VETCD_EPS=""
	for ((i = 0; i < 3; i++)); do VETCD_EPS+="${VETCD_EPS:+,}https://127.0.0.1:$((BASE + 10 * i))"; done
	wait_voters "$n" 120
	deadline=$((SECONDS + 120))
	until ctl "$(etcd_eps)" endpoint health >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "stock etcd cluster not healthy within 120 s"
		nap 0.5
	done
	log "$MODE: both clusters ready"
}

# bench EPS DEADLINE NAME ARGS...: etcd's benchmark tool, as recovery.sh.
bench() {
	local eps=$1 dl=$2 name=$3 rc=0
	shift 3
	GRPC_GO_LOG_SEVERITY_LEVEL=error timeout --kill-after=10 "$dl" "$BIN/benchmark" \
		--endpoints="$eps" --cacert="$PKI/ca.crt" --cert="$PKI/client.crt" --key="$PKI/client.key" \
		--dial-timeout=5s "$@" >"$WORK/$name.txt" 2>"$WORK/$name.err" &
	BENCH_PID=$!
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=""
	return "$rc"
}
fill() { # SYSTEM EPS PUTS
	local t0
	t0=$(now)
	bench "$2" "$FILL_DEADLINE" "fill-$1" --conns=4 --clients=8 put --total="$3" \
		--val-size="$VAL_SIZE" --key-size=8 --sequential-keys --key-space-size="$3" ||
		die "filling $1 exited $? (FILL_DEADLINE $FILL_DEADLINE s): $(tail -n 3 "$WORK/fill-$1.err")"
	bench "$2" 300 "fill-small-$1" --conns=10 --clients=50 put --total="$SNAP_PUTS" \
		--val-size=8 --key-size=16 --key-space-size=1 || die "small puts into $1 exited $?"
	meta "fill_s_${1}_$SIZE" "$(sub "$(now)" "$t0")"
}
db_of() {
	ctl "$1" endpoint status -w json 2>/dev/null |
		jq -r '[.[] | select(.Status.leader == .Status.header.member_id)][0].Status.dbSize'
}
# start_trickle EPS: the light write load of recovery.sh (TRICKLE_RATE puts
# a second to one key) while members join. Without it stock etcd 3.7.3 can
# leave a joiner that received a snapshot refusing its own "publish member"
# request with "too many requests" until the cluster commits a new entry
# (seen here: stuck for 9 minutes).
start_trickle() {
	GRPC_GO_LOG_SEVERITY_LEVEL=error "$BIN/benchmark" --endpoints="$1" --cacert="$PKI/ca.crt" \
		--cert="$PKI/client.crt" --key="$PKI/client.key" --dial-timeout=5s --conns=1 --clients=1 \
		put --rate="$TRICKLE_RATE" --total=1000000000 --val-size=8 --key-size=16 --key-space-size=1 \
		>/dev/null 2>>"$WORK/trickle.err" &
	TRICKLE_PIDS+=($!)
	disown "$!"
}
stop_trickle() {
	local p
	for p in "${TRICKLE_PIDS[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
	TRICKLE_PIDS=()
	return 0
}

# ---- the writer ---------------------------------------------------------------
start_writer() { # EPS LOG
	"$BIN/writer" -endpoints "$1" -cacert "$PKI/ca.crt" -cert "$PKI/client.crt" -key "$PKI/client.key" \
		-timeout "$WRITE_TIMEOUT" -pause 50ms >"$2" 2>"$2.err" &
	WRITER_PID=$!
	local deadline=$((SECONDS + 30))
	until [[ -s $2 ]]; do
		alive "$WRITER_PID" || die "the writer exited: $(cat "$2.err")"
		((SECONDS < deadline)) || die "the writer wrote nothing within 30 s"
		nap 0.1
	done
}
# writes_since LOG T: true once LOG has a success after time T.
writes_since() { [[ -s $1 ]] && awk -v t="$2" '$1 > t {f = 1; exit} END {exit !f}' "$1"; }
# gaps LOG T: "G B N": the longest gap between two successes that ends after
# T, the longest before T (the baseline), and the number of successes.
gaps() {
	awk -v t="$1" 'NR > 1 {d = $1 - p; if ($1 > t) {if (d > g) g = d} else if (d > b) b = d} {p = $1; n++}
		END {printf "%.3f %.3f %d\n", g, b, n}' "$2"
}
# writer_run NAME EPS ACTION READY: the writer on EPS; after PRE s, ACTION
# (a function; it sets T_EVENT); then READY (a function) is polled until
# true; POST s later the writer stops. Sets GAP, BASEGAP, WRITES.
writer_run() {
	local lg=$RAW/$MODE/$1.writer deadline
	start_writer "$2" "$lg"
	nap "$PRE"
	"$3"
	deadline=$((SECONDS + READY_DEADLINE))
	until "$4" && writes_since "$lg" "$T_EVENT"; do
		((SECONDS < deadline)) || die "$1: not recovered within $READY_DEADLINE s"
		alive "$WRITER_PID" || die "the writer exited: $(cat "$lg.err")"
		nap 0.2
	done
	nap "$POST"
	stop_writer
	read -r GAP BASEGAP WRITES < <(gaps "$T_EVENT" "$lg")
}

# ---- scale-up ------------------------------------------------------------------
# etcd_join I: the floor for one member: add I as a learner, start it with
# an empty data dir, wait until it has applied what the voters had applied,
# promote it. Right after a member was removed etcd refuses a member add
# for a moment ("unhealthy cluster": its peers' connection times are
# fresh); that refusal is retried for up to 30 s.
etcd_join() {
	local i=$1 out id ic deadline st eps
	eps=$(etcd_eps)
	deadline=$((SECONDS + 30))
	until out=$(ctl "$eps" member add "etcd-$i" --learner --peer-urls="$(purl "$i")" 2>&1); do
		if [[ $out != *"unhealthy cluster"* ]] || ((SECONDS >= deadline)); then
			die "member add failed: $out"
		fi
		nap 0.5
	done
	id=$(sed -n 's/^Member  *\([0-9a-f]*\) added.*/\1/p' <<<"$out")
	ic=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' <<<"$out")
	[[ -n $id && -n $ic ]] || die "cannot read member add's answer: $out"
	rm -rf "$WORK/etcd-$i"
	start_etcd "$i" existing "$ic" "$WORK/etcd-$i"
	deadline=$((SECONDS + READY_DEADLINE))
	while :; do
		# Ask the joiner only once it has published its client URL (until
		# then it accepts connections without answering).
		st='[]'
		if ctl "$eps" member list -w json 2>/dev/null |
			jq -e --arg n "etcd-$i" 'any(.members[]; .name == $n and ((.clientURLs // []) | length) > 0)' >/dev/null 2>&1; then
			st=$(jq -s 'add' <(ctl "$eps" endpoint status -w json 2>/dev/null || echo '[]') \
				<(ctl "$(eurl "$i")" endpoint status -w json 2>/dev/null || echo '[]'))
		fi
		jq -e --arg j "$(eurl "$i")" '
			([.[] | select(.Endpoint != $j) | .Status.raftAppliedIndex] | max) as $m
			| any(.[]; .Endpoint == $j and ((.Status.errors // []) | length) == 0 and .Status.raftAppliedIndex >= $m)' \
			<<<"$st" >/dev/null 2>&1 && break
		alive "${EPID[$i]}" || die "the joining etcd-$i exited; see $WORK/etcd-$i.log"
		((SECONDS < deadline)) || die "etcd-$i not caught up within $READY_DEADLINE s"
		nap 0.1
	done
	deadline=$((SECONDS + 60))
	until ctl "$eps" member promote "$id" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "member promote $id did not succeed within 60 s"
		nap 0.1
	done
}
# etcd_remove I: remove member I (by name) and wait for its process to end.
etcd_remove() {
	local id pid=${EPID[$1]}
	# The simple form: jq would round the 64-bit IDs of the JSON form.
	id=$(ctl "$(etcd_eps)" member list | awk -F', ' -v n="etcd-$1" '$3 == n {print $1}')
	[[ -n $id ]] || die "etcd-$1 is not in the member list"
	# With --strict-reconfig-check etcd refuses a removal until the leader
	# has been connected to every peer for a while ("unhealthy cluster").
	# Asked through the other members: the removed one stops at once, and
	# a request through it can lose its answer after it took effect, so a
	# failed attempt counts as done once the member list lacks it.
	local deadline=$((SECONDS + 60)) out ml others
	others=$(etcd_eps | tr ',' '\n' | grep -vxF "$(eurl "$1")" | paste -sd,)
	until out=$(ctl "$others" member remove "$id" 2>&1) ||
		{ ml=$(ctl "$others" member list) && ! grep -q "^$id, " <<<"$ml"; }; do
		((SECONDS < deadline)) || die "member remove etcd-$1 ($id) failed for 60 s: $out"
		nap 0.5
	done
	unset "EPID[$1]"
	wait_gone 30 "$pid" || { log "removed etcd-$1 did not stop within 30 s; killing it"; kill -KILL "$pid"; }
}

scaleup() {
	local rep t0 t1 polls check db i deadline
	for SIZE in $SIZES; do
		mkdir -p "$RAW/$MODE/$SIZE"
		wait_quiet "$QUIET_WAIT"
		meta "busy_before_${SIZE}_pct" "$BUSY"
		start_clusters 1
		PUTS=$((($(size_bytes "$SIZE") + VAL_SIZE - 1) / VAL_SIZE))
		meta "puts_$SIZE" "$PUTS"
		log "$SIZE: filling both clusters with $PUTS values of $VAL_SIZE B, then $SNAP_PUTS small puts"
		fill vetcd "https://127.0.0.1:$BASE" "$PUTS"
		fill etcd "$(eurl 0)" "$PUTS"
		start_trickle "https://127.0.0.1:$BASE"
		start_trickle "$(eurl 0)"
		meta trickle_rate "$TRICKLE_RATE"
		for ((rep = 1; rep <= SCALE_REPEATS; rep++)); do
			nap "$SETTLE"
			db=$(db_of "$(eurl 0)")
			t0=$(now)
			etcd_join 1
			etcd_join 2
			t1=$(now)
			check=ok
			same_keys "$(eurl 0)" "$(eurl 2)" || check="etcd-2 keys differ"
			log "$SIZE etcd #$rep: 1 -> 3 voters (floor) $(sub "$t1" "$t0") s"
			row scaleup "$SIZE" etcd "$rep" "$(sub "$t1" "$t0")" NA NA "$db" NA "$check"
			etcd_remove 2
			etcd_remove 1

			nap "$SETTLE"
			db=$(db_of "https://127.0.0.1:$BASE")
			polls=()
			t0=$(now)
			"$VETCD" scale 3 --dir "$VDIR" >/dev/null || die "vetcd scale 3 failed"
			deadline=$((SECONDS + READY_DEADLINE))
			while :; do
				local a
				a=$(now)
				if voters 3; then break; fi
				polls+=("$(sub "$(now)" "$a")")
				alive "$UP_PID" || die "vetcd up exited"
				((SECONDS < deadline)) || die "vetcd not 3 healthy voters within $READY_DEADLINE s of scale 3"
				nap 0.1
			done
			t1=$(now)
			check=ok
			same_keys "https://127.0.0.1:$BASE" "https://127.0.0.1:$((BASE + 20))" || check="vetcd-2 keys differ"
			log "$SIZE vetcd #$rep: scale 3 -> 3 healthy voters $(sub "$t1" "$t0") s"
			row scaleup "$SIZE" vetcd "$rep" "$(sub "$t1" "$t0")" NA NA "$db" "$(median "${polls[@]}")" "$check"
			"$VETCD" scale 1 --dir "$VDIR" --wait --timeout 5m >/dev/null || die "vetcd scale 1 failed"
			wait_voters 1 120
			# Empty joiners next time, as the floor's.
			deadline=$((SECONDS + 60))
			for i in 1 2; do
				until ! { [[ -s $VDIR/vetcd-$i/pid ]] && alive "$(cat "$VDIR/vetcd-$i/pid")"; }; do
					((SECONDS < deadline)) || die "vetcd-$i still runs 60 s after scale 1"
					nap 0.2
				done
				rm -rf "$VDIR/vetcd-$i/data"
			done
		done
		# Whether the joiners caught up from snapshots (not the log), and
		# how often a stock joiner's first publish request timed out (7 s,
		# as recovery.sh reports).
		meta "vetcd_snapshots_sent_$SIZE" "$(cat "$VDIR"/vetcd-*/serve.log | grep -cF '"msg":"sent database snapshot"' || true)"
		meta "etcd_snapshots_sent_$SIZE" "$(cat "$WORK"/etcd-*.log | grep -cF '"msg":"sent database snapshot"' || true)"
		meta "etcd_publish_timeouts_$SIZE" "$(cat "$WORK"/etcd-*.log | grep -cF '"msg":"failed to publish local member to cluster through raft"' || true)"
		stop_clusters
		rm -f "$WORK"/etcd-*.log
	done
}

# ---- failover ------------------------------------------------------------------
leader_vetcd() { vstatus | jq -r '.members[] | select(.role == "leader") | .name'; }
kill_vetcd_leader() {
	local name pid
	name=$(leader_vetcd)
	[[ $name == vetcd-[0-9] ]] || die "no vetcd leader found"
	pid=$(cat "$VDIR/$name/pid")
	ours "$pid" || die "$name pid $pid is not a replica of this run"
	T_EVENT=$(now)
	kill -KILL "$pid"
	KILLED=$name
	log "failover vetcd: killed leader $name (pid $pid)"
}
vetcd3() { voters 3; }
kill_etcd_leader() {
	local ep i
	ep=$(ctl "$(etcd_eps)" endpoint status -w json | jq -r '.[] | select(.Status.leader == .Status.header.member_id) | .Endpoint')
	for i in "${!EPID[@]}"; do [[ $(eurl "$i") == "$ep" ]] && KILLED=$i; done
	[[ -n ${KILLED:-} && $ep == "$(eurl "$KILLED")" ]] || die "no etcd leader found"
	T_EVENT=$(now)
	kill -KILL "${EPID[$KILLED]}"
	log "failover etcd: killed leader etcd-$KILLED (pid ${EPID[$KILLED]})"
}
# etcd2: the two survivors have a leader and accept a put.
etcd2() {
	local eps="" i
	for i in "${!EPID[@]}"; do [[ $i == "$KILLED" ]] || eps+="${eps:+,}$(eurl "$i")"; done
	ctl "$eps" put bench-probe x >/dev/null 2>&1
}

failover() {
	local rep deadline
	mkdir -p "$RAW/$MODE"
	wait_quiet "$QUIET_WAIT"
	meta busy_before_pct "$BUSY"
	start_clusters 3
	for ((rep = 1; rep <= REPEATS; rep++)); do
		nap "$SETTLE"
		wait_voters 3 120
		KILLED=""
		writer_run "vetcd.$rep" "$VETCD_EPS" kill_vetcd_leader vetcd3
		log "failover vetcd #$rep: longest gap $GAP s (before the kill $BASEGAP s, $WRITES writes)"
		row failover NA vetcd "$rep" "$GAP" "$BASEGAP" "$WRITES" NA NA ok

		nap "$SETTLE"
		KILLED=""
		writer_run "etcd.$rep" "$(etcd_eps)" kill_etcd_leader etcd2
		log "failover etcd #$rep: longest gap $GAP s (before the kill $BASEGAP s, $WRITES writes)"
		row failover NA etcd "$rep" "$GAP" "$BASEGAP" "$WRITES" NA NA ok
		# Restart the killed member with its data dir, for the next run.
		wait_gone 30 "${EPID[$KILLED]}" || die "etcd-$KILLED did not die"
		start_etcd "$KILLED" existing "$ECLUSTER" "$WORK/etcd-$KILLED"
		deadline=$((SECONDS + 120))
		until ctl "$(etcd_eps)" endpoint health >/dev/null 2>&1; do
			((SECONDS < deadline)) || die "etcd not 3 healthy members within 120 s of restarting etcd-$KILLED"
			nap 0.5
		done
	done
	restarts=0
	for i in 0 1 2; do
		[[ -s $VDIR/vetcd-$i/restarts ]] && restarts=$((restarts + $(cat "$VDIR/vetcd-$i/restarts")))
	done
	meta vetcd_restarts "$restarts"
	stop_clusters
}

# ---- rebuild -------------------------------------------------------------------
scale_vetcd_1() {
	T_EVENT=$(now)
	"$VETCD" scale 1 --dir "$VDIR" >/dev/null || die "vetcd scale 1 failed"
	log "rebuild vetcd: scale 1"
}
vetcd1() { voters 1; }
remove_etcd_followers() {
	local leader i
	leader=$(ctl "$(etcd_eps)" endpoint status -w json | jq -r '.[] | select(.Status.leader == .Status.header.member_id) | .Endpoint')
	T_EVENT=$(now)
	for i in 0 1 2; do
		[[ $(eurl "$i") == "$leader" ]] && { SURVIVOR=$i; continue; }
		etcd_remove "$i"
	done
	log "rebuild etcd: removed the two followers; etcd-$SURVIVOR remains"
}
etcd1() { ctl "$(eurl "$SURVIVOR")" put bench-probe x >/dev/null 2>&1; }

rebuild() {
	local rep i
	mkdir -p "$RAW/$MODE"
	wait_quiet "$QUIET_WAIT"
	meta busy_before_pct "$BUSY"
	start_clusters 3
	for ((rep = 1; rep <= REPEATS; rep++)); do
		nap "$SETTLE"
		writer_run "vetcd.$rep" "$VETCD_EPS" scale_vetcd_1 vetcd1
		log "rebuild vetcd #$rep: longest gap $GAP s (before $BASEGAP s, $WRITES writes)"
		row rebuild NA vetcd "$rep" "$GAP" "$BASEGAP" "$WRITES" NA NA ok
		# How many rebuilds with force-new-cluster so far (cumulative), or
		# the others left cleanly one by one and kept quorum.
		meta "vetcd_rebuilds_through_run_$rep" "$(cat "$VDIR"/vetcd-*/serve.log | grep -cF '"msg":"rebuild complete' || true)"
		"$VETCD" scale 3 --dir "$VDIR" --wait --timeout 5m >/dev/null || die "vetcd scale 3 failed"

		nap "$SETTLE"
		SURVIVOR=""
		writer_run "etcd.$rep" "$(etcd_eps)" remove_etcd_followers etcd1
		log "rebuild etcd (member remove x2) #$rep: longest gap $GAP s (before $BASEGAP s, $WRITES writes)"
		row rebuild NA etcd "$rep" "$GAP" "$BASEGAP" "$WRITES" NA NA ok
		# Back to three: the removed members join again with empty dirs,
		# renumbered so that the survivor keeps its index.
		start_trickle "$(eurl "$SURVIVOR")"
		for i in 0 1 2; do
			[[ -n ${EPID[$i]:-} ]] || etcd_join "$i"
		done
		stop_trickle
	done
	stop_clusters
}

# ---- abrupt ----------------------------------------------------------------------
kill_surplus_scale_vetcd_1() {
	local i
	T_EVENT=$(now)
	for i in 1 2; do kill -KILL "$(cat "$VDIR/vetcd-$i/pid")" 2>/dev/null || true; done
	"$VETCD" scale 1 --dir "$VDIR" >/dev/null || die "vetcd scale 1 failed"
	log "abrupt vetcd: surplus killed with -9, scale 1"
}
force_etcd_survivor() {
	local leader i pids=()
	leader=$(ctl "$(etcd_eps)" endpoint status -w json | jq -r '.[] | select(.Status.leader == .Status.header.member_id) | .Endpoint')
	T_EVENT=$(now)
	for i in 0 1 2; do
		[[ $(eurl "$i") == "$leader" ]] && { SURVIVOR=$i; continue; }
		kill -KILL "${EPID[$i]}" 2>/dev/null || true
		pids+=("${EPID[$i]}")
		unset "EPID[$i]"
	done
	kill -TERM "${EPID[$SURVIVOR]}"
	wait_gone 20 "${pids[@]}" "${EPID[$SURVIVOR]}" || die "etcd did not stop"
	start_etcd "$SURVIVOR" existing "etcd-$SURVIVOR=$(purl "$SURVIVOR")" "$WORK/etcd-$SURVIVOR" --force-new-cluster
	log "abrupt etcd: followers killed with -9, etcd-$SURVIVOR restarted with --force-new-cluster"
}

abrupt() {
	local rep i
	mkdir -p "$RAW/$MODE"
	wait_quiet "$QUIET_WAIT"
	meta busy_before_pct "$BUSY"
	start_clusters 3
	for ((rep = 1; rep <= REPEATS; rep++)); do
		nap "$SETTLE"
		writer_run "vetcd.$rep" "$VETCD_EPS" kill_surplus_scale_vetcd_1 vetcd1
		log "abrupt vetcd #$rep: longest gap $GAP s (before $BASEGAP s, $WRITES writes)"
		row abrupt NA vetcd "$rep" "$GAP" "$BASEGAP" "$WRITES" NA NA ok
		meta "vetcd_rebuilds_through_run_$rep" "$(cat "$VDIR"/vetcd-*/serve.log | grep -cF '"msg":"rebuild complete' || true)"
		"$VETCD" scale 3 --dir "$VDIR" --wait --timeout 5m >/dev/null || die "vetcd scale 3 failed"

		nap "$SETTLE"
		SURVIVOR=""
		writer_run "etcd.$rep" "$(etcd_eps)" force_etcd_survivor etcd1
		log "abrupt etcd (force-new-cluster by hand) #$rep: longest gap $GAP s (before $BASEGAP s, $WRITES writes)"
		row abrupt NA etcd "$rep" "$GAP" "$BASEGAP" "$WRITES" NA NA ok
		start_trickle "$(eurl "$SURVIVOR")"
		for i in 0 1 2; do
			[[ -n ${EPID[$i]:-} ]] || etcd_join "$i"
		done
		stop_trickle
	done
	stop_clusters
}

# ---- run -------------------------------------------------------------------------
START=$SECONDS
for MODE in $MODES; do
	record_machine meta
	meta vetcd_bin "$VETCD"
	meta repo_head "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	meta etcd_version "$("$BIN/etcd" --version | awk '/^etcd Version/ {print $3}')"
	meta repeats "$([[ $MODE == scaleup ]] && echo "$SCALE_REPEATS" || echo "$REPEATS")"
	meta write_timeout "$WRITE_TIMEOUT"
	meta snap_puts "$SNAP_PUTS"
	meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
	t_mode=$SECONDS
	"$MODE"
	meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
	meta duration_seconds "$((SECONDS - t_mode))"
done
log "done in $((SECONDS - START)) s; results in $TSV"
