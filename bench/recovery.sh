#!/usr/bin/env bash
# recovery.sh — how long a vetcd replica whose volume is gone takes to be a
# healthy voter again, set beside the time stock etcd 3.7.3 takes to bring
# a new member up to date with its own snapshot transfer (the floor).
#
# For every database size in SIZES, two clusters run on this machine side
# by side: a 3-replica `vetcd up` cluster and a stock etcd three-member
# cluster, started with the same etcd flags (steady.sh's, plus a backend
# quota of 8 GiB so that 1 GiB fits). Both are filled the same way: SIZE of
# 256 KiB values under distinct keys, then SNAP_PUTS small puts to one key,
# so that etcd's raft log no longer holds the big entries (it keeps 5000
# entries behind the applied index) and a new member can only catch up from
# a snapshot of the database, not by replaying the log. Then, REPEATS
# times: FLOOR_RUNS joins of stock etcd, then one vetcd fault (the joins
# fill most of the minute that vetcd-2 must run before its next fault):
#
#   vetcd  fault "volume gone": the supervisor is paused (SIGSTOP), replica
#          vetcd-2 is killed (-9) and its data dir deleted, the supervisor
#          resumes and restarts it after its 1 s back-off (vetcd-2 is left
#          running for at least 62 s before each fault, as the supervisor
#          doubles the back-off for a replica that ran under a minute).
#          Measured from the start of the new vetcd-2 process (as the
#          kernel records it) until `vetcd status` shows vetcd-2 as a
#          healthy follower (a voter) with a new member ID; also from the
#          kill to the same moment. The
#          replica finds its data dir empty at start, removes its stale
#          member, joins as a learner, etcd sends it a snapshot, the
#          leader's controller promotes it. recovery.unresponsiveAfter plays
#          no part in this fault.
#   etcd   the floor: `etcdctl member add --learner` a 4th member, start a
#          stock etcd with an empty data dir and --initial-cluster-state
#          existing; measured from its process start until it answers
#          `etcdctl endpoint status` with no error and its raft applied
#          index has reached the highest of the voters'. That is etcd's own
#          snapshot transfer and apply plus its start; `member promote` is
#          timed on its own after that. Then the member is removed again.
#
# During the measurements both clusters receive a light write load
# (TRICKLE_RATE puts of 8 B per second, to one key, through members 0 and 1
# only), as a live cluster does. Without it, stock etcd 3.7.3 can leave a
# joiner stuck: it does not update its applied index when it applies a
# snapshot, only when it applies entries, so when the snapshot index is
# above 5000 the joiner refuses its own "publish member" request with "too
# many requests" until the cluster commits a new entry (seen once in this
# harness's development: stuck for 8 minutes, until killed).
#
# In some runs of both systems the joiner's first "publish member" request
# times out after etcd's 7 s publish timeout and the retry succeeds; the
# report tells those runs apart by that line in the joiner's log (kept in
# recovery-raw/).
#
# A poll is a full `vetcd status` / `etcdctl endpoint status` run; the
# moment recorded is the end of the first poll that saw the state, so each
# number can be late by up to one poll (their median duration is recorded).
#
# Output (OUT, default bench/out/); a run replaces the rows of the sizes it
# ran and keeps the others, so `SIZES=1GB ./recovery.sh` adds 1 GB later:
#   recovery.tsv        one row per measurement
#   recovery-meta.tsv   size, key, value: machine, parameters, fill times,
#                       sizes not measured and why
#   recovery-raw/       status polls and the snapshot log lines, per run
#
# Knobs (environment): SIZES (default "10MB 100MB 1GB"; MB = MiB, GB = GiB),
# REPEATS (7), FLOOR_RUNS (3), FILL_DEADLINE (300 s per cluster: a size whose fill takes
# longer is not measured), READY_DEADLINE (900 s: vetcd-2 must be a voter
# by then), FLOOR_DEADLINE (300 s: a stock joiner that has not caught up by
# then is recorded as such), SNAP_PUTS (6000), TRICKLE_RATE (10),
# QUIET_WAIT (120), VETCD, OUT, KEEP_WORK=1. Every process this script
# starts is stopped by the EXIT trap; every wait has a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=$HERE/bin
VETCD=${VETCD:-$ROOT/bin/vetcd}
OUT=${OUT:-$HERE/out}

