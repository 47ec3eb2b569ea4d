#!/usr/bin/env bash
# restart.sh — how long a vetcd replica killed with -9 takes to be a healthy
# voter again on its own data, set beside stock etcd 3.7.3 restarted by hand
# on its own data dir (issue 15: at most 1.2× stock etcd, same db size).
#
# For every database size in SIZES, the two clusters of recovery.sh run on
# this machine side by side (a 3-replica `vetcd up` cluster and a stock
# etcd three-member cluster with the same etcd flags, both filled with SIZE
# of 256 KiB values and then SNAP_PUTS small puts; lib.sh), with the same
# light write load (TRICKLE_RATE puts a second through members 0 and 1).
# Then REPEATS times, one fault of each system, alternating which goes
# first:
#
#   vetcd  the follower with the highest ordinal (vetcd-2 unless it leads)
#          is killed with -9; the supervisor of `vetcd up` restarts it
#          after its back-off (the replica is left running for at least
#          62 s before each fault, so that the back-off is that of a first
#          exit: none since the supervisor restarts such a replica at once,
#          1 s before; recovery.sh does the same). Measured from the start of the
#          new process (as the kernel records it) and from the kill until
#          `vetcd status` shows the replica as a healthy follower whose
#          raft applied index has reached the other members'. Then checked:
#          the same member ID as before the kill, and no data.aside-* dir
#          made by the restart (a replica that rejoins from scratch fails
#          the check and its time is still recorded).
#   etcd   the follower with the highest index (etcd-2 unless it leads) is
#          killed with -9 and started again at once by this script with
#          the same command line on its data dir. Measured from its process
#          start and from the kill until it answers `etcdctl endpoint
#          status` with no error and its applied index has reached the
#          highest of the two voters' (asked just before it).
#
# From the restarted member's log the script also takes when its embedded
# etcd logged "starting an etcd server", "published local member to cluster
# through raft" and "ready to serve client requests" (vetcd also: "replica
# started", "replica decision" and "etcd member is serving"), seconds
# after the process start: where the time goes.
#
# A poll is a full `vetcd status` / `etcdctl endpoint status` run; the
# moment recorded is the end of the first poll that saw the state, so each
# number can be late by up to one poll (their median duration is recorded).
#
# Output (OUT, default bench/out/); a run replaces the rows of the sizes it
# ran and keeps the others:
#   restart.tsv        one row per measurement
#   restart-meta.tsv   size, key, value: machine, parameters, fill times
#   restart-raw/       status polls and the restarted member's log, per run
#
# Knobs (environment): SIZES (default "10MB 1GB"; MB = MiB, GB = GiB),
# REPEATS (5), FILL_DEADLINE (600 s per cluster), READY_DEADLINE (300 s),
# SNAP_PUTS (6000), TRICKLE_RATE (10), QUIET_WAIT (120), VETCD, OUT,
# KEEP_WORK=1. Every process this script starts is stopped by the EXIT
# trap; every wait has a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=$HERE/bin
VETCD=${VETCD:-$ROOT/bin/vetcd}
OUT=${OUT:-$HERE/out}

SIZES=${SIZES:-10MB 1GB}
REPEATS=${REPEATS:-5}
FILL_DEADLINE=${FILL_DEADLINE:-600}
READY_DEADLINE=${READY_DEADLINE:-300}
TRICKLE_RATE=${TRICKLE_RATE:-10}
SNAP_PUTS=${SNAP_PUTS:-6000}
QUIET_WAIT=${QUIET_WAIT:-120}
VAL_SIZE=262144 # 256 KiB, as recovery.sh
QUOTA=8589934592
# recovery.sh's settings, so that the vetcd cluster is configured the same.
UNRESPONSIVE_AFTER=2m
LEARNER_STUCK_AFTER=5m
SETTLE=5

