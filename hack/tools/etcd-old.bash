# etcd-old.bash: the body shared by etcd35.sh and etcd36.sh (sourced, not run
# by `make test-tools`, which runs only *.sh). install_old_etcd NAME VERSION
# builds go.etcd.io/etcd/server/v3 in the helper module test/tools/NAME, whose
# own go.mod pins VERSION (a plain `go install` fails: etcd's go.mod carries
# replace directives), into $TOOLS_BIN/NAME. Idempotent.
install_old_etcd() {
	local name=$1 version=$2 root out
	root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
	TOOLS_BIN="${TOOLS_BIN:-$root/bin/test}"
	case "$TOOLS_BIN" in /*) ;; *) TOOLS_BIN="$root/$TOOLS_BIN" ;; esac
	[ -x "$TOOLS_BIN/$name" ] && return 0
	mkdir -p "$TOOLS_BIN"
	echo "building etcd $version into $TOOLS_BIN/$name (from test/tools/$name, about a minute)" >&2
	(cd "$root/test/tools/$name" && GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS="${GOFLAGS:-}" \
		go build -o "$TOOLS_BIN/$name.tmp" go.etcd.io/etcd/server/v3)
	# Check before installing, and without a pipe into grep -q: under
	# pipefail, grep exiting at the first match can fail the pipeline.
	out="$("$TOOLS_BIN/$name.tmp" --version)"
	case "$out" in
	*"etcd Version: $version"*) ;;
	*) echo "$name: built binary reports: $out" >&2; rm -f "$TOOLS_BIN/$name.tmp"; return 1 ;;
	esac
	mv "$TOOLS_BIN/$name.tmp" "$TOOLS_BIN/$name"
}