SIZES=${SIZES:-10MB 100MB 1GB}
REPEATS=${REPEATS:-7}
FLOOR_RUNS=${FLOOR_RUNS:-3}
FILL_DEADLINE=${FILL_DEADLINE:-300}
READY_DEADLINE=${READY_DEADLINE:-900}
FLOOR_DEADLINE=${FLOOR_DEADLINE:-300}
TRICKLE_RATE=${TRICKLE_RATE:-10}
SNAP_PUTS=${SNAP_PUTS:-6000}
QUIET_WAIT=${QUIET_WAIT:-120}
VAL_SIZE=262144 # 256 KiB, well under etcd's --max-request-bytes (1.5 MiB)
QUOTA=8589934592
UNRESPONSIVE_AFTER=2m
LEARNER_STUCK_AFTER=5m
# Pause between two measurements, so that one's disk writes do not land in
# the next.
SETTLE=5

log() { printf '%s recovery: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# shellcheck source=lib.sh
source "$HERE/lib.sh"

((FLOOR_RUNS >= 1)) || die "FLOOR_RUNS must be at least 1"
begin_pair recovery $'size\tsystem\trepeat\tposition\tdb_size_bytes\tdb_in_use_bytes\tkeys\tstart_to_ready_s\tfault_to_ready_s\thold_s\trestart_delay_s\tpromote_s\tsnapshot_bytes\tsnapshot_download_s\tsnapshot_saved_s\tserving_s\tpoll_s\tcheck'

# snapshot_of LOG START: from the joiner's log lines, the received
# snapshot's size in bytes, its download time (s) and when it was saved (s
# after START), NA when no snapshot was received; then when the member
# published itself to the cluster (s after START), which etcd does once it
# has caught up and is ready to serve.
snapshot_of() {
	local line ts
	line=$(grep -F '"msg":"received and saved database snapshot"' "$1" | tail -n 1 || true)
	if [[ -z $line ]]; then
		printf 'NA\tNA\tNA'
	else
		ts=$(jq -r '.ts' <<<"$line")
		printf '%s\t%s\t%s' "$(jq -r '."incoming-snapshot-size-bytes"' <<<"$line")" \
			"$(go_seconds "$(jq -r '."download-took"' <<<"$line")")" "$(sub "$(log_time "$ts")" "$2")"
	fi
	line=$(grep -F '"msg":"published local member to cluster through raft"' "$1" | head -n 1 || true)
	if [[ -z $line ]]; then
		printf '\tNA'
	else
		printf '\t%s' "$(sub "$(log_time "$(jq -r '.ts' <<<"$line")")" "$2")"
	fi
}

# ---- vetcd: the volume of vetcd-2 is gone ------------------------------------------
vetcd_recover() {
	local rep=$1 pos=$2 st old_id old_pid new_pid off t_fault t_cont t_start t_a t_b t_ready
	local deadline polls=() db check=ok rfile=$RAW/$SIZE/vetcd.$rep.status.jsonl
	st=$(vstatus) || die "vetcd status failed before the fault"
	jq -e '[.members[] | select(.healthy and .role != "learner")] | length == 3' <<<"$st" >/dev/null ||
		die "vetcd is not 3 healthy voters before the fault: $st"
	old_id=$(jq -r '.members[] | select(.name == "vetcd-2") | .id' <<<"$st")
	old_pid=$(cat "$VDIR/vetcd-2/pid")
	ours "$old_pid" || die "vetcd-2 pid $old_pid is not a replica of this run"
	db=$(db_of "$VETCD_EPS")
	off=$(stat -c %s "$VDIR/vetcd-2/serve.log")
	wait_age "$old_pid" 62

	log "$SIZE vetcd #$rep: killing vetcd-2 (pid $old_pid) and deleting its data dir"
	kill -STOP "$UP_PID"
	HELD=1
	t_fault=$(now)
	kill -KILL "$old_pid"
	wait_gone 30 "$old_pid" || die "vetcd-2 did not die within 30 s of kill -9"
	rm -rf "$VDIR/vetcd-2/data"
	kill -CONT "$UP_PID"
	HELD=0
	t_cont=$(now)

	deadline=$((SECONDS + 30))
	while :; do
		new_pid=$(cat "$VDIR/vetcd-2/pid" 2>/dev/null || true)
		[[ -n $new_pid && $new_pid != "$old_pid" ]] && alive "$new_pid" && break
		((SECONDS < deadline)) || die "the supervisor did not restart vetcd-2 within 30 s"
		nap 0.05
	done
	t_start=$(pstart "$new_pid")

	deadline=$((SECONDS + READY_DEADLINE))
	while :; do
		t_a=$(now)
		st=$(vstatus) || st='{}'
		t_b=$(now)
		polls+=("$(sub "$t_b" "$t_a")")
		printf '%s\t%s\n' "$t_b" "$(jq -c . <<<"$st" 2>/dev/null || echo '{}')" >>"$rfile"
		if jq -e --arg old "$old_id" 'any(.members[]?; .name == "vetcd-2" and .id != $old and .role == "follower" and .healthy)' \
			<<<"$st" >/dev/null 2>&1; then
			t_ready=$t_b
			break
		fi
		alive "$new_pid" || die "vetcd-2 (pid $new_pid) exited while recovering; see $VDIR/vetcd-2/serve.log"
		((SECONDS < deadline)) || die "vetcd-2 not a healthy voter within $READY_DEADLINE s of its restart"
		nap 0.1
	done
	log "$SIZE vetcd #$rep: restart -> healthy voter $(sub "$t_ready" "$t_start") s (fault -> healthy voter $(sub "$t_ready" "$t_fault") s)"

	tail -c +$((off + 1)) "$VDIR/vetcd-2/serve.log" >"$RAW/$SIZE/vetcd.$rep.serve.log"
	same_keys "https://127.0.0.1:$BASE" "https://127.0.0.1:$((BASE + 20))" || check="keys differ: $KEYS"
	deadline=$((SECONDS + 60))
	until st=$(vstatus) && jq -e '([.members[] | select(.healthy and .role != "learner")] | length == 3) and ([.members[] | select(.role == "leader")] | length == 1)' <<<"$st" >/dev/null; do
		((SECONDS < deadline)) || { check="not 3 healthy voters 60 s later"; break; }
		nap 0.5
	done
	[[ "$(cat "$VDIR/vetcd-2/pid" 2>/dev/null)" == "$new_pid" ]] || check="vetcd-2 restarted again"
	row "$SIZE" vetcd "$rep" "$pos" "$db" "$KEYS" "$(sub "$t_ready" "$t_start")" "$(sub "$t_ready" "$t_fault")" \
		"$(sub "$t_cont" "$t_fault")" "$(sub "$t_start" "$t_cont")" NA \
		"$(snapshot_of "$RAW/$SIZE/vetcd.$rep.serve.log" "$t_start")" "$(median "${polls[@]}")" "$check"
}

# ---- etcd: a new member catches up by etcd's own snapshot transfer ----------------
etcd_join() {
	local rep=$1 pos=$2 out id ic dir pid t_start t_a t_b t_ready t_p deadline polls=() db st ml n
	local check=ok lg=$SWORK/etcd-3.$rep.log rfile=$RAW/$SIZE/etcd.$rep.status.jsonl
	db=$(db_of "$ETCD_EPS")
	out=$(ctl "$ETCD_EPS" member add etcd-3 --learner --peer-urls="https://127.0.0.1:$((BASE + 131))") ||
		die "member add failed: $out"
	# etcdctl pads the hex ID with spaces to 16 characters.
	id=$(sed -n 's/^Member  *\([0-9a-f]*\) added.*/\1/p' <<<"$out")
	ic=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' <<<"$out")
	[[ -n $id && -n $ic ]] || die "cannot read member add's answer: $out"
	dir=$SWORK/etcd-3.$rep
	log "$SIZE etcd #$rep: learner $id added; starting it with an empty data dir"
	"$BIN/etcd" --name etcd-3 --data-dir "$dir" \
		--listen-client-urls "$JOIN_EP" --advertise-client-urls "$JOIN_EP" \
		--listen-peer-urls "https://127.0.0.1:$((BASE + 131))" --initial-advertise-peer-urls "https://127.0.0.1:$((BASE + 131))" \
		--initial-cluster "$ic" --initial-cluster-state existing \
		"${ETCD_FLAGS[@]}" >"$lg" 2>&1 &
	pid=$!
	ETCD_PIDS[3]=$pid
	t_start=$(pstart "$pid")

	t_ready=""
	deadline=$((SECONDS + FLOOR_DEADLINE))
	while :; do
		t_a=$(now)
		# Until the joiner is ready it accepts connections on its client
		# port without answering them, so a status call would hang for its
		# dial timeout. Ask it only once the voters list it as started (it
		# has published its name and client URL, which etcd does once it
		# has caught up).
		# The voters are asked first, the joiner after them: with the
		# light write load the leader's index moves, and the joiner has
		# caught up once it has applied what the leader had applied a
		# moment before.
		st='[]'
		if ml=$(ctl "$ETCD_EPS" member list -w json 2>/dev/null) &&
			jq -e 'any(.members[]; .name == "etcd-3" and ((.clientURLs // []) | length) > 0)' <<<"$ml" >/dev/null 2>&1; then
			st=$(jq -s 'add' <(ctl "$ETCD_EPS" endpoint status -w json 2>/dev/null || echo '[]') \
				<(ctl "$JOIN_EP" endpoint status -w json 2>/dev/null || echo '[]'))
		fi
		t_b=$(now)
		polls+=("$(sub "$t_b" "$t_a")")
		printf '%s\t%s\n' "$t_b" "$(jq -c . <<<"$st" 2>/dev/null || echo '[]')" >>"$rfile"
		if jq -e --arg j "$JOIN_EP" '
			([.[] | select(.Endpoint != $j) | .Status.raftAppliedIndex] | max) as $m
			| any(.[]; .Endpoint == $j and ((.Status.errors // []) | length) == 0 and .Status.raftAppliedIndex >= $m)' \
			<<<"$st" >/dev/null 2>&1; then
			t_ready=$t_b
			break
		fi
		alive "$pid" || die "the joining etcd exited; see $lg"
		if ((SECONDS >= deadline)); then
			check="not caught up within $FLOOR_DEADLINE s"
			log "$SIZE etcd #$rep: the joiner has $check; recording that and going on"
			break
		fi
		nap 0.1
	done
	if [[ -n $t_ready ]]; then
		t_p=$(now)
		deadline=$((SECONDS + 60))
		until ctl "$ETCD_EPS" member promote "$id" >/dev/null 2>&1; do
			((SECONDS < deadline)) || die "member promote $id did not succeed within 60 s"
			nap 0.1
		done
		t_p=$(sub "$(now)" "$t_p")
		log "$SIZE etcd #$rep: start -> caught up $(sub "$t_ready" "$t_start") s; promote $t_p s"
		same_keys "https://127.0.0.1:$((BASE + 100))" "$JOIN_EP" || check="keys differ: $KEYS"
		t_ready=$(sub "$t_ready" "$t_start")
	else
		t_ready=NA t_p=NA KEYS=NA
	fi
	row "$SIZE" etcd "$rep" "$pos" "$db" "$KEYS" "$t_ready" NA NA NA "$t_p" \
		"$(snapshot_of "$lg" "$t_start")" "$(median "${polls[@]}")" "$check"
	# The whole log only when it is short or something went wrong.
	if [[ $check != ok ]] || (($(stat -c %s "$lg") < 10000000)); then
		cp "$lg" "$RAW/$SIZE/etcd.$rep.etcd-3.log"
	else
		head -c 10000000 "$lg" >"$RAW/$SIZE/etcd.$rep.etcd-3.log"
	fi

	# Remove it again; a removed member stops by itself.
	ctl "$ETCD_EPS" member remove "$id" >/dev/null || die "member remove $id failed"
	wait_gone 30 "$pid" || { log "the removed etcd did not stop within 30 s; killing it"; kill -KILL "$pid"; }
	unset 'ETCD_PIDS[3]'
	rm -rf "$dir"
	deadline=$((SECONDS + 60))
	until n=$(ctl "$ETCD_EPS" member list -w json 2>/dev/null | jq '.members | length') && ((n == 3)) &&
		ctl "$ETCD_EPS" endpoint health >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "stock etcd not back to 3 healthy members within 60 s"
		nap 0.5
	done
}

# ---- run -------------------------------------------------------------------------
START=$SECONDS
for SIZE in $SIZES; do
	begin_size
	meta floor_runs "$FLOOR_RUNS"
	if [[ -z $FILL_FAILED ]]; then
		start_trickle
		meta trickle_rate "$TRICKLE_RATE"
		seq=0 join=0
		for ((rep = 1; rep <= REPEATS; rep++)); do
			for ((k = 1; k <= FLOOR_RUNS; k++)); do
				nap "$SETTLE"
				check_trickle
				join=$((join + 1)) seq=$((seq + 1))
				etcd_join "$join" "$seq"
			done
			nap "$SETTLE"
			check_trickle
			seq=$((seq + 1))
			vetcd_recover "$rep" "$seq"
		done
		check_trickle
		# Whether the leaders sent snapshots (a check that the joiners did
		# not catch up by replaying the log).
		meta vetcd_snapshots_sent "$(cat "$VDIR"/vetcd-*/serve.log | grep -cF '"msg":"sent database snapshot"' || true)"
		meta etcd_snapshots_sent "$(cat "$SWORK"/etcd-[012].log | grep -cF '"msg":"sent database snapshot"' || true)"
	fi
	end_size
done
log "done in $((SECONDS - START)) s; results in $TSV"
