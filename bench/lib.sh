# shellcheck shell=bash
# lib.sh — helpers shared by steady.sh and recovery.sh (sourced, not run).
#
# The caller defines log and die, and sets WORK to its temp dir before it
# calls ours.

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
