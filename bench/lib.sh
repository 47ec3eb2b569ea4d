# shellcheck shell=bash
# lib.sh — helpers shared by steady.sh, recovery.sh, restart.sh and membership.sh
# (sourced, not run).
#
# The caller defines log, and sets BIN, PKI, VETCD and VDIR, and WORK (its
# temp dir) before it calls ours.

# nap SECONDS: sleep; a sleep killed from outside (another user's broad
# kill) does not end the run under set -e. A signal to the script itself
# still reaches its traps.
nap() { sleep "$1" || true; }

# machine_ticks: busy and total CPU ticks of the whole machine (/proc/stat).
machine_ticks() {
	awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; total = busy + $5 + $6; print busy, total; exit}' /proc/stat
}
# pct A B PART_A PART_B: 100 * (PART_B - PART_A) / (total of B - total of A)
# for two machine_ticks samples; with PARTs empty, the busy share.
pct() {
	awk -v a="$1" -v b="$2" -v pa="${3:-}" -v pb="${4:-}" 'BEGIN {
		split(a, x, " "); split(b, y, " "); d = y[2] - x[2]
		part = (pa == "" ? y[1] - x[1] : pb - pa)
		p = 0; if (d > 0) p = 100 * part / d; if (p < 0) p = 0
		printf "%.0f", p }'
}

# wait_quiet SECONDS: wait up to SECONDS for the machine to be mostly idle
# (under a quarter of its CPU busy over 2 s), then go on either way. Sets
# BUSY (the last sample, percent) and QUIET_WAITED (seconds waited).
wait_quiet() {
	local t0=$SECONDS a
	while :; do
		a=$(machine_ticks)
		nap 2
		BUSY=$(pct "$a" "$(machine_ticks)")
		((BUSY < 25 || SECONDS - t0 >= $1)) && break
		log "machine ${BUSY}% busy with other work; waiting up to $1 s for it to calm down"
	done
	# shellcheck disable=SC2034 # read by the caller
	QUIET_WAITED=$((SECONDS - t0))
}

# alive PID: true while PID runs (a zombie counts as gone).
alive() {
	local st
	[[ -n $1 ]] || return 1
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[[ -n $st && $st != Z ]]
}

# wait_gone SECONDS PID...: wait until every PID has exited; false on deadline.
wait_gone() {
	local deadline=$((SECONDS + $1)) p
	shift
	while ((SECONDS < deadline)); do
		local any=0
		for p in "$@"; do alive "$p" && any=1; done
		((any)) || return 0
		nap 0.2
	done
	return 1
}

# ours PID: true if PID is a process of this run (its command line names
# WORK or one of our binaries started from WORK), so that cleanup never
# signals a recycled pid.
ours() {
	alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$WORK"
}

