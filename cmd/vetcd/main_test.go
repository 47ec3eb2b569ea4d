package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/status"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/a/ca.crt":           "/tmp/a/ca.crt",
		"https://127.0.0.1:2379,": "https://127.0.0.1:2379,",
		"/tmp/with space":         "'/tmp/with space'",
		"it's":                    `'it'\''s'`,
		"":                        "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestPrinters(t *testing.T) {
	c := status.Cluster{ClusterID: "c1", Desired: 3, Linearizable: true, Members: []status.Row{
		{Name: "vetcd-0", ID: "a", Role: "leader", Healthy: true, RaftIndex: 10, DBSize: 20480, Version: "3.7.3"},
		{Name: "vetcd-1", ID: "b", Role: "learner", Error: "no leader", Alarms: []string{"NOSPACE"}},
	}}
	tests := []struct {
		format string
		want   []string
	}{
		{"table", []string{"NAME", "vetcd-0", "leader", "20.0 KiB", "unhealthy: no leader", "NOSPACE", "desired 3"}},
		{"json", []string{`"clusterID": "c1"`, `"role": "learner"`, `"desired": 3`}},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			p, err := newPrinter(tc.format)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := p.Print(&b, c); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("%s output lacks %q:\n%s", tc.format, w, b.String())
				}
			}
		})
	}
	if _, err := newPrinter("xml"); err == nil {
		t.Fatal("unknown format accepted")
	}
}

func TestHelpExplainsItself(t *testing.T) {
	for _, cmd := range []string{"up", "serve", "scale", "status", "env"} {
		var out, errb bytes.Buffer
		if code := run([]string{cmd, "--help"}, &out, &errb); code != 0 {
			t.Fatalf("%s --help exited %d: %s", cmd, code, errb.String())
		}
		if !strings.Contains(out.String(), "Examples:") || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("%s --help has no usage or examples:\n%s", cmd, out.String())
		}
	}
}

// A flag that sets a config key defaults to what a config file without the
// key gets, so `vetcd up` and `vetcd serve` behave alike out of the box.
func TestFlagDefaultsMatchConfig(t *testing.T) {
	def := config.Default()
	tests := []struct {
		cmd, flag, want string
	}{
		{"up", "log-level", def.Log.Level},
	}
	root := newRoot(io.Discard, io.Discard)
	for _, tt := range tests {
		c, _, err := root.Find([]string{tt.cmd})
		if err != nil {
			t.Fatalf("%s: %v", tt.cmd, err)
		}
		f := c.Flags().Lookup(tt.flag)
		if f == nil {
			t.Fatalf("vetcd %s has no --%s", tt.cmd, tt.flag)
		}
		if f.DefValue != tt.want {
			t.Errorf("vetcd %s --%s defaults to %q; a config without the key gets %q", tt.cmd, tt.flag, f.DefValue, tt.want)
		}
	}
}
