// Package mixin reads the chart's monitoring mixin, the Prometheus rules and
// the Grafana dashboard in deploy/helm/vetcd/files, for the tests that check
// it: promtool and helm here, a scrape of real replicas in test/e2e
// (TestMixinMetricsExist). The product never imports it.
package mixin

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Root is the repository root, found from this file.
func Root() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// ChartDir is deploy/helm/vetcd.
func ChartDir() string { return filepath.Join(Root(), "deploy", "helm", "vetcd") }

// RulesFile is the one rules file: the PrometheusRule embeds it and promtool
// tests it.
func RulesFile() string { return filepath.Join(ChartDir(), "files", "prometheus-rules.yaml") }

// DashboardFile is the Grafana dashboard the chart's ConfigMap embeds.
func DashboardFile() string { return filepath.Join(ChartDir(), "files", "vetcd-dashboard.json") }

// RulesTestFile is the promtool unit test of RulesFile.
func RulesTestFile() string {
	return filepath.Join(Root(), "test", "mixin", "testdata", "rules_test.yaml")
}

// Rule is one alerting or recording rule.
type Rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// Rules is a Prometheus rule file.
type Rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []Rule `yaml:"rules"`
	} `yaml:"groups"`
}

// LoadRules reads RulesFile.
func LoadRules() (Rules, error) {
	var r Rules
	b, err := os.ReadFile(RulesFile())
	if err != nil {
		return r, fmt.Errorf("read rules: %w", err)
	}
	if err := yaml.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("parse rules %s: %w", RulesFile(), err)
	}
	return r, nil
}

// Alerts are the rules' alert names, each once, in file order.
func (r Rules) Alerts() []string {
	var names []string
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			if rule.Alert != "" && !slices.Contains(names, rule.Alert) {
				names = append(names, rule.Alert)
			}
		}
	}
	return names
}

// Dashboard is the part of a Grafana dashboard the tests read.
type Dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Panel is a dashboard panel with its queries.
type Panel struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// LoadDashboard reads DashboardFile.
func LoadDashboard() (Dashboard, error) {
	var d Dashboard
	b, err := os.ReadFile(DashboardFile())
	if err != nil {
		return d, fmt.Errorf("read dashboard: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("parse dashboard %s: %w", DashboardFile(), err)
	}
	return d, nil
}

// labelValues is Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// Queries are the dashboard's PromQL queries by where they are ("panel
// title/refId", "variable name"); a label_values variable gives its
// selector.
func (d Dashboard) Queries() map[string]string {
	q := map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		expr := v.Definition
		if m := labelValues.FindStringSubmatch(expr); m != nil {
			expr = m[1]
		}
		q["variable "+v.Name] = expr
	}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			q[p.Title+"/"+t.RefID] = t.Expr
		}
	}
	return q
}

// UsedMetrics maps every metric name the rules and the dashboard select to
// where it is used.
func UsedMetrics() (map[string][]string, error) {
	r, err := LoadRules()
	if err != nil {
		return nil, err
	}
	d, err := LoadDashboard()
	if err != nil {
		return nil, err
	}
	used := map[string][]string{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			for _, n := range MetricNames(rule.Expr) {
				used[n] = append(used[n], "rule "+rule.Alert+rule.Record)
			}
		}
	}
	for where, expr := range d.Queries() {
		for _, n := range MetricNames(expr) {
			used[n] = append(used[n], "dashboard "+where)
		}
	}
	return used, nil
}

// promqlWords are PromQL's keywords and aggregation operators: identifiers
// that are not metric names even when no parenthesis follows.
var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true, "inf": true, "nan": true,
}

// labelLists are the keywords followed by a parenthesised list of label
// names.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// MetricNames returns the metric names an expression selects, sorted, each
// once: the identifiers left after dropping strings, label matchers,
// ranges, label lists, keywords, numbers and function names. Grafana's
// variables ($namespace, $__rate_interval) sit in matchers and ranges and
// go with them.
func MetricNames(expr string) []string {
	s := stripQuoted(expr)
	s = stripBetween(s, '{', '}')
	s = stripBetween(s, '[', ']')
	var names []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n') {
				k++
			}
			i = j
			paren := k < len(s) && s[k] == '('
			switch {
			case labelLists[word] && paren:
				i = closing(s, k) + 1
			case promqlWords[word], paren:
			default:
				if !slices.Contains(names, word) {
					names = append(names, word)
				}
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		default:
			i++
		}
	}
	slices.Sort(names)
	return names
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// closing is the index of the parenthesis that closes the one at open.
func closing(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return len(s) - 1
}

// stripQuoted empties every string literal ("...", '...', `...`).
func stripQuoted(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		q := s[i]
		if q != '"' && q != '\'' && q != '`' {
			b.WriteByte(q)
			continue
		}
		b.WriteByte(q)
		for i++; i < len(s) && s[i] != q; i++ {
			if s[i] == '\\' && q != '`' {
				i++
			}
		}
		b.WriteByte(q)
	}
	return b.String()
}

// stripBetween drops what lies between open and close (not nested).
func stripBetween(s string, open, close byte) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		switch {
		case !in && s[i] == open:
			in = true
			b.WriteByte(open)
		case in && s[i] == close:
			in = false
			b.WriteByte(close)
		case !in:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