# Ports: pick a block of 200 ports that nothing uses, below the kernel's
# ephemeral range (so an outgoing connection cannot take one of them
# meanwhile). vetcd uses BASE..BASE+23 (BASE+10N+0..3), stock etcd from
# BASE+100.
used_ports() {
	local f line port
	for f in /proc/net/tcp /proc/net/tcp6; do
		[[ -r $f ]] || continue
		while read -r _ line _; do
			port=${line##*:}
			[[ $port =~ ^[0-9A-F]+$ ]] && echo $((16#$port))
		done <"$f"
	done | sort -un
}
pick_base() {
	local lo used base p ok
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
	((lo > 10400)) || die "ephemeral port range starts at $lo: no room below it"
	used=" $(used_ports | tr '\n' ' ') "
	for _ in $(seq 1 100); do
		base=$((10000 + (RANDOM % ((lo - 10200) / 100)) * 100))
		ok=1
		for ((p = base; p < base + 200; p++)); do
			[[ $used == *" $p "* ]] && { ok=0; break; }
		done
		((ok)) && { echo "$base"; return 0; }
	done
	die "no free block of 200 ports found"
}

# record_machine FUNC: the machine's description, as FUNC KEY VALUE calls.
record_machine() {
	"$1" date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	"$1" nproc "$(nproc)"
	"$1" cpu "$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
	"$1" mem_kib "$(awk '/^MemTotal/ {print $2}' /proc/meminfo)"
	"$1" kernel "$(uname -sr)"
	"$1" go "$(go version 2>/dev/null | awk '{print $3}' || echo unknown)"
}

die() { log "ERROR: $*"; exit 1; }

# ctl ENDPOINTS ARGS...: etcdctl as the admin client.
ctl() {
	local eps=$1
	shift
	timeout 20 "$BIN/etcdctl" --endpoints="$eps" --cacert="$PKI/ca.crt" --cert="$PKI/client.crt" \
		--key="$PKI/client.key" --dial-timeout=3s --command-timeout=15s "$@"
}

# vstatus: the local vetcd cluster as `vetcd status -o json` sees it.
vstatus() { timeout 20 "$VETCD" status --dir "$VDIR" -o json --timeout 5s 2>/dev/null; }

# replica_pids: the pids of the local vetcd cluster's replica processes.
replica_pids() {
	local d
	[[ -n $VDIR ]] || return 0
	for d in "$VDIR"/vetcd-*; do
		[[ -s $d/pid ]] && cat "$d/pid"
	done
}

# keys_of ENDPOINT: how many keys the member holds (a serializable count).
keys_of() {
	ctl "$1" get "" --prefix --count-only --consistency=s -w fields 2>/dev/null | awk -F' : ' '/^"Count"/ {print $2}'
}

# same_keys EP1 EP2: wait up to 30 s until both members hold the same,
# non-zero number of keys. Sets KEYS (the count, or "A/B" when they differ).
# shellcheck disable=SC2034 # KEYS is the caller's
same_keys() {
	local deadline=$((SECONDS + 30)) a b
	while ((SECONDS < deadline)); do
		a=$(keys_of "$1") b=$(keys_of "$2")
		[[ -n $a && $a == "$b" && $a != 0 ]] && { KEYS=$a; return 0; }
		nap 0.5
	done
	KEYS="$a/$b"
	return 1
}

# median NUMBERS...: their median with two decimals ("NA" for none).
median() {
	printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "NA"; else if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# sub A B: A - B with two decimals.
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }

# size_bytes SIZE: 10MB, 1GB (MiB, GiB) in bytes; fails on anything else.
size_bytes() {
	case $1 in
	[1-9]*MB) echo $((${1%MB} * 1024 * 1024)) ;;
	[1-9]*GB) echo $((${1%GB} * 1024 * 1024 * 1024)) ;;
	*) return 1 ;;
	esac
}

# ---- two clusters side by side (recovery.sh, restart.sh) ---------------------
# A 3-replica `vetcd up` cluster and a stock etcd three-member cluster with
# the same etcd flags, filled the same way, with a light write load; one
# size (SIZE) at a time. Besides the variables above, the caller sets OUT's
# TSV and META files, RAW (its raw results dir), SIZES, SWORK (this size's
# work dir, WORK between sizes), TOKEN (the stock cluster's token), QUOTA,
# VAL_SIZE, SNAP_PUTS, FILL_DEADLINE, TRICKLE_RATE, UNRESPONSIVE_AFTER,
# LEARNER_STUCK_AFTER, and starts with UP_PID="" HELD=0 ETCD_PIDS=()
# BENCH_PID="" TRICKLE_PIDS=(). It traps EXIT with cleanup.
#
# membership.sh, which compares wall-clock writer logs, defines its own now
# after sourcing this file.

# Time.
# Every moment is in seconds since boot (/proc/uptime, 10 ms), the clock
# the kernel records process start times in. OFFSET turns the wall-clock
# time stamps of the logs into it.
now() {
	local u
	read -r u _ </proc/uptime
	echo "$u"
}
HZ=$(getconf CLK_TCK)
read -r _up _ </proc/uptime
OFFSET=$(awk -v r="$EPOCHREALTIME" -v u="$_up" 'BEGIN {printf "%.3f", r - u}')
# pstart PID: when PID started, in seconds since boot.
pstart() {
	sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$HZ" '{printf "%.2f", $20 / hz}'
}
# log_time ISO8601: a log time stamp in seconds since boot.
log_time() {
	awk -v e="$(date -d "$1" +%s.%N)" -v o="$OFFSET" 'BEGIN {printf "%.3f", e - o}'
}
# go_seconds DURATION: a Go duration string ("1.5s", "850ms") in seconds.
go_seconds() {
	awk -v d="$1" 'BEGIN {
		s = 0
		while (match(d, /^[0-9.]+(h|ms|µs|us|ns|m|s)/)) {
			t = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1)
			match(t, /[a-zµ]+$/); u = substr(t, RSTART); n = substr(t, 1, RSTART - 1) + 0
			s += n * (u == "h" ? 3600 : u == "m" ? 60 : u == "s" ? 1 : u == "ms" ? 1e-3 : u == "ns" ? 1e-9 : 1e-6)
		}
		printf "%.3f", s }'
}