log() { printf '%s restart: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# shellcheck source=lib.sh
source "$HERE/lib.sh"

begin_pair restart $'size\tsystem\trepeat\tposition\tmember\tdb_size_bytes\tdb_in_use_bytes\tkeys\tstart_to_ready_s\tfault_to_ready_s\trestart_delay_s\treplica_started_s\tdecision_s\tetcd_starting_s\tpublished_s\tetcd_ready_s\tserving_s\tpoll_s\tcheck'

# marks LOG START: when the member logged each step, seconds after START
# (NA when it did not): replica started, replica decision, starting an
# etcd server, published to the cluster, ready to serve clients, and
# vetcd's "etcd member is serving". A time stamp is either ISO 8601
# (etcd's encoder) or seconds since the epoch (a number).
marks() {
	local lg=$1 start=$2 msg line ts out=()
	for msg in "replica started" "replica decision" "starting an etcd server" \
		"published local member to cluster through raft" "ready to serve client requests" "etcd member is serving"; do
		line=$(grep -F "\"msg\":\"$msg\"" "$lg" | head -n 1 || true)
		if [[ -z $line ]]; then
			out+=(NA)
			continue
		fi
		ts=$(jq -r '.ts' <<<"$line")
		if [[ $ts =~ ^[0-9.]+$ ]]; then
			out+=("$(awk -v e="$ts" -v o="$OFFSET" -v s="$start" 'BEGIN {printf "%.2f", e - o - s}')")
		else
			out+=("$(sub "$(log_time "$ts")" "$start")")
		fi
	done
	local IFS=$'\t'
	printf '%s' "${out[*]}"
}

# failed WHAT: add WHAT to the caller's check ("ok" until something fails).
failed() {
	if [[ $check == ok ]]; then check=$1; else check+="; $1"; fi
}

# ---- vetcd: a follower killed with -9, restarted by the supervisor -------------
vetcd_restart() {
	local rep=$1 pos=$2 st victim old_id old_pid new_pid off t_fault t_start t_ready
	local deadline db check=ok asides id
	st=$(vstatus) || die "vetcd status failed before the fault"
	jq -e '[.members[] | select(.healthy and .role != "learner")] | length == 3' <<<"$st" >/dev/null ||
		die "vetcd is not 3 healthy voters before the fault: $st"
	victim=$(jq -r '[.members[] | select(.role == "follower") | .name] | sort | last' <<<"$st")
	[[ $victim == vetcd-[0-9] ]] || die "no vetcd follower found: $st"
	old_id=$(jq -r --arg v "$victim" '.members[] | select(.name == $v) | .id' <<<"$st")
	old_pid=$(cat "$VDIR/$victim/pid")
	ours "$old_pid" || die "$victim pid $old_pid is not a replica of this run"
	wait_age "$old_pid" 62
	db=$(db_of "$VETCD_EPS")
	off=$(stat -c %s "$VDIR/$victim/serve.log")
	asides=$(find "$VDIR/$victim" -maxdepth 1 -name 'data.aside*' | wc -l)

	log "$SIZE vetcd #$rep: killing follower $victim (pid $old_pid, member $old_id) with -9"
	t_fault=$(now)
	kill -KILL "$old_pid"
	wait_gone 30 "$old_pid" || die "$victim did not die within 30 s of kill -9"
	deadline=$((SECONDS + 30))
	while :; do
		new_pid=$(cat "$VDIR/$victim/pid" 2>/dev/null || true)
		[[ -n $new_pid && $new_pid != "$old_pid" ]] && alive "$new_pid" && break
		((SECONDS < deadline)) || die "the supervisor did not restart $victim within 30 s"
		nap 0.05
	done
	t_start=$(pstart "$new_pid")

	poll_until "$new_pid" "$victim" "$RAW/$SIZE/vetcd.$rep.status.jsonl" vstatus '
		([.members[]? | select(.name != $a) | .raftAppliedIndex] | max) as $m
		| any(.members[]?; .name == $a and .role == "follower" and .healthy and .raftAppliedIndex >= $m)' "$victim" ||
		die "$victim not a healthy voter within $READY_DEADLINE s of its restart"
	t_ready=$T_READY
	st=$(tail -n 1 "$RAW/$SIZE/vetcd.$rep.status.jsonl" | cut -f2-)
	log "$SIZE vetcd #$rep: start -> healthy voter $(sub "$t_ready" "$t_start") s (kill -> healthy voter $(sub "$t_ready" "$t_fault") s)"

	tail -c +$((off + 1)) "$VDIR/$victim/serve.log" >"$RAW/$SIZE/vetcd.$rep.serve.log"
	id=$(jq -r --arg v "$victim" '.members[] | select(.name == $v) | .id' <<<"$st")
	[[ $id == "$old_id" ]] || failed "member ID changed: $old_id -> $id"
	(($(find "$VDIR/$victim" -maxdepth 1 -name 'data.aside*' | wc -l) == asides)) || failed "data moved aside"
	same_keys "https://127.0.0.1:$BASE" "https://127.0.0.1:$((BASE + 10 * ${victim#vetcd-}))" || failed "keys differ: $KEYS"
	[[ "$(cat "$VDIR/$victim/pid" 2>/dev/null)" == "$new_pid" ]] || failed "$victim restarted again"
	row "$SIZE" vetcd "$rep" "$pos" "$victim" "$db" "$KEYS" "$(sub "$t_ready" "$t_start")" "$(sub "$t_ready" "$t_fault")" \
		"$(sub "$t_start" "$t_fault")" "$(marks "$RAW/$SIZE/vetcd.$rep.serve.log" "$t_start")" "$POLL_S" "$check"
}

# ---- etcd: a follower killed with -9, restarted by hand on its data dir ---------
# etcd_status: STATUS_OTHERS's endpoint status, then STATUS_EP's, as one
# JSON list.
etcd_status() {
	jq -s 'add' <(ctl "$STATUS_OTHERS" endpoint status -w json 2>/dev/null || echo '[]') \
		<(ctl "$STATUS_EP" endpoint status -w json 2>/dev/null || echo '[]')
}

# threads_gone PID: true once every thread of PID has exited. The thread
# group leader shows as a zombie (alive's test) while the other threads
# still tear down the process (a 1 GiB database mapping takes a while) and
# its sockets are still bound: a restart then fails with "address already
# in use".
threads_gone() {
	local t st
	for t in /proc/"$1"/task/*/stat; do
		[[ -e $t ]] || continue
		st=$(sed 's/.*) //' "$t" 2>/dev/null | cut -d' ' -f1)
		[[ $st == [ZX] ]] || return 1
	done
	return 0
}

etcd_restart() {
	local rep=$1 pos=$2 leader i victim ep others pid off t_fault t_start t_ready deadline db
	local check=ok lg
	ctl "$ETCD_EPS" endpoint health >/dev/null 2>&1 || die "stock etcd is not healthy before the fault"
	leader=$(ctl "$ETCD_EPS" endpoint status -w json | jq -r '.[] | select(.Status.leader == .Status.header.member_id) | .Endpoint')
	for i in 2 1 0; do
		ep=https://127.0.0.1:$((BASE + 100 + 10 * i))
		[[ $ep == "$leader" ]] || { victim=$i; break; }
	done
	ep=https://127.0.0.1:$((BASE + 100 + 10 * victim))
	others=$(tr ',' '\n' <<<"$ETCD_EPS" | grep -vxF "$ep" | paste -sd,)
	db=$(db_of "$ETCD_EPS")
	lg=$SWORK/etcd-$victim.log
	off=$(stat -c %s "$lg")
	pid=${ETCD_PIDS[$victim]}
	alive "$pid" || die "etcd-$victim (pid $pid) is not running"

	log "$SIZE etcd #$rep: killing follower etcd-$victim (pid $pid) with -9 and starting it again on its data dir"
	t_fault=$(now)
	kill -KILL "$pid"
	# Restart as soon as the old process has released its ports: once all
	# its threads have exited, polled more often than wait_gone does.
	deadline=$((SECONDS + 30))
	until threads_gone "$pid"; do
		((SECONDS < deadline)) || die "etcd-$victim did not die within 30 s of kill -9"
		nap 0.01
	done
	start_stock "$victim"
	pid=${ETCD_PIDS[$victim]}
	t_start=$(pstart "$pid")

	# The voters first, the restarted member after them: with the light
	# write load the leader's index moves, and the member has caught up
	# once it has applied what the voters had applied a moment before.
	STATUS_OTHERS=$others STATUS_EP=$ep
	poll_until "$pid" "etcd-$victim" "$RAW/$SIZE/etcd.$rep.status.jsonl" etcd_status '
		([.[] | select(.Endpoint != $a) | .Status.raftAppliedIndex] | max) as $m
		| any(.[]; .Endpoint == $a and ((.Status.errors // []) | length) == 0 and .Status.raftAppliedIndex >= $m)' "$ep" ||
		die "etcd-$victim not caught up within $READY_DEADLINE s of its restart"
	t_ready=$T_READY
	log "$SIZE etcd #$rep: start -> caught up $(sub "$t_ready" "$t_start") s (kill -> caught up $(sub "$t_ready" "$t_fault") s)"
	tail -c +$((off + 1)) "$lg" >"$RAW/$SIZE/etcd.$rep.etcd-$victim.log"
	same_keys "https://127.0.0.1:$((BASE + 100))" "$ep" || failed "keys differ: $KEYS"
	row "$SIZE" etcd "$rep" "$pos" "etcd-$victim" "$db" "$KEYS" "$(sub "$t_ready" "$t_start")" "$(sub "$t_ready" "$t_fault")" \
		"$(sub "$t_start" "$t_fault")" "$(marks "$RAW/$SIZE/etcd.$rep.etcd-$victim.log" "$t_start")" "$POLL_S" "$check"
}

# ---- run -------------------------------------------------------------------------
START=$SECONDS
for SIZE in $SIZES; do
	begin_size
	if [[ -z $FILL_FAILED ]]; then
		start_trickle
		meta trickle_rate "$TRICKLE_RATE"
		seq=0
		for ((rep = 1; rep <= REPEATS; rep++)); do
			# Alternate which system goes first, so that neither always
			# meets the other's after-effects.
			for sys in $( ((rep % 2)) && echo vetcd etcd || echo etcd vetcd); do
				nap "$SETTLE"
				check_trickle
				seq=$((seq + 1))
				"${sys}_restart" "$rep" "$seq"
			done
		done
		check_trickle
		meta vetcd_asides "$(find "$VDIR" -maxdepth 2 -name 'data.aside*' | wc -l)"
		meta vetcd_snapshots_sent "$(cat "$VDIR"/vetcd-*/serve.log | grep -cF '"msg":"sent database snapshot"' || true)"
		meta etcd_snapshots_sent "$(cat "$SWORK"/etcd-[012].log | grep -cF '"msg":"sent database snapshot"' || true)"
	fi
	end_size
done
log "done in $((SECONDS - START)) s; results in $TSV"
