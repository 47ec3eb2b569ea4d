package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenderRestart checks the verdict and the failed checks that the crash
// restart section derives from restart.sh's results, and that without them
// the previous report's section is kept.
func TestRenderRestart(t *testing.T) {
	const header = "size\tsystem\trepeat\tposition\tmember\tdb_size_bytes\tdb_in_use_bytes\tkeys\tstart_to_ready_s\tfault_to_ready_s\t" +
		"restart_delay_s\treplica_started_s\tdecision_s\tetcd_starting_s\tpublished_s\tetcd_ready_s\tserving_s\tpoll_s\tcheck\n"
	dir := t.TempDir()
	rows := "10MB\tvetcd\t1\t1\tvetcd-2\t12582912\t11000000\t41\t0.7\t1.7\t1.0\t0.1\t0.2\t0.2\t0.5\t0.5\t0.5\t0.2\tok\n" +
		"10MB\tetcd\t1\t2\tetcd-2\t12582912\t11000000\t41\t0.5\t0.5\t0.01\tNA\tNA\t0.1\t0.4\t0.4\tNA\t0.5\tok\n" +
		"10MB\tvetcd\t2\t4\tvetcd-2\t12582912\t11000000\t41\t0.9\t1.9\t1.0\t0.1\t0.2\t0.2\t0.5\t0.5\t0.5\t0.2\tmember ID changed: a -> b\n" +
		"10MB\tetcd\t2\t3\tetcd-1\t12582912\t11000000\t41\t0.7\t0.7\t0.01\tNA\tNA\t0.1\t0.4\t0.4\tNA\t0.5\tok\n"
	if err := os.WriteFile(filepath.Join(dir, "restart.tsv"), []byte(header+rows), 0o644); err != nil {
		t.Fatal(err)
	}
	meta := "size\tkey\tvalue\n10MB\tdate\t2026-12-03 14:00:00 UTC\n10MB\tetcd_version\t3.7.3\n10MB\tduration_seconds\t100\n"
	if err := os.WriteFile(filepath.Join(dir, "restart-meta.tsv"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	ok, err := renderRestart(w, dir)
	if err != nil || !ok {
		t.Fatalf("renderRestart = %v, %v", ok, err)
	}
	for _, s := range []string{
		"| 10 MB | 12 MiB | 1.80 s (1.70–1.90, 2 runs) | 0.60 s (0.50–0.70, 2 runs) | 3.00 | 0.72 s | **not met** | 0.80 s (0.70–0.90, 2 runs) | 0.60 s (0.50–0.70, 2 runs) | 1.33 |",
		"| 1 GB | – | not measured | | – | – | no verdict | | | – |",
		"| kill → new process (back-off / script) | 1.00 s | 0.01 s | – | – |",
		"restarted on its own data (same member ID, no aside dir) in 1 of 2 runs",
		"Runs whose check failed (counted above): 10 MB vetcd #2: member ID changed: a -> b.",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, b.String())
		}
	}

	// No results: render keeps the previous report's section, marked once.
	prev := previous{text: "# Benchmarks\n\n## Crash restart: old\n\n_Kept from the previous report: x_\n\nold table\n\n## Snapshot create and restore\n\nsnap\n"}
	b.Reset()
	if ok, err := renderRestart(w, t.TempDir()); err != nil || ok {
		t.Fatalf("renderRestart without results = %v, %v", ok, err)
	}
	prev.keep(w, "", "## Crash restart", "make -C bench restart")
	if got, want := b.String(), "## Crash restart: old\n\n_Kept from the previous report: x_\n\nold table\n\n"; got != want {
		t.Errorf("kept section = %q, want %q", got, want)
	}
}