# wait_age PID SECONDS: wait until PID has run SECONDS. The supervisor of
# `vetcd up` doubles its restart back-off (1 s, 2 s, 4 s, ...) for a
# replica that ran less than a minute; a replica killed after 62 s meets
# the first back-off, 1 s.
wait_age() {
	local age
	age=$(sub "$(now)" "$(pstart "$1")")
	if awk -v a="$age" -v s="$2" 'BEGIN {exit !(a < s)}'; then
		log "$SIZE: pid $1 has run ${age} s; waiting until $2 s so that its restart back-off is 1 s"
		while awk -v a="$age" -v s="$2" 'BEGIN {exit !(a < s)}'; do
			nap "$(awk -v a="$age" -v s="$2" 'BEGIN {d = s - a; printf "%.2f", (d < 1 ? d : 1)}')"
			age=$(sub "$(now)" "$(pstart "$1")")
		done
	fi
}

# stop_clusters: stop everything the current size started.
stop_clusters() {
	local p pids=()
	[[ -n $BENCH_PID ]] && alive "$BENCH_PID" && kill -KILL "$BENCH_PID" 2>/dev/null
	BENCH_PID=""
	for p in "${TRICKLE_PIDS[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
	TRICKLE_PIDS=()
	if [[ -n $UP_PID ]] && alive "$UP_PID"; then
		# A supervisor left stopped would never stop its replicas.
		((HELD)) && kill -CONT "$UP_PID" 2>/dev/null
		HELD=0
		mapfile -t pids < <(replica_pids)
		pids+=("$UP_PID")
		kill -TERM "$UP_PID" 2>/dev/null
		wait_gone 45 "${pids[@]}" || log "vetcd up did not stop within 45 s; killing it"
	fi
	for p in "$UP_PID" $(replica_pids); do
		ours "$p" && kill -KILL "$p" 2>/dev/null
	done
	UP_PID=""
	for p in "${ETCD_PIDS[@]}"; do alive "$p" && kill -TERM "$p" 2>/dev/null; done
	wait_gone 20 "${ETCD_PIDS[@]}" || log "etcd did not stop within 20 s; killing it"
	for p in "${ETCD_PIDS[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
	ETCD_PIDS=()
	return 0
}

