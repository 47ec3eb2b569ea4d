#!/usr/bin/env bash
# footprint.sh — what an idle 3-replica `vetcd up` cluster costs, against a
# stock etcd 3.7.3 three-member cluster started with the same etcd flags
# (steady.sh's), all on this machine in the same run; and where the
# memory, the CPU and the binary's bytes go.
#
# Every cluster runs with --enable-pprof (vetcd through extraArgs), so that
# heap and CPU profiles come from the same processes that are measured.
# VETCD_BASE, if set, is a second vetcd binary (an older build) measured
# beside VETCD in the same run, for a before/after comparison.
#
# Output (OUT, default bench/out/):
#   footprint.md   the "Footprint" section of ../BENCHMARKS.md
#   footprint/     per system: rss.tsv (VmRSS, anonymous and file-backed
#                  RSS of each process), heap and CPU profiles, pprof -top,
#                  memstats; nm-<system>.tsv (symbol bytes by module)
#
# Knobs (environment): VETCD, VETCD_BASE, SETTLE (s idle before measuring,
# default 30), IDLE_SECONDS (CPU window, 60), PROFILE_SECONDS (CPU profile,
# 30), QUIET_WAIT, OUT, KEEP_WORK=1. Every process this script starts is
# stopped by the EXIT trap; every wait has a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=$HERE/bin
VETCD=${VETCD:-$ROOT/bin/vetcd}
VETCD_BASE=${VETCD_BASE:-}
OUT=${OUT:-$HERE/out}
SETTLE=${SETTLE:-30}
IDLE_SECONDS=${IDLE_SECONDS:-60}
PROFILE_SECONDS=${PROFILE_SECONDS:-30}
QUIET_WAIT=${QUIET_WAIT:-120}

log() { printf '%s footprint: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
HZ=$(getconf CLK_TCK)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

for f in "$VETCD" ${VETCD_BASE:+"$VETCD_BASE"} "$BIN/etcd" "$BIN/etcdctl"; do
	[[ -x $f ]] || die "$f is missing: run 'make build' in the repo root and 'make tools' in bench/"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vetcd-footprint.XXXXXX")
FP=$OUT/footprint
mkdir -p "$FP"
rm -f "$FP"/* "$OUT/footprint.md"

# Systems: "vetcd" (VETCD), "vetcd-base" (VETCD_BASE, if set), "etcd".
# vetcd system S uses ports OFF[S]..OFF[S]+23 above BASE; etcd BASE+100...
SYSTEMS=(vetcd)
declare -A BINOF=([vetcd]=$VETCD) OFF=([vetcd]=0 [vetcd-base]=40 [etcd]=100) UP=() PIDS=()
if [[ -n $VETCD_BASE ]]; then
	SYSTEMS+=(vetcd-base)
	BINOF[vetcd-base]=$VETCD_BASE
fi
SYSTEMS+=(etcd)
BINOF[etcd]=$BIN/etcd
ETCD_PIDS=()

replica_pids() { # SYSTEM
	local i
	for i in 0 1 2; do
		[[ -s $WORK/$1/vetcd-$i/pid ]] && cat "$WORK/$1/vetcd-$i/pid"
	done
	return 0
}

cleanup() {
	local rc=$? p s pids=()
	set +e
	trap - EXIT INT TERM
	for s in "${!UP[@]}"; do
		alive "${UP[$s]}" || continue
		mapfile -t pids < <(replica_pids "$s")
		kill -TERM "${UP[$s]}" 2>/dev/null
		wait_gone 45 "${UP[$s]}" "${pids[@]}" || log "vetcd up ($s) did not stop within 45 s; killing it"
		for p in "${UP[$s]}" "${pids[@]}"; do ours "$p" && kill -KILL "$p" 2>/dev/null; done
	done
	for p in "${ETCD_PIDS[@]}"; do alive "$p" && kill -TERM "$p" 2>/dev/null; done
	wait_gone 20 "${ETCD_PIDS[@]}" || log "etcd did not stop within 20 s; killing it"
	for p in "${ETCD_PIDS[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
	if ((rc != 0)); then
		log "failed (exit $rc); last log lines:"
		for p in "$WORK"/*.up.err "$WORK"/*/vetcd-*/serve.log "$WORK"/etcd-*.log; do
			[[ -f $p ]] && { echo "--- $p" >&2; tail -n 15 "$p" >&2; }
		done
	fi
	if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BASE=$(pick_base)
log "work dir $WORK, ports $BASE-$((BASE + 199))"
wait_quiet "$QUIET_WAIT"
log "machine ${BUSY}% busy before start (waited ${QUIET_WAITED} s)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- start ------------------------------------------------------------------
printf 'extraArgs: ["--enable-pprof"]\n' >"$WORK/vetcd.yaml"
for s in "${SYSTEMS[@]}"; do
	[[ $s == etcd ]] && continue
	log "starting $s: vetcd up (3 replicas) at $((BASE + OFF[$s]))"
	"${BINOF[$s]}" up --dir "$WORK/$s" --replicas 3 --base-port $((BASE + OFF[$s])) --config "$WORK/vetcd.yaml" \
		>"$WORK/$s.up.out" 2>"$WORK/$s.up.err" &
	UP[$s]=$!
done
PKI=$WORK/vetcd/pki
deadline=$((SECONDS + 60))
until [[ -s $PKI/member.key && -s $PKI/client.key ]]; do
	((SECONDS < deadline)) || die "vetcd up wrote no certificates within 60 s"
	sleep 0.2
done
# steady.sh's flags (what vetcd gives its embedded etcd), plus pprof.
cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}etcd-$i=https://127.0.0.1:$((BASE + 100 + 10 * i + 1))"; done
log "starting stock etcd (3 members)"
for i in 0 1 2; do
	cp=$((BASE + 100 + 10 * i))
	"$BIN/etcd" --name "etcd-$i" --data-dir "$WORK/etcd-$i" \
		--listen-client-urls "https://127.0.0.1:$cp" --advertise-client-urls "https://127.0.0.1:$cp" \
		--listen-peer-urls "https://127.0.0.1:$((cp + 1))" --initial-advertise-peer-urls "https://127.0.0.1:$((cp + 1))" \
		--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "vetcd-footprint-$BASE" \
		--cert-file="$PKI/member.crt" --key-file="$PKI/member.key" --trusted-ca-file="$PKI/ca.crt" --client-cert-auth \
		--peer-cert-file="$PKI/member.crt" --peer-key-file="$PKI/member.key" --peer-trusted-ca-file="$PKI/ca.crt" --peer-client-cert-auth \
		--snapshot-count=10000 --strict-reconfig-check --enable-pprof >"$WORK/etcd-$i.log" 2>&1 &
	ETCD_PIDS+=($!)
