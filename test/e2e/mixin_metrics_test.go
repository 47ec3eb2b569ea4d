package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vetcd/vetcd/internal/metrics"
	"github.com/vetcd/vetcd/test/mixin"
)

// Every metric the chart's alert rules and dashboard use is one a running
// replica really serves: a 3-replica cluster (with scheduled snapshots and
// some writes) is scraped on each replica's /metrics, and each name must be
// there. Two kinds of names may be missing from a healthy cluster's scrape,
// each checked another way: `up`, which Prometheus adds to every target,
// and a vetcd_* counter with labels (vetcd_recoveries_total{reason}) that
// has no series before its first event; those must be declared with labels
// by vetcd's own registry.
func TestMixinMetricsExist(t *testing.T) {
	used, err := mixin.UsedMetrics()
	if err != nil {
		t.Fatal(err)
	}
	backups := filepath.Join(t.TempDir(), "backups")
	if err := os.MkdirAll(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "vetcd.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "snapshots:\n  schedule: \"@every 2s\"\n  target: file://%s/\n", backups), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startUp(t, filepath.Join(t.TempDir(), "c"), freeBasePort(t, 3), 3, "--config", cfg)
	c.requireSettled(3)
	cli := c.client(3)
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("/mixin/%d", i), "v")
		cancel()
		if err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	waitFor(t, time.Minute, "a scheduled snapshot", func() bool {
		return c.metric(c.leaderOrdinal(), "vetcd_snapshot_last_success_timestamp_seconds") > 0
	})

	served := map[string]bool{}
	for i := range 3 {
		for name := range scrapeNames(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", c.basePort+10*i+3)) {
			served[name] = true
		}
	}
	lazy := labelledVetcdMetrics()
	var names []string
	for n := range used {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		switch {
		case served[n]:
		case n == "up":
			t.Logf("%s: Prometheus's own series for every target", n)
		case lazy[n]:
			t.Logf("%s: not served before its first event; declared with labels by vetcd's registry", n)
		default:
			t.Errorf("metric %s is not served by any replica; used by %v", n, used[n])
		}
	}
	if len(names) < 30 {
		t.Errorf("only %d metric names found in the mixin: the name extraction is broken", len(names))
	}
}

var sampleName = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]`)

// scrapeNames returns the sample names (histogram _bucket, _sum and
// _count included) a /metrics endpoint serves in the text format.
func scrapeNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", url, resp.StatusCode, err)
	}
	names := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if m := sampleName.FindStringSubmatch(l); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

// labelledVetcdMetrics are the names of vetcd's metrics that have variable
// labels, which a scrape shows only once a labelled series exists.
func labelledVetcdMetrics() map[string]bool {
	m := metrics.New()
	ch := make(chan *prometheus.Desc, 64)
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if c, ok := v.Field(i).Interface().(prometheus.Collector); ok {
			c.Describe(ch)
		}
	}
	close(ch)
	fq := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	out := map[string]bool{}
	for d := range ch {
		if s := fq.FindStringSubmatch(d.String()); s != nil && s[2] != "" {
			out[s[1]] = true
		}
	}
	return out
}