cleanup() {
	local rc=$? p
	set +e
	trap - EXIT INT TERM
	stop_clusters
	if ((rc != 0)); then
		log "failed (exit $rc); last log lines:"
		for p in "$SWORK/up.out" "$SWORK/up.err" "$VDIR"/vetcd-*/serve.log "$SWORK"/etcd-*.log; do
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

# Keep the rows of the sizes this run does not measure; drop the others.
keep_other_sizes() { # FILE HEADER
	local tmp=$1.tmp
	if [[ -f $1 ]] && [[ "$(head -n 1 "$1")" == "$2" ]]; then
		awk -F'\t' -v sizes=" $SIZES " 'NR > 1 && index(sizes, " " $1 " ") == 0' "$1" >"$tmp"
	else
		: >"$tmp"
	fi
	{ printf '%s\n' "$2"; cat "$tmp"; } >"$1"
	rm -f "$tmp"
}
meta() { printf '%s\t%s\t%s\n' "$SIZE" "$1" "$2" >>"$META"; }
row() { # row FIELD...: one line of TSV
	local IFS=$'\t'
	printf '%s\n' "$*" >>"$TSV"
}

# begin_size: record this size's settings and the machine, wait for the
# machine to calm down, start both clusters and fill them. FILL_FAILED says
# why the size cannot be measured (empty when it can).
begin_size() {
	SWORK=$WORK/$SIZE
	mkdir -p "$SWORK" "$RAW/$SIZE"
	record_machine meta
	meta vetcd_bin "$VETCD"
	meta vetcd_bin_mtime "$(date -u -r "$VETCD" '+%Y-%m-%d %H:%M:%S UTC')"
	meta repo_head "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	meta etcd_version "$("$BIN/etcd" --version | awk '/^etcd Version/ {print $3}')"
	meta repeats "$REPEATS"
	meta val_size "$VAL_SIZE"
	meta snap_puts "$SNAP_PUTS"
	meta quota_bytes "$QUOTA"
	meta unresponsive_after "$UNRESPONSIVE_AFTER"
	meta learner_stuck_after "$LEARNER_STUCK_AFTER"
	meta fill_deadline "$FILL_DEADLINE"
	PUTS=$((($(size_bytes "$SIZE") + VAL_SIZE - 1) / VAL_SIZE))
	meta puts "$PUTS"
	wait_quiet "$QUIET_WAIT"
	meta busy_before_start_pct "$BUSY"
	meta quiet_waited_seconds "$QUIET_WAITED"
	meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
	T_SIZE=$SECONDS

	start_clusters
	FILL_FAILED=""
	log "$SIZE: filling both clusters with $PUTS values of $VAL_SIZE B, then $SNAP_PUTS small puts"
	fill vetcd "$VETCD_EPS"
	fill etcd "$ETCD_EPS"
	if [[ -n $FILL_FAILED ]]; then
		log "$SIZE not measured: $FILL_FAILED"
		meta not_measured "$FILL_FAILED"
	fi
}

# end_size: the supervisor's restart count, then stop both clusters.
end_size() {
	local i restarts=0
	if [[ -z $FILL_FAILED ]]; then
		for i in 0 1 2; do
			[[ -s $VDIR/vetcd-$i/restarts ]] && restarts=$((restarts + $(cat "$VDIR/vetcd-$i/restarts")))
		done
		meta vetcd_restarts "$restarts"
	fi
	meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
	meta duration_seconds "$((SECONDS - T_SIZE))"
	stop_clusters
	VDIR=""
	[[ ${KEEP_WORK:-0} == 1 ]] || rm -rf "$SWORK"
	SWORK=$WORK
}

# begin_pair NAME HEADER: the common start of a script that runs the two
# clusters: check the programs and SIZES, make WORK, set the process
# globals, trap EXIT with cleanup, and open OUT/NAME.tsv (with HEADER),
# OUT/NAME-meta.tsv and OUT/NAME-raw/ (begin_output).
begin_pair() {
	local f s
	for f in "$VETCD" "$BIN/etcd" "$BIN/etcdctl" "$BIN/benchmark"; do
		[[ -x $f ]] || die "$f is missing: run 'make build' in the repo root and 'make tools' in bench/"
	done
	command -v jq >/dev/null || die "jq is needed"
	[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be at least 1"
	for s in $SIZES; do
		[[ $s =~ ^[1-9][0-9]*[MG]B$ ]] || die "bad size $s in SIZES (want e.g. 10MB or 1GB)"
	done
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/vetcd-$1.XXXXXX")
	SWORK=$WORK
	UP_PID=""       # `vetcd up` of the current size
	HELD=0          # 1 while the supervisor is stopped (SIGSTOP)
	ETCD_PIDS=()    # stock etcd members 0-2 (recovery.sh: and 3, the joiner)
	BENCH_PID=""    # a fill in progress
	TRICKLE_PIDS=() # the light write load on both clusters
	VDIR=""         # the `vetcd up` cluster dir of the current size
	PKI=""
	SIZE=""
	TOKEN=vetcd-$1
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	TSV=$OUT/$1.tsv
	META=$OUT/$1-meta.tsv
	RAW=$OUT/$1-raw
	begin_output "$2"
}

# poll_until PID WHAT RFILE FETCH TEST ARG: run FETCH (a command printing
# JSON) and TEST (a jq program given ARG as $a) on its output until TEST
# holds, every 0.1 s for up to READY_DEADLINE s; every answer goes to RFILE
# with its time. Sets T_READY (the end of the first poll that saw it, or ""
# when the deadline passed) and POLL_S (the median duration of a poll).
# Fails the run if PID (the restarted process) exits meanwhile.
poll_until() {
	local pid=$1 what=$2 rfile=$3 fetch=$4 test=$5 arg=$6 st t_a t_b deadline polls=()
	deadline=$((SECONDS + READY_DEADLINE))
	T_READY=""
	while :; do
		t_a=$(now)
		st=$("$fetch") || st='{}'
		t_b=$(now)
		polls+=("$(sub "$t_b" "$t_a")")
		printf '%s\t%s\n' "$t_b" "$(jq -c . <<<"$st" 2>/dev/null || echo '{}')" >>"$rfile"
		if jq -e --arg a "$arg" "$test" <<<"$st" >/dev/null 2>&1; then
			T_READY=$t_b
			break
		fi
		alive "$pid" || die "$what (pid $pid) exited; see its log"
		((SECONDS < deadline)) || break
		nap 0.1
	done
	# shellcheck disable=SC2034 # read by the caller
	POLL_S=$(median "${polls[@]}")
	[[ -n $T_READY ]]
}

# begin_output HEADER: TSV and META keep the rows of the sizes this run
# does not measure; RAW loses those of the sizes it does.
begin_output() {
	local s
	mkdir -p "$OUT" "$RAW"
	keep_other_sizes "$TSV" "$1"
	keep_other_sizes "$META" $'size\tkey\tvalue'
	for s in $SIZES; do rm -rf "${RAW:?}/$s"; done
}

# start_clusters: both clusters of this size, ready.
start_clusters() {
	local i cluster deadline p
	BASE=$(pick_base)
	VETCD_EPS=https://127.0.0.1:$BASE,https://127.0.0.1:$((BASE + 10)),https://127.0.0.1:$((BASE + 20))
	ETCD_EPS=https://127.0.0.1:$((BASE + 100)),https://127.0.0.1:$((BASE + 110)),https://127.0.0.1:$((BASE + 120))
	JOIN_EP=https://127.0.0.1:$((BASE + 130))
	VDIR=$SWORK/vetcd
	PKI=$VDIR/pki
	log "$SIZE: work dir $SWORK, ports $BASE-$((BASE + 199))"
	cat >"$SWORK/vetcd.yaml" <<-EOF
		extraArgs:
		  - --quota-backend-bytes=$QUOTA
		recovery:
		  unresponsiveAfter: $UNRESPONSIVE_AFTER
		  learnerStuckAfter: $LEARNER_STUCK_AFTER
	EOF
	"$VETCD" up --dir "$VDIR" --replicas 3 --base-port "$BASE" --config "$SWORK/vetcd.yaml" \
		>"$SWORK/up.out" 2>"$SWORK/up.err" &
	UP_PID=$!
	deadline=$((SECONDS + 60))
	until [[ -s $PKI/member.key && -s $PKI/client.key ]]; do
		alive "$UP_PID" || die "vetcd up exited before writing its certificates"
		((SECONDS < deadline)) || die "vetcd up wrote no certificates within 60 s"
		nap 0.2
	done
	# steady.sh's flags (the ones vetcd gives its embedded etcd), plus the
	# same quota as vetcd's extraArgs.
	ETCD_FLAGS=(
		--cert-file="$PKI/member.crt" --key-file="$PKI/member.key" --trusted-ca-file="$PKI/ca.crt" --client-cert-auth
		--peer-cert-file="$PKI/member.crt" --peer-key-file="$PKI/member.key" --peer-trusted-ca-file="$PKI/ca.crt" --peer-client-cert-auth
		--snapshot-count=10000 --strict-reconfig-check --quota-backend-bytes="$QUOTA"
	)
	cluster=""
	for i in 0 1 2; do
		cluster+="${cluster:+,}etcd-$i=https://127.0.0.1:$((BASE + 100 + 10 * i + 1))"
	done
	ETCD_CLUSTER=$cluster
	for i in 0 1 2; do start_stock "$i"; done
	deadline=$((SECONDS + 120))
	until grep -q "cluster is ready" "$SWORK/up.out"; do
		alive "$UP_PID" || die "vetcd up exited before the cluster was ready"
		((SECONDS < deadline)) || die "vetcd cluster not ready within 120 s"
		nap 0.5
	done
	until ctl "$ETCD_EPS" endpoint health >/dev/null 2>&1; do
		for p in "${ETCD_PIDS[@]}"; do alive "$p" || die "an etcd member exited while starting"; done
		((SECONDS < deadline)) || die "stock etcd cluster not healthy within 120 s"
		nap 0.5
	done
	log "$SIZE: both clusters ready"
}

# start_stock I: stock etcd member I of the three, on its data dir
# SWORK/etcd-I (a new member when the dir is empty, a restart on its data
# otherwise: etcd ignores the initial-cluster flags then), logging to
# SWORK/etcd-I.log. Its pid goes to ETCD_PIDS[I].
start_stock() {
	local cp=$((BASE + 100 + 10 * $1))
	"$BIN/etcd" --name "etcd-$1" --data-dir "$SWORK/etcd-$1" \
		--listen-client-urls "https://127.0.0.1:$cp" --advertise-client-urls "https://127.0.0.1:$cp" \
		--listen-peer-urls "https://127.0.0.1:$((cp + 1))" --initial-advertise-peer-urls "https://127.0.0.1:$((cp + 1))" \
		--initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new --initial-cluster-token "$TOKEN-$BASE" \
		"${ETCD_FLAGS[@]}" >>"$SWORK/etcd-$1.log" 2>&1 &
	ETCD_PIDS[$1]=$!
	disown "$!" # no "Killed" notice when a run kills it with -9
}

# bench EPS DEADLINE NAME ARGS...: one run of etcd's benchmark tool, in the
# background so that a signal reaches the EXIT trap at once. Its exit code
# (124: over DEADLINE s).
bench() {
	local eps=$1 dl=$2 name=$3 rc=0
	shift 3
	GRPC_GO_LOG_SEVERITY_LEVEL=error timeout --kill-after=10 "$dl" "$BIN/benchmark" \
		--endpoints="$eps" --cacert="$PKI/ca.crt" --cert="$PKI/client.crt" --key="$PKI/client.key" \
		--dial-timeout=5s "$@" >"$RAW/$SIZE/$name.txt" 2>"$SWORK/$name.err" &
	BENCH_PID=$!
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=""
	return "$rc"
}

# fill SYSTEM EPS: PUTS values of VAL_SIZE under distinct keys, then
# SNAP_PUTS small puts to one key. If the big puts take longer than
# FILL_DEADLINE, sets FILL_FAILED to why (and returns 0: a function called
# in a condition would run without set -e).
fill() {
	local sys=$1 eps=$2 t0 rc=0
	[[ -z $FILL_FAILED ]] || return 0
	t0=$(now)
	bench "$eps" "$FILL_DEADLINE" "fill-$sys" --conns=4 --clients=8 put --total="$PUTS" \
		--val-size="$VAL_SIZE" --key-size=8 --sequential-keys --key-space-size="$PUTS" || rc=$?
	if ((rc == 124 || rc == 137)); then
		FILL_FAILED="filling $SIZE into $sys took longer than $FILL_DEADLINE s (the limit, FILL_DEADLINE); $(db_of "$eps" | cut -f1 | awk '{printf "%.0f MiB", $1 / 1048576}') reached"
		return 0
	fi
	((rc == 0)) || die "filling $sys exited $rc: $(tail -n 3 "$SWORK/fill-$sys.err")"
	meta "fill_big_s_$sys" "$(sub "$(now)" "$t0")"
	# Distinct key length (16 B): never one of the big values' keys.
	bench "$eps" 300 "fill-small-$sys" --conns=10 --clients=50 put --total="$SNAP_PUTS" \
		--val-size=8 --key-size=16 --key-space-size=1 || die "small puts into $sys exited $?: $(tail -n 3 "$SWORK/fill-small-$sys.err")"
	meta "fill_s_$sys" "$(sub "$(now)" "$t0")"
}

# start_trickle: the light write load on both clusters, through members 0
# and 1 (never the member being replaced).
start_trickle() {
	local sys eps
	for sys in vetcd etcd; do
		case $sys in
		vetcd) eps=https://127.0.0.1:$BASE,https://127.0.0.1:$((BASE + 10)) ;;
		etcd) eps=https://127.0.0.1:$((BASE + 100)),https://127.0.0.1:$((BASE + 110)) ;;
		esac
		GRPC_GO_LOG_SEVERITY_LEVEL=error "$BIN/benchmark" --endpoints="$eps" --cacert="$PKI/ca.crt" \
			--cert="$PKI/client.crt" --key="$PKI/client.key" --dial-timeout=5s --conns=1 --clients=1 \
			put --rate="$TRICKLE_RATE" --total=1000000000 --val-size=8 --key-size=16 --key-space-size=1 \
			>/dev/null 2>"$SWORK/trickle-$sys.err" &
		TRICKLE_PIDS+=($!)
		disown "$!" # no "Killed" notice when it is stopped
	done
}
check_trickle() {
	local p
	for p in "${TRICKLE_PIDS[@]}"; do
		alive "$p" || die "the light write load (pid $p) stopped: $(tail -n 3 "$SWORK"/trickle-*.err)"
	done
}

# db_of EPS: dbSize, dbSizeInUse of the leader among EPS.
db_of() {
	ctl "$1" endpoint status -w json 2>/dev/null |
		jq -r '[.[] | select(.Status.leader == .Status.header.member_id)][0].Status | "\(.dbSize)\t\(.dbSizeInUse)"'
}