done

eps() { # SYSTEM: client endpoints
	local i e=""
	for i in 0 1 2; do e+="${e:+,}https://127.0.0.1:$((BASE + OFF[$1] + 10 * i))"; done
	echo "$e"
}
deadline=$((SECONDS + 120))
for s in "${SYSTEMS[@]}"; do
	if [[ $s == etcd ]]; then
		until ctl "$(eps etcd)" endpoint health >/dev/null 2>&1; do
			((SECONDS < deadline)) || die "stock etcd not healthy within 120 s"
			sleep 0.5
		done
		PIDS[etcd]="${ETCD_PIDS[*]}"
	else
		until grep -q "cluster is ready" "$WORK/$s.up.out"; do
			alive "${UP[$s]}" || die "vetcd up ($s) exited before the cluster was ready"
			((SECONDS < deadline)) || die "$s not ready within 120 s"
			sleep 0.5
		done
		PIDS[$s]="$(replica_pids "$s" | tr '\n' ' ')"
	fi
done
log "all ready; idle for $SETTLE s before measuring"
nap "$SETTLE"

# ---- memory -----------------------------------------------------------------
# rss_row SYSTEM PID: VmRSS, RssAnon (heap, stacks, runtime) and RssFile
# (pages of the binary and of the mmapped bbolt db), KiB.
printf 'system\tpid\tvmrss_kib\trss_anon_kib\trss_file_kib\n' >"$FP/rss.tsv"
for s in "${SYSTEMS[@]}"; do
	for p in ${PIDS[$s]}; do
		alive "$p" || die "$s process $p is gone"
		awk -v s="$s" -v p="$p" '/^VmRSS/ {r = $2} /^RssAnon/ {a = $2} /^RssFile/ {f = $2}
			END {printf "%s\t%s\t%s\t%s\t%s\n", s, p, r, a, f}' "/proc/$p/status" >>"$FP/rss.tsv"
	done
