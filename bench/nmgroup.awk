# nmgroup.awk (footprint.sh): `go tool nm -size` lines (addr size type name) and, first,
# the binary's module paths (one per line, from `go version -m`, file 1),
# summed by module (std for the standard library and the runtime).
FNR == NR { mods[$1] = 1; next }
{
	size = $2
	name = $4
	for (i = 5; i <= NF; i++) name = name " " $i
	sub(/^type:/, "", name); sub(/^\*+/, "", name)
	if (name ~ /^go:/ || name ~ /^runtime\./) { pkg = "std" }
	else {
		p = name
		b = index(p, "["); if (b > 0) p = substr(p, 1, b - 1)
		b = index(p, "("); if (b > 0) p = substr(p, 1, b - 1)
		n = split(p, parts, "/")
		last = parts[n]; d = index(last, "."); if (d > 0) last = substr(last, 1, d - 1)
		pkg = ""
		for (i = 1; i < n; i++) pkg = pkg parts[i] "/"
		pkg = pkg last
	}
	m = "std"
	if (pkg != "std") {
		first = pkg; s = index(first, "/"); if (s > 0) first = substr(first, 1, s - 1)
		if (index(first, ".") > 0) {
			m = pkg
			while (m != "" && !(m in mods)) { if (sub(/\/[^\/]*$/, "", m) == 0) { m = "other"; break } }
			if (m == "") m = "other"
		}
	}
	bym[m] += size; byp[pkg] += size; total += size
}
END {
	for (k in bym) printf "M\t%d\t%s\n", bym[k], k
	for (k in byp) printf "P\t%d\t%s\n", byp[k], k
	printf "T\t%d\ttotal\n", total
}
