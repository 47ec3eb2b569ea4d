package mixin

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vetcd/vetcd/internal/testtools"
)

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up{vetcd_cluster!=""} == 0`, []string{"up"}},
		{`sum by (pod, le) (rate(a_bucket{x="y", z=~"p|q"}[5m])) > on (namespace) group_left (pod) max(b) or vector(0)`, []string{"a_bucket", "b"}},
		{`histogram_quantile(0.99, rate(c_bucket[$__rate_interval])) > 0.5`, []string{"c_bucket"}},
		{`time() - max by (ns) (d > 0) + 14 * 86400`, []string{"d"}},
		{`count without (instance) (e{s="a} and {b"}) unless ignoring(x) f offset 5m`, []string{"e", "f"}},
		{`predict_linear(g[4h], 4*60*60) > h and bool i`, []string{"g", "h", "i"}},
		{`topk(3, j) / quantile(0.5, k)`, []string{"j", "k"}},
	} {
		if got := MetricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("MetricNames(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

// promtool runs the promtool binary (hack/tools/promtool.sh) and returns
// its combined output.
func promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(testtools.Path(t, "promtool"), args...).CombinedOutput()
	return string(out), err
}

// The rules file is valid and its unit tests pass: every alert fires on
// the series meant to fire it and on no other.
func TestPromtoolRules(t *testing.T) {
	if out, err := promtool(t, "check", "rules", RulesFile()); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	out, err := promtool(t, "test", "rules", RulesTestFile())
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("promtool test rules:\n%s", out)
}

// promtoolTests is the part of a promtool test file the coverage check reads.
type promtoolTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name        string `yaml:"name"`
		InputSeries []struct {
			Series string `yaml:"series"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

var seriesRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}$`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"`)

// Every alert of the rules file is tested with a series that fires it and
// one that does not: promtool checks what fires, and this checks that each
// alert has a firing expectation and, in the same test, an input series of
// a metric it reads that no expected alert covers (or an expectation that
// nothing fires), so no alert is tested only where it fires.
func TestEveryAlertFiresAndDoesNot(t *testing.T) {
	rules, err := LoadRules()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(RulesTestFile())
	if err != nil {
		t.Fatal(err)
	}
	var pt promtoolTests
	if err := yaml.Unmarshal(b, &pt); err != nil {
		t.Fatal(err)
	}
	if len(pt.RuleFiles) != 1 || filepath.Clean(filepath.Join(filepath.Dir(RulesTestFile()), pt.RuleFiles[0])) != filepath.Clean(RulesFile()) {
		t.Fatalf("the promtool test reads %v, not the chart's rules file %s", pt.RuleFiles, RulesFile())
	}
	reads := map[string][]string{} // alert -> metrics its expressions read
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			reads[r.Alert] = append(reads[r.Alert], MetricNames(r.Expr)...)
		}
	}
	for _, alert := range rules.Alerts() {
		var fires, doesNot bool
		for _, tc := range pt.Tests {
			var expected []map[string]string
			var tested, silent bool
			for _, a := range tc.AlertRuleTest {
				if a.Alertname != alert {
					continue
				}
				tested = true
				silent = silent || len(a.ExpAlerts) == 0
				for _, e := range a.ExpAlerts {
					expected = append(expected, e.ExpLabels)
				}
			}
			if !tested {
				continue
			}
			fires = fires || len(expected) > 0
			if len(expected) > 0 && silent {
				doesNot = true
			}
			for _, in := range tc.InputSeries {
				m := seriesRE.FindStringSubmatch(in.Series)
				if m == nil || !slices.Contains(reads[alert], m[1]) {
					continue
				}
				labels := map[string]string{}
				for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
					labels[l[1]] = l[2]
				}
				covered := false
				for _, e := range expected {
					covered = covered || (e["namespace"] == labels["namespace"] && (e["pod"] == "" || e["pod"] == labels["pod"]))
				}
				if !covered && len(expected) > 0 {
					doesNot = true
				}
			}
		}
		if !fires {
			t.Errorf("alert %s: no promtool test expects it to fire", alert)
		}
		if !doesNot {
			t.Errorf("alert %s: no promtool test has a series that must not fire it", alert)
		}
	}
}