done

# ---- CPU --------------------------------------------------------------------
cpu_ticks() {
	local p sum=0
	for p in "$@"; do sum=$((sum + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done
	echo "$sum"
}
declare -A T0
for s in "${SYSTEMS[@]}"; do T0[$s]=$(cpu_ticks ${PIDS[$s]}); done
log "measuring idle CPU for $IDLE_SECONDS s"
nap "$IDLE_SECONDS"
printf 'system\tseconds\tcpu_seconds\tpct_of_core\n' >"$FP/cpu.tsv"
for s in "${SYSTEMS[@]}"; do
	t=$(($(cpu_ticks ${PIDS[$s]}) - T0[$s]))
	awk -v s="$s" -v t="$t" -v hz="$HZ" -v n="$IDLE_SECONDS" \
		'BEGIN {printf "%s\t%d\t%.2f\t%.2f\n", s, n, t / hz, 100 * t / hz / n}' >>"$FP/cpu.tsv"
done

# ---- profiles of member 0 of each system ---------------------------------------
curl_pprof() { # SYSTEM PATH FILE (each vetcd up made its own CA; etcd uses vetcd's)
	local k=$PKI
	[[ $1 == etcd ]] || k=$WORK/$1/pki
	curl -sSf --max-time $((PROFILE_SECONDS + 30)) --cacert "$k/ca.crt" --cert "$k/client.crt" --key "$k/client.key" \
		"https://127.0.0.1:$((BASE + OFF[$1]))/debug/pprof/$2" -o "$3"
}
log "CPU profiles ($PROFILE_SECONDS s) and heap profiles"
cpids=()
for s in "${SYSTEMS[@]}"; do
	curl_pprof "$s" "profile?seconds=$PROFILE_SECONDS" "$FP/cpu-$s.pprof" &
	cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p" || die "a CPU profile failed"; done
for s in "${SYSTEMS[@]}"; do
	curl_pprof "$s" heap "$FP/heap-$s.pprof"
	curl_pprof "$s" "heap?debug=1" "$FP/heap-$s.txt"
	grep -E '^# (HeapAlloc|HeapInuse|HeapIdle|HeapReleased|HeapSys|Stack|MSpan|GCSys|OtherSys|Sys|NumGC) ' "$FP/heap-$s.txt" >"$FP/memstats-$s.txt" || true
	go tool pprof -top -nodecount=25 -sample_index=inuse_space "$FP/heap-$s.pprof" >"$FP/heap-top-$s.txt" 2>/dev/null || true
	go tool pprof -top -nodecount=25 "$FP/cpu-$s.pprof" >"$FP/cpu-top-$s.txt" 2>/dev/null || true
done
printf 'system\tgoroutines\n' >"$FP/goroutines.tsv"
for s in "${SYSTEMS[@]}"; do
	curl_pprof "$s" "goroutine?debug=1" "$FP/goroutine-$s.txt"
	n=$(awk '/^goroutine profile: total/ {print $4; exit}' "$FP/goroutine-$s.txt")
	printf '%s\t%s\n' "$s" "$n" >>"$FP/goroutines.tsv"
done

# ---- binaries -------------------------------------------------------------------
printf 'system\tbytes\n' >"$FP/size.tsv"
for s in "${SYSTEMS[@]}"; do printf '%s\t%s\n' "$s" "$(stat -c %s "${BINOF[$s]}")" >>"$FP/size.tsv"; done
# Symbol bytes by module: an unstripped build of the working tree's vetcd
# (the measured binary may be stripped), and of VETCD_BASE's NM_BASE_SRC
# if given (a checkout of the older source).
nm_of() { # NAME SRC_DIR
	local b=$WORK/nm-$1
	(cd "$2" && CGO_ENABLED=0 go build -trimpath -o "$b" ./cmd/vetcd)
	go version -m "$b" | awk '$1 == "dep" || $1 == "mod" {print $2}' >"$b.mods"
	# Only symbols stored in the file: below .bss (the zeroed data has no
	# bytes in the binary; fips140's 32 MB DRBG buffer is there).
	go tool nm -size "$b" | awk -v bss="$(readelf -S -W "$b" | awk '$2 == ".bss" {print $4}')" '
		function pad(h) { while (length(h) < 16) h = "0" h; return h }
		pad($1) < pad(bss)' >"$b.nm"
	awk -f "$HERE/nmgroup.awk" "$b.mods" "$b.nm" | sort -t$'\t' -k2,2nr >"$FP/nm-$1.tsv"
}
log "grouping symbols by module"
nm_of vetcd "$ROOT"
[[ -n ${NM_BASE_SRC:-} ]] && nm_of vetcd-base "$NM_BASE_SRC"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ---------------------------------------------------------------------
med() { sort -n | awk '{a[NR] = $1} END {if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
col() { awk -F'\t' -v s="$1" -v c="$2" '$1 == s {print $c}' "$FP/rss.tsv"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
{
	echo "## Footprint"
	echo
	echo "\`make -C bench footprint\` (bench/footprint.sh), repository at $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null), $(nproc) cores,"
	echo "recorded $(date -u '+%Y-%m-%d %H:%M UTC'); load average $LOAD_START at start, $LOAD_END at the end."
	echo "Idle 3-replica clusters side by side, each idle ${SETTLE} s after ready, then measured; all with steady.sh's etcd flags plus \`--enable-pprof\`."
	[[ -n $VETCD_BASE ]] && echo "\`vetcd-base\` is VETCD_BASE=$(basename "$VETCD_BASE"), the build before this change, measured in the same run."
	echo
	hdr=$(printf ' %s |' "${SYSTEMS[@]}")
	echo "| idle |$hdr"
	echo "|---|$(printf -- '---|%.0s' "${SYSTEMS[@]}")"
	printf '| RSS per member, median MiB (VmRSS) |'
	for s in "${SYSTEMS[@]}"; do printf ' %s |' "$(mib "$(col "$s" 3 | med)")"; done
	printf '\n| of which anonymous (heap, stacks, runtime) |'
	for s in "${SYSTEMS[@]}"; do printf ' %s |' "$(mib "$(col "$s" 4 | med)")"; done
	printf '\n| of which file-backed (binary text, bbolt mmap) |'
	for s in "${SYSTEMS[@]}"; do printf ' %s |' "$(mib "$(col "$s" 5 | med)")"; done
	printf '\n| CPU of 3 members, %% of one core over %s s |' "$IDLE_SECONDS"
	for s in "${SYSTEMS[@]}"; do printf ' %s |' "$(awk -F'\t' -v s="$s" '$1 == s {print $4}' "$FP/cpu.tsv")"; done
	printf '\n| Go heap in use, member 0, MiB (HeapInuse) |'
	for s in "${SYSTEMS[@]}"; do printf ' %s |' "$(awk '/^# HeapInuse/ {printf "%.1f", $4 / 1048576}' "$FP/memstats-$s.txt")"; done
	printf '\n| goroutines, member 0 |'
	for s in "${SYSTEMS[@]}"; do printf ' %s |' "$(awk -F'\t' -v s="$s" '$1 == s {print $2}' "$FP/goroutines.tsv")"; done
	printf '\n| binary, MB |'
	for s in "${SYSTEMS[@]}"; do printf ' %s |' "$(awk -F'\t' -v s="$s" '$1 == s {printf "%.1f", $2 / 1e6}' "$FP/size.tsv")"; done
	echo
	echo
	for s in "${SYSTEMS[@]}"; do
		echo "### $s, member 0: heap in use (top) and CPU (top)"
		echo
		echo '```'
		sed -n '/flat%/,$p' "$FP/heap-top-$s.txt" | head -13
		echo
		grep -E '^(Duration|Showing nodes)' "$FP/cpu-top-$s.txt" | head -1
		sed -n '/flat%/,$p' "$FP/cpu-top-$s.txt" | head -13
		echo '```'
		echo
	done
	for f in "$FP"/nm-*.tsv; do
		n=$(basename "$f" .tsv)
		echo "### Binary by module (${n#nm-}): symbol bytes (\`go tool nm -size\`, an unstripped static build)"
		echo
		echo '| module | MB |'
		echo '|---|---|'
		awk -F'\t' '$1 == "T" {printf "| all symbols | %.1f |\n", $2 / 1e6}' "$f"
		awk -F'\t' '$1 == "M" {printf "| %s | %.2f |\n", $3, $2 / 1e6}' "$f" | head -15
		echo
	done
} >"$OUT/footprint.md"
log "wrote $OUT/footprint.md and $FP/"
