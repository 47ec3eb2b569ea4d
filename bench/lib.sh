# shellcheck shell=bash
# lib.sh — helpers shared by steady.sh, recovery.sh and membership.sh
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