// The dashboard is valid Grafana JSON over vetcd_cluster, every panel uses
// the data source variable, and every query is valid PromQL: promtool
// checks them as recording rules, with Grafana's variables filled in.
func TestDashboard(t *testing.T) {
	d, err := LoadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q title %q", d.UID, d.Title)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if !slices.Equal(vars, []string{"datasource", "namespace", "cluster"}) {
		t.Errorf("variables %v, want datasource, namespace, cluster", vars)
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	fill := strings.NewReplacer("$__rate_interval", "5m", "$namespace", "team-a", "$cluster", "vetcd")
	n := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q: datasource %s, want ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `vetcd_cluster="$cluster"`) {
				t.Errorf("panel %q/%s: %q does not select the cluster", p.Title, tg.RefID, tg.Expr)
			}
		}
	}
	for where, expr := range d.Queries() {
		n++
		q, _ := json.Marshal(fill.Replace(expr)) // a JSON string is a YAML string
		rules.WriteString("      - record: dashboard:query_" + strings.Repeat("x", n) + "\n        expr: " + string(q) + "\n")
		if len(MetricNames(expr)) == 0 {
			t.Errorf("dashboard %s: %q selects no metric", where, expr)
		}
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := promtool(t, "check", "rules", f); err != nil {
		t.Fatalf("a dashboard query is not valid PromQL: %v\n%s", err, out)
	}
}

// helm is testtools.Helm.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return testtools.Helm(t, args...)
}

// object is a rendered manifest, decoded without the types (the
// monitoring.coreos.com ones are not in vetcd's go.mod).
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec map[string]any    `yaml:"spec"`
	Data map[string]string `yaml:"data"`
}

// renderAll runs `helm template` (release vetcd, namespace team-a) and
// decodes every document.
func renderAll(t *testing.T, sets ...string) []object {
	t.Helper()
	args := []string{"template", "vetcd", ChartDir(), "--namespace", "team-a"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", sets, err, out)
	}
	var objs []object
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o object
		err := dec.Decode(&o)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("rendered chart does not decode: %v", err)
		}
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
	return objs
}

func find(objs []object, kind, name string) *object {
	for i := range objs {
		if objs[i].Kind == kind && (name == "" || objs[i].Metadata.Name == name) {
			return &objs[i]
		}
	}
	return nil
}

// Off by default, and off means none of the three objects, whatever the
// sub-switches say.
func TestChartMonitoringOff(t *testing.T) {
	for _, sets := range [][]string{nil, {"monitoring.enabled=false", "monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true"}} {
		objs := renderAll(t, sets...)
		for _, o := range objs {
			if strings.HasPrefix(o.APIVersion, "monitoring.coreos.com/") || o.Metadata.Name == "vetcd-dashboard" {
				t.Errorf("with %v: %s %s rendered", sets, o.Kind, o.Metadata.Name)
			}
		}
		if find(objs, "StatefulSet", "vetcd") == nil {
			t.Fatalf("with %v: no StatefulSet", sets)
		}
	}
}

