package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenderMembership checks the verdicts and the "not measured" lines
// that the membership section derives from membership.sh's results.
func TestRenderMembership(t *testing.T) {
	const header = "mode\tsize\tsystem\trepeat\tseconds\tbaseline_gap_s\twrites\tdb_size_bytes\tpoll_s\tcheck\n"
	tests := []struct {
		name     string
		tsv      string // rows after the header; "" writes no file
		prev     string // the report being replaced
		want     []string
		dontWant []string
	}{
		{
			name: "no results",
			want: []string{"## Scale-up, failover and rebuild\n\nNot measured: `make -C bench membership`."},
		},
		{
			name: "scale-up within the yardstick, failover over it",
			tsv: "scaleup\t100MB\tetcd\t1\t10\tNA\tNA\t104857600\tNA\tok\n" +
				"scaleup\t100MB\tvetcd\t1\t14\tNA\tNA\t104857600\t0.2\tok\n" +
				"failover\tNA\tvetcd\t1\t4\t0.01\t100\tNA\tNA\tok\n" +
				"failover\tNA\tetcd\t1\t2\t0.01\t100\tNA\tNA\tok\n",
			want: []string{
				"| 100 MB | 100 MiB | 14.0 s (14.00–14.00, 1 runs) | 10.0 s (10.00–10.00, 1 runs) | 1.40 | 15.0 s | met |",
				"| 1 GB | – | not measured | not measured | – | – | no verdict |",
				"vetcd / etcd: 2.00; yardstick ≤ 1.5×: **not met**.",
				"Not measured in this run: `MODES=rebuild make -C bench membership`.",
			},
			dontWant: []string{"Runs whose check failed"},
		},
		{
			name: "a failed check is listed",
			tsv: "rebuild\tNA\tvetcd\t1\t0.1\t0.01\t100\tNA\tNA\tok\n" +
				"rebuild\tNA\tvetcd\t2\t0.2\t0.01\t100\tNA\tNA\tkeys differ\n",
			want: []string{
				"| vetcd `scale 1` | 0.15 s (0.10–0.20, 2 runs) | 0.01 s |",
				"Runs whose check failed (counted above): rebuild vetcd #2: keys differ.",
				"Not measured in this run: `MODES=scaleup make -C bench membership`.",
			},
		},
		{
			name: "abrupt only: the other modes are kept from the previous report",
			tsv: "abrupt\tNA\tvetcd\t1\t2.5\t0.01\t100\tNA\tNA\tok\n" +
				"abrupt\tNA\tetcd\t1\t1\t0.01\t100\tNA\tNA\tok\n",
			prev: "# Benchmarks\n\n## Scale-up, failover and rebuild\n\nintro\n\n### Failover: leader killed (-9) under a write load\n\n" +
				"| vetcd | 1.71 s |\n\n### Rebuild: write unavailability of a 3 → 1 scale-down\n\nold rebuild\n\n" +
				"Reproduce: `make -C bench membership`.\n\n## Snapshot create and restore\n\nsnap\n",
			want: []string{
				"| vetcd `scale 1` | 2.50 s (2.50–2.50, 1 runs) | 0.01 s |",
				"vetcd / etcd: 2.50; target ≤ 3 s median: met.",
				"### Failover: leader killed (-9) under a write load\n\n_Kept from the previous report: bench/out/ holds no results for this section; `MODES=failover make -C bench membership` measures it again._\n\n| vetcd | 1.71 s |\n\n### ",
				"### Rebuild: write unavailability of a 3 → 1 scale-down\n\n_Kept from the previous report",
				"old rebuild\n\n### Abrupt",
				"### Scale-up 1 → 3\n\nNot measured in this run: `MODES=scaleup make -C bench membership`.",
			},
			dontWant: []string{"\nsnap\n", "Reproduce: `make -C bench membership`.\n\n### Abrupt"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.tsv != "" {
				if err := os.WriteFile(filepath.Join(dir, "membership.tsv"), []byte(header+tc.tsv), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var b strings.Builder
			w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
			if err := renderMembership(w, dir, previous{text: tc.prev}); err != nil {
				t.Fatalf("renderMembership: %v", err)
			}
			for _, s := range tc.want {
				if !strings.Contains(b.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, b.String())
				}
			}
			for _, s := range tc.dontWant {
				if strings.Contains(b.String(), s) {
					t.Errorf("output has %q:\n%s", s, b.String())
				}
			}
		})
	}
}