// monitoring.enabled=true renders a ServiceMonitor that scrapes every pod
// through the headless Service and names the cluster, the PrometheusRule
// holding exactly the rules file (valid for promtool as rendered), and the
// dashboard ConfigMap with the sidecar's label.
func TestChartMonitoringOn(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", ChartDir(), "--set", "monitoring.enabled=true"); err != nil {
		t.Fatalf("helm lint --strict: %v\n%s", err, out)
	}
	objs := renderAll(t, "monitoring.enabled=true", "monitoring.labels.release=kube-prometheus-stack",
		"monitoring.serviceMonitor.scrapeTimeout=10s")

	sts := find(objs, "StatefulSet", "vetcd")
	headless, client := find(objs, "Service", "vetcd-headless"), find(objs, "Service", "vetcd")
	if sts == nil || headless == nil || client == nil {
		t.Fatalf("missing StatefulSet or Services")
	}
	sm := find(objs, "ServiceMonitor", "vetcd")
	if sm == nil || sm.APIVersion != "monitoring.coreos.com/v1" || sm.Metadata.Namespace != "team-a" {
		t.Fatalf("ServiceMonitor %+v", sm)
	}
	if sm.Metadata.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack monitoring.labels", sm.Metadata.Labels)
	}
	var spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		NamespaceSelector struct {
			MatchNames []string `yaml:"matchNames"`
		} `yaml:"namespaceSelector"`
		Endpoints []struct {
			Port          string `yaml:"port"`
			Path          string `yaml:"path"`
			Scheme        string `yaml:"scheme"`
			Interval      string `yaml:"interval"`
			ScrapeTimeout string `yaml:"scrapeTimeout"`
			Relabelings   []struct {
				Action      string `yaml:"action"`
				TargetLabel string `yaml:"targetLabel"`
				Replacement string `yaml:"replacement"`
			} `yaml:"relabelings"`
		} `yaml:"endpoints"`
	}
	remarshal(t, sm.Spec, &spec)
	if !selects(spec.Selector.MatchLabels, headless.Metadata.Labels) || selects(spec.Selector.MatchLabels, client.Metadata.Labels) {
		t.Errorf("ServiceMonitor selector %v must select the headless Service (%v) only, not the client one (%v): each pod once, ready or not",
			spec.Selector.MatchLabels, headless.Metadata.Labels, client.Metadata.Labels)
	}
	if !slices.Equal(spec.NamespaceSelector.MatchNames, []string{"team-a"}) {
		t.Errorf("namespaceSelector %v", spec.NamespaceSelector.MatchNames)
	}
	if len(spec.Endpoints) != 1 {
		t.Fatalf("endpoints %+v", spec.Endpoints)
	}
	ep := spec.Endpoints[0]
	if ep.Port != "metrics" || ep.Path != "/metrics" || ep.Scheme != "http" || ep.Interval != "30s" || ep.ScrapeTimeout != "10s" {
		t.Errorf("endpoint %+v", ep)
	}
	type port struct {
		Name string `yaml:"name"`
		Port int    `yaml:"port"`
	}
	var hs struct {
		Ports []port `yaml:"ports"`
	}
	remarshal(t, headless.Spec, &hs)
	if !slices.Contains(hs.Ports, port{"metrics", 2382}) {
		t.Errorf("headless Service ports %+v: no metrics port", hs.Ports)
	}
	if len(ep.Relabelings) != 1 || ep.Relabelings[0].TargetLabel != "vetcd_cluster" || ep.Relabelings[0].Replacement != sts.Metadata.Name || ep.Relabelings[0].Action != "replace" {
		t.Errorf("relabelings %+v: want vetcd_cluster=%s", ep.Relabelings, sts.Metadata.Name)
	}

	// The PrometheusRule's spec is the rules file, and promtool accepts it.
	pr := find(objs, "PrometheusRule", "vetcd")
	if pr == nil || pr.APIVersion != "monitoring.coreos.com/v1" || pr.Metadata.Namespace != "team-a" || pr.Metadata.Labels["release"] != "kube-prometheus-stack" {
		t.Fatalf("PrometheusRule %+v", pr)
	}
	b, err := os.ReadFile(RulesFile())
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pr.Spec, file) {
		t.Errorf("PrometheusRule spec differs from %s", RulesFile())
	}
	rendered, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "rendered-rules.yaml")
	if err := os.WriteFile(f, rendered, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := promtool(t, "check", "rules", f); err != nil {
		t.Fatalf("promtool check rules on the rendered PrometheusRule: %v\n%s", err, out)
	}

	// The dashboard: the sidecar's default label, the file as it is.
	cm := find(objs, "ConfigMap", "vetcd-dashboard")
	if cm == nil || cm.Metadata.Namespace != "team-a" || cm.Metadata.Labels["grafana_dashboard"] != "1" || cm.Metadata.Labels["release"] != "kube-prometheus-stack" {
		t.Fatalf("dashboard ConfigMap %+v", cm)
	}
	want, err := os.ReadFile(DashboardFile())
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(cm.Data["vetcd.json"]) != strings.TrimSpace(string(want)) {
		t.Errorf("dashboard ConfigMap data differs from %s", DashboardFile())
	}
	if !json.Valid([]byte(cm.Data["vetcd.json"])) {
		t.Errorf("dashboard ConfigMap holds invalid JSON")
	}
}

// The sidecar's label key and value, the ConfigMap's namespace and
// annotations are values; each part can be left out.
func TestChartMonitoringOptions(t *testing.T) {
	objs := renderAll(t, "monitoring.enabled=true", "monitoring.dashboard.label=dashboards", "monitoring.dashboard.labelValue=vetcd",
		"monitoring.dashboard.namespace=grafana", "monitoring.dashboard.annotations.grafana_folder=etcd", "monitoring.prometheusRule.enabled=false")
	cm := find(objs, "ConfigMap", "vetcd-dashboard")
	if cm == nil || cm.Metadata.Labels["dashboards"] != "vetcd" || cm.Metadata.Labels["grafana_dashboard"] != "" ||
		cm.Metadata.Namespace != "grafana" || cm.Metadata.Annotations["grafana_folder"] != "etcd" {
		t.Fatalf("dashboard ConfigMap %+v", cm)
	}
	if find(objs, "PrometheusRule", "") != nil || find(objs, "ServiceMonitor", "vetcd") == nil {
		t.Errorf("prometheusRule.enabled=false: kinds wrong")
	}
	objs = renderAll(t, "monitoring.enabled=true", "monitoring.serviceMonitor.enabled=false", "monitoring.dashboard.enabled=false")
	if find(objs, "ServiceMonitor", "") != nil || find(objs, "ConfigMap", "vetcd-dashboard") != nil || find(objs, "PrometheusRule", "vetcd") == nil {
		t.Errorf("serviceMonitor and dashboard off: kinds wrong")
	}
	if out, err := helm(t, "template", "vetcd", ChartDir(), "--set", "monitoring.enabled=true", "--set", "monitoring.serviceMonitor.interval=often"); err == nil || !strings.Contains(out, "interval") {
		t.Errorf("a bad scrape interval was accepted: %v\n%s", err, out)
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// remarshal converts a decoded map into a typed struct.
func remarshal(t *testing.T, in any, out any) {
	t.Helper()
	b, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}
