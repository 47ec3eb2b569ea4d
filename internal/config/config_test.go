package config

import (
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// minimal is the smallest valid config file.
const minimal = `
name: vetcd-1
dataDir: /var/lib/vetcd/data
clientURL: https://10.0.0.1:2379
peerURL: https://10.0.0.1:2380
agentURL: https://10.0.0.1:2381
tls:
  caFile: /etc/vetcd/ca.crt
  certFile: /etc/vetcd/tls.crt
  keyFile: /etc/vetcd/tls.key
topology:
  file: /var/lib/vetcd/topology.json
`

// withMinimal returns the minimal file with extra appended.
func withMinimal(extra string) string {
	return minimal + extra
}

// minimalWithout returns the minimal file without the top-level key and
// its indented children, to test one setting alone.
func minimalWithout(key string) string {
	var out []string
	skipping := false
	for _, l := range strings.Split(minimal, "\n") {
		if !strings.HasPrefix(l, " ") {
			skipping = strings.HasPrefix(l, key+":")
		}
		if !skipping {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func ptr[T any](v T) *T { return &v }

func TestParseValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		// wantParseErr, wantErr: substrings of Parse's or Validate's error;
		// all must be present. Empty: no error expected.
		wantParseErr []string
		wantErr      []string
		check        func(t *testing.T, c Config)
	}{
		{
			name: "minimal valid file gets defaults and derived fields",
			yaml: minimal,
			check: func(t *testing.T, c Config) {
				want := Default()
				want.Name = "vetcd-1"
				want.Ordinal = ptr(1)
				want.DataDir = "/var/lib/vetcd/data"
				want.ClientURL = "https://10.0.0.1:2379"
				want.PeerURL = "https://10.0.0.1:2380"
				want.ListenClientURL = "https://10.0.0.1:2379"
				want.ListenPeerURL = "https://10.0.0.1:2380"
				want.AgentURL = "https://10.0.0.1:2381"
				want.TLS = TLS{CAFile: "/etc/vetcd/ca.crt", CertFile: "/etc/vetcd/tls.crt", KeyFile: "/etc/vetcd/tls.key"}
				want.Topology.File = "/var/lib/vetcd/topology.json"
				if !reflect.DeepEqual(c, want) {
					t.Errorf("got  %+v\nwant %+v", c, want)
				}
				if !c.IsEnabled() || c.OrdinalValue() != 1 {
					t.Errorf("IsEnabled %t, OrdinalValue %d; want true, 1", c.IsEnabled(), c.OrdinalValue())
				}
			},
		},
		{
			name: "every key set",
			yaml: `
enabled: false
migrateFromDeployedEtcd: true
snapshotCount: 5000
extraArgs: ["--quota-backend-bytes=1000000", "--enable-pprof"]
name: etcd-a
ordinal: 2
dataDir: /d/data
clientURL: https://a:1
peerURL: https://a:2
listenClientURL: https://0.0.0.0:1
listenPeerURL: https://0.0.0.0:2
agentURL: https://a:3
metricsURL: http://0.0.0.0:4
tls: {caFile: ca, certFile: cert, keyFile: key}
topology: {source: static, file: topo.json}
controller: {interval: 250ms}
recovery: {unresponsiveAfter: 10s, learnerStuckAfter: 1m}
shutdown: {leaveTimeout: 3s}
log: {level: debug}
`,
			check: func(t *testing.T, c Config) {
				want := Config{
					Enabled:                 ptr(false),
					MigrateFromDeployedEtcd: true,
					SnapshotCount:           5000,
					ExtraArgs:               []string{"--quota-backend-bytes=1000000", "--enable-pprof"},
					Name:                    "etcd-a",
					Ordinal:                 ptr(2),
					DataDir:                 "/d/data",
					ClientURL:               "https://a:1",
					PeerURL:                 "https://a:2",
					ListenClientURL:         "https://0.0.0.0:1",
					ListenPeerURL:           "https://0.0.0.0:2",
					AgentURL:                "https://a:3",
					MetricsURL:              "http://0.0.0.0:4",
					TLS:                     TLS{CAFile: "ca", CertFile: "cert", KeyFile: "key"},
					Topology:                Topology{Source: "static", File: "topo.json"},
					Controller:              Controller{Interval: 250 * time.Millisecond},
					Recovery:                Recovery{UnresponsiveAfter: 10 * time.Second, LearnerStuckAfter: time.Minute},
					Shutdown:                Shutdown{LeaveTimeout: 3 * time.Second},
					Log:                     Log{Level: "debug"},
				}
				if !reflect.DeepEqual(c, want) {
					t.Errorf("got  %+v\nwant %+v", c, want)
				}
				if c.IsEnabled() {
					t.Error("IsEnabled() = true for enabled: false")
				}
			},
		},
		{
			name:         "unknown top-level key names the key and its line",
			yaml:         "name: vetcd-0\ndataDir: /d\n# comment\nsnapshotCnt: 5\n",
			wantParseErr: []string{`line 4: unknown key "snapshotCnt"`},
		},
		{
			name:         "unknown nested key names the key path",
			yaml:         "tls:\n  caFile: a\n  caFil: b\n",
			wantParseErr: []string{`line 3: unknown key "tls.caFil"`},
		},
		{
			name:         "every unknown key is reported",
			yaml:         "a: 1\nb: 2\nrecovery:\n  c: 3\n",
			wantParseErr: []string{`line 1: unknown key "a"`, `line 2: unknown key "b"`, `line 4: unknown key "recovery.c"`},
		},
		{
			name: "unknown key inside embedded names the key and its line",
			yaml: withMinimal(`
controlPlane:
  distro: {k8s: {enabled: true}}
  backingStore:
    etcd:
      embedded:
        enabled: true
        snapshotCnt: 5
`),
			wantParseErr: []string{`line 20: unknown key "controlPlane.backingStore.etcd.embedded.snapshotCnt"`},
		},
		{
			name:         "wrong type names the key and its line",
			yaml:         "dataDir: /d\nsnapshotCount: many\n",
			wantParseErr: []string{`line 2: snapshotCount: cannot use "many" as an integer`},
		},
		{
			name:         "wrong type in a list names the element",
			yaml:         "extraArgs:\n  - --enable-pprof\n  - {a: b}\n",
			wantParseErr: []string{`line 3: extraArgs[1]: cannot use a mapping as a string`},
		},
		{
			name:         "wrong type for a section",
			yaml:         "tls: yes\n",
			wantParseErr: []string{`line 1: tls: cannot use "yes" as a mapping of keys`},
		},
		{
			name:         "wrong type for a bool",
			yaml:         "enabled: maybe\n",
			wantParseErr: []string{`line 1: enabled: cannot use "maybe" as true or false`},
		},
		{
			name:         "duration as a number is refused",
			yaml:         "controller:\n  interval: 5\n",
			wantParseErr: []string{`line 2: controller.interval: cannot use "5" as a duration`},
		},
		{
			name:         "malformed duration",
			yaml:         "recovery:\n  unresponsiveAfter: 2 minutes\n",
			wantParseErr: []string{`line 2: recovery.unresponsiveAfter: cannot use "2 minutes" as a duration`},
		},
		{
			name:         "duplicate key",
			yaml:         "dataDir: /a\ndataDir: /b\n",
			wantParseErr: []string{`line 2: duplicate key "dataDir" (first at line 1)`},
		},
		{
			name:         "two documents",
			yaml:         "dataDir: /a\n---\ndataDir: /b\n",
			wantParseErr: []string{"one YAML document"},
		},
		{
			name:         "YAML syntax error",
			yaml:         "dataDir: [\n",
			wantParseErr: []string{"parse: yaml:"},
		},
		{
			name:         "document that is not a mapping",
			yaml:         "- a\n- b\n",
			wantParseErr: []string{"line 1: document: cannot use a list as a mapping of keys"},
		},
		{
			name: "anchors, aliases and merge keys are resolved",
			yaml: withMinimal(`
recovery: &rec
  unresponsiveAfter: 1m
shutdown:
  leaveTimeout: 7s
controller:
  <<: {interval: 3s}
`),
			check: func(t *testing.T, c Config) {
				if c.Controller.Interval != 3*time.Second || c.Recovery.UnresponsiveAfter != time.Minute {
					t.Errorf("Controller %+v, Recovery %+v", c.Controller, c.Recovery)
				}
			},
		},
		{
			name:         "unknown key through a merge key is still refused",
			yaml:         "controller:\n  <<: {intervall: 3s}\n",
			wantParseErr: []string{`unknown key "controller.intervall"`},
		},
		{
			name:         "a merge key that refers to its own mapping",
			yaml:         "controller: &c\n  <<: *c\n",
			wantParseErr: []string{"parse: yaml: anchor 'c' value contains itself"},
		},
		{
			name:         "a merge key on a non-mapping names the key and its line",
			yaml:         "controller:\n  interval: 1s\n  <<: [5]\n",
			wantParseErr: []string{`line 3: controller: a merge key (<<) needs a mapping, not "5"`},
		},
		{
			name: "every problem on one flow-style line is named by its key",
			yaml: "recovery: {unresponsiveAfter: 5, learnerStuckAfter: 5}\ntls: {caFile: a, caFil: b}\n",
			wantParseErr: []string{
				`line 1: recovery.unresponsiveAfter: cannot use "5" as a duration`,
				`line 1: recovery.learnerStuckAfter: cannot use "5" as a duration`,
				`line 2: unknown key "tls.caFil"`,
			},
		},
		{
			name: "a problem reached through an alias is named where it is used",
			yaml: "recovery: &r\n  unresponsiveAfter: 1m\n  bogus: 1\nshutdown: *r\ncontroller: {interval: &d 5}\nlog: {level: *d}\nsnapshots: {retention: *d}\n",
			wantParseErr: []string{
				`line 3: unknown key "recovery.bogus"`,
				`line 2: unknown key "shutdown.unresponsiveAfter"`,
				`line 3: unknown key "shutdown.bogus"`,
				`line 5: controller.interval: cannot use "5" as a duration`,
			},
		},
		{
			name:         "a long wrong value is quoted whole",
			yaml:         "recovery:\n  unresponsiveAfter: two hours and a bit\n",
			wantParseErr: []string{`line 2: recovery.unresponsiveAfter: cannot use "two hours and a bit" as a duration such as "10s" or "2m"`},
		},
		{
			name:         "a key that is not a string",
			yaml:         "tls:\n  ? [a]\n  : 1\n",
			wantParseErr: []string{`line 2: tls: a key must be a string, not a list`},
		},
		{
			name:         "a key written three times",
			yaml:         "dataDir: /a\ndataDir: /b\ndataDir: /c\n",
			wantParseErr: []string{`line 2: duplicate key "dataDir" (first at line 1)`, `line 3: duplicate key "dataDir" (first at line 1)`},
		},
		{
			name: "wrong types deep in sections",
			yaml: withMinimal("controlPlane:\n  backingStore:\n    etcd:\n      embedded:\n        enabled: 3\n        extraArgs: {a: 1}\n" +
				"migrateFrom: {tls: {caFile: {}}, endpoints: a}\n"),
			wantParseErr: []string{
				`line 17: controlPlane.backingStore.etcd.embedded.enabled: cannot use "3" as true or false`,
				`line 18: controlPlane.backingStore.etcd.embedded.extraArgs: cannot use a mapping as a list of strings`,
				`line 19: migrateFrom.tls.caFile: cannot use a mapping as a string`,
				`line 19: migrateFrom.endpoints: cannot use "a" as a list of strings`,
			},
		},
		{
			name: "null section keeps the defaults",
			yaml: withMinimal("recovery:\nlog: ~\n"),
			check: func(t *testing.T, c Config) {
				if c.Recovery != Default().Recovery || c.Log != Default().Log {
					t.Errorf("Recovery %+v, Log %+v; want defaults", c.Recovery, c.Log)
				}
			},
		},
		{
			name: "vCluster file: sibling keys ignored, embedded merged",
			yaml: withMinimal(`
controlPlane:
  distro:
    k8s:
      enabled: true
  statefulSet:
    highAvailability:
      replicas: 3
  backingStore:
    database:
      embedded:
        enabled: false
    etcd:
      deploy:
        enabled: false
        statefulSet: {highAvailability: {replicas: 3}}
      embedded:
        enabled: true
        migrateFromDeployedEtcd: true
        snapshotCount: 20000
        extraArgs:
          - --quota-backend-bytes=8589934592
`),
			check: func(t *testing.T, c Config) {
				if !c.IsEnabled() || !c.MigrateFromDeployedEtcd || c.SnapshotCount != 20000 ||
					!slices.Equal(c.ExtraArgs, []string{"--quota-backend-bytes=8589934592"}) {
					t.Errorf("merge: enabled %v migrate %t snapshotCount %d extraArgs %q",
						c.Enabled, c.MigrateFromDeployedEtcd, c.SnapshotCount, c.ExtraArgs)
				}
				if c.Enabled == c.ControlPlane.BackingStore.Etcd.Embedded.Enabled {
					t.Error("Enabled aliases the embedded section's pointer")
				}
			},
		},
		{
			name: "vCluster file: embedded enabled false",
			yaml: withMinimal("controlPlane:\n  backingStore:\n    etcd:\n      embedded:\n        enabled: false\n"),
			check: func(t *testing.T, c Config) {
				if c.IsEnabled() {
					t.Error("IsEnabled() = true, want false from embedded")
				}
			},
		},
		{
			name: "vCluster file: same value at top level and in embedded",
			yaml: withMinimal("snapshotCount: 7\ncontrolPlane:\n  backingStore:\n    etcd:\n      embedded:\n        snapshotCount: 7\n"),
			check: func(t *testing.T, c Config) {
				if c.SnapshotCount != 7 {
					t.Errorf("SnapshotCount = %d, want 7", c.SnapshotCount)
				}
			},
		},
		{
			name: "vCluster file: conflicting top level and embedded",
			yaml: withMinimal(`snapshotCount: 5
enabled: true
extraArgs: ["--max-learners=2"]
controlPlane:
  backingStore:
    etcd:
      embedded:
        enabled: false
        snapshotCount: 7
        extraArgs: ["--max-learners=3"]
`),
			wantParseErr: []string{
				"line 13: snapshotCount 5 differs from controlPlane.backingStore.etcd.embedded.snapshotCount 7",
				"line 14: enabled true differs from controlPlane.backingStore.etcd.embedded.enabled false",
				`extraArgs ["--max-learners=2"] differs from controlPlane.backingStore.etcd.embedded.extraArgs ["--max-learners=3"]`,
			},
		},
		{
			name:         "vCluster file: wrong type under a sibling-tolerant key",
			yaml:         "controlPlane:\n  backingStore: 5\n",
			wantParseErr: []string{`line 2: controlPlane.backingStore: cannot use "5" as a mapping of keys`},
		},
		{
			name:    "missing required keys are all reported",
			yaml:    "",
			wantErr: []string{"dataDir: required", "clientURL: required", "peerURL: required", "agentURL: required", "tls.caFile: required", "tls.certFile: required", "tls.keyFile: required", "topology.file: required", "ordinal: required"},
		},
		{
			name: "negative durations",
			yaml: withMinimal("controller: {interval: -1s}\nrecovery: {unresponsiveAfter: -2m, learnerStuckAfter: 0s}\nshutdown: {leaveTimeout: -1ns}\n"),
			wantErr: []string{
				`controller.interval "-1s": must be positive`,
				`recovery.unresponsiveAfter "-2m0s": must be positive`,
				`recovery.learnerStuckAfter "0s": must be positive`,
				`shutdown.leaveTimeout "-1ns": must be positive`,
			},
		},
		{
			name:    "client URL must be https",
			yaml:    minimalWithout("clientURL") + "clientURL: http://x:2379\n",
			wantErr: []string{`clientURL "http://x:2379": must be https`},
		},
		{
			name:    "peer URL without port",
			yaml:    minimalWithout("peerURL") + "peerURL: https://x\n",
			wantErr: []string{`peerURL "https://x": must have host:port`},
		},
		{
			name:    "agent URL that does not parse",
			yaml:    minimalWithout("agentURL") + "agentURL: \"https://x:1\\x7f\"\n",
			wantErr: []string{`agentURL "https://x:1\x7f": net/url: invalid control character in URL`},
		},
		{
			name:    "URL with a path",
			yaml:    withMinimal("listenClientURL: https://0.0.0.0:2379/etcd\n"),
			wantErr: []string{`listenClientURL "https://0.0.0.0:2379/etcd": must be https://host:port, without a path or query`},
		},
		{
			name:    "URL with a bad port",
			yaml:    withMinimal("listenPeerURL: https://0.0.0.0:99999\n"),
			wantErr: []string{`listenPeerURL "https://0.0.0.0:99999": port must be 1-65535`},
		},
		{
			name:    "URL with user info",
			yaml:    withMinimal("metricsURL: https://u:p@x:1\n"),
			wantErr: []string{`metricsURL "https://u:p@x:1": must not contain user info`},
		},
		{
			name:    "metrics URL must be http or https",
			yaml:    withMinimal("metricsURL: ftp://x:1\n"),
			wantErr: []string{`metricsURL "ftp://x:1": must be http or https`},
		},
		{
			name: "metrics URL may be https",
			yaml: withMinimal("metricsURL: https://127.0.0.1:9090\n"),
		},
		{
			name: "ordinal derived from the name",
			yaml: minimalWithout("name") + "name: my-vcluster-etcd-12\n",
			check: func(t *testing.T, c Config) {
				if c.Ordinal == nil || *c.Ordinal != 12 || c.OrdinalValue() != 12 {
					t.Errorf("Ordinal = %v, want 12", c.Ordinal)
				}
			},
		},
		{
			name: "name derived from the ordinal",
			yaml: minimalWithout("name") + "ordinal: 3\n",
			check: func(t *testing.T, c Config) {
				if c.Name != "vetcd-3" {
					t.Errorf("Name = %q, want vetcd-3", c.Name)
				}
			},
		},
		{
			name: "name without a numeric suffix and an ordinal",
			yaml: minimalWithout("name") + "name: etcd-a\nordinal: 0\n",
			check: func(t *testing.T, c Config) {
				if c.Name != "etcd-a" || c.OrdinalValue() != 0 {
					t.Errorf("Name %q ordinal %d", c.Name, c.OrdinalValue())
				}
			},
		},
		{
			name:    "name suffix disagrees with the ordinal",
			yaml:    withMinimal("ordinal: 2\n"),
			wantErr: []string{`ordinal 2: name "vetcd-1" ends in -1`},
		},
		{
			name:    "name without suffix and no ordinal",
			yaml:    minimalWithout("name") + "name: etcd\n",
			wantErr: []string{`ordinal: required: name "etcd" does not end in "-N"`},
		},
		{
			name:    "name with a zero-padded suffix is not an ordinal",
			yaml:    minimalWithout("name") + "name: etcd-01\n",
			wantErr: []string{`ordinal: required: name "etcd-01"`},
		},
		{
			name:    "negative ordinal",
			yaml:    minimalWithout("name") + "ordinal: -1\n",
			wantErr: []string{"ordinal -1: must not be negative"},
		},
		{
			name: "snapshotCount 0 means 10000",
			yaml: withMinimal("snapshotCount: 0\n"),
			check: func(t *testing.T, c Config) {
				if c.SnapshotCount != 0 || c.EffectiveSnapshotCount() != 10000 {
					t.Errorf("SnapshotCount %d, effective %d; want 0, 10000", c.SnapshotCount, c.EffectiveSnapshotCount())
				}
			},
		},
		{
			name: "negative snapshotCount means 10000",
			yaml: withMinimal("snapshotCount: -5\n"),
			check: func(t *testing.T, c Config) {
				if c.EffectiveSnapshotCount() != 10000 {
					t.Errorf("effective %d, want 10000", c.EffectiveSnapshotCount())
				}
			},
		},
		{
			name: "positive snapshotCount is used",
			yaml: withMinimal("snapshotCount: 1\n"),
			check: func(t *testing.T, c Config) {
				if c.EffectiveSnapshotCount() != 1 {
					t.Errorf("effective %d, want 1", c.EffectiveSnapshotCount())
				}
			},
		},
		{
			name:    "kubernetes topology without a namespace",
			yaml:    minimalWithout("topology") + "topology:\n  source: kubernetes\n",
			wantErr: []string{`topology.kubernetes.namespace: required: set it or the POD_NAMESPACE environment variable`},
		},
		{
			name:    "kubernetes topology with a file",
			yaml:    minimalWithout("topology") + "topology:\n  source: kubernetes\n  file: t.json\n",
			wantErr: []string{`topology.file "t.json": only for topology.source "static"`},
		},
		{
			name:    "unknown topology source",
			yaml:    minimalWithout("topology") + "topology:\n  source: dns\n",
			wantErr: []string{`topology.source "dns": must be "static" or "kubernetes"`},
		},
		{
			name:    "bad log level",
			yaml:    withMinimal("log: {level: verbose}\n"),
			wantErr: []string{`log.level "verbose": must be debug, info, warn or error`},
		},
		{
			name:    "root data dir",
			yaml:    minimalWithout("dataDir") + "dataDir: /\n",
			wantErr: []string{`dataDir "/": must not be a root directory`},
		},
		{
			name:    "bad extraArgs are reported by Validate",
			yaml:    withMinimal("extraArgs: [--enable-pprof, --quota-bytes=1, --data-dir=/x]\n"),
			wantErr: []string{`extraArgs[1] "--quota-bytes=1": etcd 3.7 has no flag "quota-bytes"`, `extraArgs[2] "--data-dir=/x": --data-dir is owned by vetcd`},
		},
		{
			name:    "bad extraArgs from the embedded section are reported",
			yaml:    withMinimal("controlPlane:\n  backingStore:\n    etcd:\n      embedded:\n        extraArgs: [--wal-dir=/w]\n"),
			wantErr: []string{`extraArgs[0] "--wal-dir=/w": --wal-dir is owned by vetcd`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if !matchErr(t, "Parse", err, tc.wantParseErr) || err != nil {
				return
			}
			err = c.Validate()
			if !matchErr(t, "Validate", err, tc.wantErr) || err != nil {
				return
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// matchErr reports whether err matches want (all substrings present, or
// no error for an empty want), failing the test if not.
func matchErr(t *testing.T, what string, err error, want []string) bool {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("%s: unexpected error:\n%v", what, err)
			return false
		}
		return true
	}
	if err == nil {
		t.Errorf("%s: no error, want one containing %q", what, want)
		return false
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error does not contain %q:\n%v", what, w, err)
		}
	}
	return true
}

func TestParseEmptyDocumentIsDefault(t *testing.T) {
	for _, doc := range []string{"", "\n", "# only a comment\n", "---\n", "~\n"} {
		t.Run(strconv.Quote(doc), func(t *testing.T) {
			c, err := Parse([]byte(doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("got %+v, want Default() %+v", c, Default())
			}
		})
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"enabled", c.IsEnabled(), true},
		{"snapshotCount", c.EffectiveSnapshotCount(), uint64(10000)},
		{"topology.source", c.Topology.Source, "static"},
		{"controller.interval", c.Controller.Interval, time.Second},
		{"recovery.unresponsiveAfter", c.Recovery.UnresponsiveAfter, 2 * time.Minute},
		{"recovery.learnerStuckAfter", c.Recovery.LearnerStuckAfter, 5 * time.Minute},
		{"shutdown.leaveTimeout", c.Shutdown.LeaveTimeout, 30 * time.Second},
		{"log.level", c.Log.Level, "info"},
		{"ordinal unknown", c.OrdinalValue(), -1},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestValidateFillsListenURLs(t *testing.T) {
	c, err := Parse([]byte(withMinimal("listenPeerURL: https://0.0.0.0:2380\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ListenClientURL != c.ClientURL || c.ListenPeerURL != "https://0.0.0.0:2380" {
		t.Errorf("ListenClientURL %q ListenPeerURL %q", c.ListenClientURL, c.ListenPeerURL)
	}
	again := c
	if err := again.Validate(); err != nil || !reflect.DeepEqual(again, c) {
		t.Errorf("second Validate changed the config or failed: %v", err)
	}
}

func TestValidateEmbeddedDisagreement(t *testing.T) {
	c, err := Parse([]byte(withMinimal("controlPlane:\n  backingStore:\n    etcd:\n      embedded:\n        snapshotCount: 7\n")))
	if err != nil {
		t.Fatal(err)
	}
	c.SnapshotCount = 8 // changed in Go after parsing
	err = c.Validate()
	matchErr(t, "Validate", err, []string{"controlPlane.backingStore.etcd.embedded.snapshotCount 7: differs from snapshotCount 8"})
}

func TestMarshalRoundTrip(t *testing.T) {
	full := Default()
	full.Enabled = ptr(false)
	full.MigrateFromDeployedEtcd = true
	full.SnapshotCount = 0
	full.ExtraArgs = []string{"--quota-backend-bytes=1000000", "--enable-pprof"}
	full.Name = "vetcd-2"
	full.Ordinal = ptr(2)
	full.DataDir = "/d/data"
	full.ClientURL = "https://127.0.0.1:2379"
	full.PeerURL = "https://127.0.0.1:2380"
	full.AgentURL = "https://127.0.0.1:2381"
	full.MetricsURL = "http://127.0.0.1:2382"
	full.TLS = TLS{CAFile: "ca.crt", CertFile: "tls.crt", KeyFile: "tls.key"}
	full.Topology.File = "/d/topology.json"
	full.Controller.Interval = 150 * time.Millisecond
	full.Recovery = Recovery{UnresponsiveAfter: 3 * time.Second, LearnerStuckAfter: 90 * time.Second}

	vcluster, err := Parse([]byte(withMinimal("controlPlane:\n  distro: {k8s: {}}\n  backingStore:\n    etcd:\n      embedded:\n        enabled: true\n        snapshotCount: 3\n")))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		c    Config
	}{
		{"defaults", Default()},
		{"zero config", Config{}},
		{"every field", full},
		{"vCluster section", vcluster},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.c.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse(Marshal(c)): %v\n%s", err, data)
			}
			if !reflect.DeepEqual(got, tc.c) {
				t.Errorf("round trip changed the config:\ngot  %+v\nwant %+v\n%s", got, tc.c, data)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		wantErr []string
	}{
		{"valid file", write("ok.yaml", minimal), nil},
		{"missing file", filepath.Join(dir, "missing.yaml"), []string{"missing.yaml"}},
		{"parse error names the file", write("unknown.yaml", withMinimal("bogus: 1\n")), []string{"unknown.yaml", `unknown key "bogus"`}},
		{"validation error names the file", write("invalid.yaml", "dataDir: /d\n"), []string{"invalid.yaml", "clientURL: required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.path)
			matchErr(t, "Load", err, tc.wantErr)
			if err == nil && c.Name != "vetcd-1" {
				t.Errorf("Name = %q", c.Name)
			}
		})
	}
}

func TestApplyExtraArgs(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, ec *embed.Config)
	}{
		{
			name: "int64 flag",
			args: []string{"--quota-backend-bytes=1234"},
			check: func(t *testing.T, ec *embed.Config) {
				if ec.QuotaBackendBytes != 1234 {
					t.Errorf("QuotaBackendBytes = %d", ec.QuotaBackendBytes)
				}
			},
		},
		{
			name: "uint flag with a single dash",
			args: []string{"-heartbeat-interval=50"},
			check: func(t *testing.T, ec *embed.Config) {
				if ec.TickMs != 50 {
					t.Errorf("TickMs = %d", ec.TickMs)
				}
			},
		},
		{
			name: "string flag",
			args: []string{"--auto-compaction-retention=1h", "--auto-compaction-mode=periodic"},
			check: func(t *testing.T, ec *embed.Config) {
				if ec.AutoCompactionRetention != "1h" || ec.AutoCompactionMode != "periodic" {
					t.Errorf("AutoCompactionRetention %q mode %q", ec.AutoCompactionRetention, ec.AutoCompactionMode)
				}
			},
		},
		{
			name: "int flag",
			args: []string{"--max-learners=2"},
			check: func(t *testing.T, ec *embed.Config) {
				if ec.MaxLearners != 2 {
					t.Errorf("MaxLearners = %d", ec.MaxLearners)
				}
			},
		},
		{
			name: "bool flag alone",
			args: []string{"--enable-pprof"},
			check: func(t *testing.T, ec *embed.Config) {
				if !ec.EnablePprof {
					t.Error("EnablePprof = false")
				}
			},
		},
		{
			name: "bool flag set false",
			args: []string{"--strict-reconfig-check=false"},
			check: func(t *testing.T, ec *embed.Config) {
				if ec.StrictReconfigCheck {
					t.Error("StrictReconfigCheck = true")
				}
			},
		},
		{
			name: "duration flag",
			args: []string{"--grpc-keepalive-min-time=7s"},
			check: func(t *testing.T, ec *embed.Config) {
				if ec.GRPCKeepAliveMinTime != 7*time.Second {
					t.Errorf("GRPCKeepAliveMinTime = %v", ec.GRPCKeepAliveMinTime)
				}
			},
		},
		{
			name: "post-processed list and URL flags",
			args: []string{
				"--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
				"--listen-metrics-urls=http://127.0.0.1:9000",
				"--listen-client-http-urls=https://127.0.0.1:9001",
				"--max-concurrent-streams=100",
				"--peer-cert-allowed-cn=etcd",
				"--peer-cert-allowed-hostname=a.example",
				"--client-cert-allowed-hostname=b.example",
				"--cors=https://x.example:443",
				"--host-whitelist=x.example,y.example",
			},
			check: func(t *testing.T, ec *embed.Config) {
				if len(ec.CipherSuites) != 2 || ec.MaxConcurrentStreams != 100 ||
					len(ec.ListenMetricsUrls) != 1 || ec.ListenMetricsUrls[0].Host != "127.0.0.1:9000" ||
					len(ec.ListenClientHttpUrls) != 1 || ec.ListenClientHttpUrls[0].Host != "127.0.0.1:9001" ||
					!slices.Equal(ec.PeerTLSInfo.AllowedCNs, []string{"etcd"}) ||
					!slices.Equal(ec.PeerTLSInfo.AllowedHostnames, []string{"a.example"}) ||
					!slices.Equal(ec.ClientTLSInfo.AllowedHostnames, []string{"b.example"}) ||
					len(ec.CORS) != 1 || len(ec.HostWhitelist) != 2 {
					t.Errorf("post-processing: %+v", ec)
				}
				if _, ok := ec.CORS["https://x.example:443"]; !ok {
					t.Errorf("CORS = %v", ec.CORS)
				}
			},
		},
		{
			name: "feature gate",
			args: []string{"--feature-gates=StopGRPCServiceOnDefrag=true"},
			check: func(t *testing.T, ec *embed.Config) {
				if !ec.ServerFeatureGate.Enabled("StopGRPCServiceOnDefrag") {
					t.Error("feature gate not enabled")
				}
			},
		},
		{
			name: "later entry wins, as on etcd's command line",
			args: []string{"--max-learners=2", "--max-learners=4"},
			check: func(t *testing.T, ec *embed.Config) {
				if ec.MaxLearners != 4 {
					t.Errorf("MaxLearners = %d", ec.MaxLearners)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateExtraArgs(tc.args); err != nil {
				t.Fatalf("ValidateExtraArgs: %v", err)
			}
			ec := embed.NewConfig()
			if err := ApplyExtraArgs(ec, tc.args); err != nil {
				t.Fatalf("ApplyExtraArgs: %v", err)
			}
			tc.check(t, ec)
			for _, arg := range tc.args {
				name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
				if !ec.FlagsExplicitlySet[name] {
					t.Errorf("FlagsExplicitlySet[%q] not set", name)
				}
			}
		})
	}
}

// TestApplyExtraArgsChangesOnlyNamedFields checks that registering etcd's
// flags on the caller's config (which writes every flag default into it)
// leaves no trace: only the named field changes.
func TestApplyExtraArgsChangesOnlyNamedFields(t *testing.T) {
	ec := embed.NewConfig()
	ec.Name = "vetcd-0"
	ec.Dir = "/d"
	ec.ListenMetricsUrls = nil
	ec.ClientTLSInfo.CertFile = "tls.crt"
	ec.ClientTLSInfo.ClientCertAuth = true
	ec.LogLevel = "debug"
	ec.MaxLearners = 3
	ec.SnapshotCount = 42
	ec.DiscoveryCfg.Secure.Cert = "keep"

	want := *ec
	wantSecure := *ec.DiscoveryCfg.Secure
	want.TickMs = 50

	if err := ApplyExtraArgs(ec, []string{"--heartbeat-interval=50"}); err != nil {
		t.Fatal(err)
	}
	want.FlagsExplicitlySet = map[string]bool{"heartbeat-interval": true}
	if !reflect.DeepEqual(*ec, want) {
		t.Errorf("ApplyExtraArgs changed more than TickMs:\ngot  %+v\nwant %+v", *ec, want)
	}
	if *ec.DiscoveryCfg.Secure != wantSecure {
		t.Errorf("discovery TLS config changed: %+v", *ec.DiscoveryCfg.Secure)
	}
}

func TestExtraArgsErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantKind error
		want     []string
	}{
		{
			name:     "unknown flag",
			args:     []string{"--enable-pprof", "--max-learners=2", "--quota-bytes=1"},
			wantKind: ErrUnknownFlag,
			want:     []string{`extraArgs[2] "--quota-bytes=1": etcd 3.7 has no flag "quota-bytes"`},
		},
		{
			name:     "etcdmain's ignored legacy flag is unknown",
			args:     []string{"--snapshot=true"},
			wantKind: ErrUnknownFlag,
			want:     []string{`etcd 3.7 has no flag "snapshot"`},
		},
		{
			name:     "member name",
			args:     []string{"--name=x"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"--name is owned by vetcd: use the name key"},
		},
		{
			name:     "data layout",
			args:     []string{"--data-dir=/x", "--wal-dir=/w"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"--data-dir is owned by vetcd: it manages the data layout", "--wal-dir is owned by vetcd"},
		},
		{
			name:     "cluster membership",
			args:     []string{"--initial-cluster=a=https://a:1", "--initial-cluster-state=existing", "--initial-cluster-token=t"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"--initial-cluster is owned", "--initial-cluster-state is owned", "--initial-cluster-token is owned", "topology"},
		},
		{
			name:     "URLs",
			args:     []string{"--initial-advertise-peer-urls=https://a:1", "--advertise-client-urls=https://a:2", "--listen-peer-urls=https://a:1", "--listen-client-urls=https://a:2"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"--initial-advertise-peer-urls is owned by vetcd: use the clientURL", "--advertise-client-urls", "--listen-peer-urls", "--listen-client-urls"},
		},
		{
			name:     "force new cluster",
			args:     []string{"--force-new-cluster"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"--force-new-cluster is owned by vetcd: it applies it itself, once, under a marker, only on a rebuild"},
		},
		{
			name:     "discovery",
			args:     []string{"--discovery=https://d", "--discovery-srv=x", "--discovery-srv-name=y", "--discovery-endpoints=a:1", "--discovery-token=t", "--discovery-fallback=exit", "--discovery-insecure-transport=false"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"extraArgs[0]", "extraArgs[6]", "membership comes from the topology"},
		},
		{
			name: "TLS",
			args: []string{"--cert-file=a", "--key-file=a", "--trusted-ca-file=a", "--client-cert-auth", "--peer-cert-file=a", "--peer-key-file=a",
				"--peer-trusted-ca-file=a", "--peer-client-cert-auth", "--auto-tls", "--peer-auto-tls", "--client-cert-file=a", "--client-key-file=a",
				"--peer-client-cert-file=a", "--peer-client-key-file=a"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"extraArgs[0]", "extraArgs[13]", "use the tls key"},
		},
		{
			name:     "logging",
			args:     []string{"--logger=zap", "--log-outputs=stderr", "--log-format=json", "--log-level=debug", "--enable-log-rotation", "--log-rotation-config-json={}"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"extraArgs[0]", "extraArgs[5]", "use log.level"},
		},
		{
			name:     "process-wide raft timeouts",
			args:     []string{"--raft-read-timeout=10s", "--raft-write-timeout=10s"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"--raft-read-timeout is not supported", "--raft-write-timeout is not supported", "process-wide"},
		},
		{
			name:     "etcdmain-only flags",
			args:     []string{"--config-file=/etc/etcd.yaml", "--version", "--v2-deprecation=write-only"},
			wantKind: ErrForbiddenFlag,
			want:     []string{"--config-file is not supported", "--version is not supported", "--v2-deprecation is not supported"},
		},
		{
			name:     "value in the next entry",
			args:     []string{"--heartbeat-interval", "50"},
			wantKind: ErrArgSyntax,
			want: []string{
				`extraArgs[0] "--heartbeat-interval": --heartbeat-interval needs a value in the same entry: write "--heartbeat-interval=VALUE"`,
				`extraArgs[1] "50": not a flag`,
			},
		},
		{
			name:     "positional argument",
			args:     []string{"etcd"},
			wantKind: ErrArgSyntax,
			want:     []string{`extraArgs[0] "etcd": not a flag: each entry must be one "--flag=value"`},
		},
		{
			name:     "bare dashes",
			args:     []string{"--", "-", "---x", "--=1"},
			wantKind: ErrArgSyntax,
			want:     []string{`extraArgs[0] "--": not a flag`, `extraArgs[1] "-": not a flag`, `extraArgs[2] "---x": bad flag syntax`, `extraArgs[3] "--=1": bad flag syntax`},
		},
		{
			name:     "invalid value",
			args:     []string{"--heartbeat-interval=fast"},
			wantKind: ErrFlagValue,
			want:     []string{`extraArgs[0] "--heartbeat-interval=fast": invalid value "fast" for --heartbeat-interval: parse error`},
		},
		{
			name:     "invalid feature gate",
			args:     []string{"--feature-gates=NoSuchFeature=true"},
			wantKind: ErrFlagValue,
			want:     []string{`extraArgs[0] "--feature-gates=NoSuchFeature=true"`, "NoSuchFeature"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateExtraArgs(tc.args)
			matchErr(t, "ValidateExtraArgs", err, tc.want)
			if !errors.Is(err, tc.wantKind) {
				t.Errorf("errors.Is(err, %v) = false: %v", tc.wantKind, err)
			}
			var ae *ArgError
			if !errors.As(err, &ae) {
				t.Errorf("error is not an *ArgError: %v", err)
			}

			// ApplyExtraArgs must leave ec exactly as it was.
			ec := embed.NewConfig()
			applyErr := ApplyExtraArgs(ec, tc.args)
			if applyErr == nil || applyErr.Error() != err.Error() {
				t.Errorf("ApplyExtraArgs error = %v, want the ValidateExtraArgs error", applyErr)
			}
			if !reflect.DeepEqual(ec, embed.NewConfig()) {
				t.Errorf("ApplyExtraArgs modified ec on error: %+v", ec)
			}
		})
	}
}

func TestExtraArgsEmpty(t *testing.T) {
	for _, args := range [][]string{nil, {}} {
		if err := ValidateExtraArgs(args); err != nil {
			t.Errorf("ValidateExtraArgs(%q) = %v", args, err)
		}
		ec := embed.NewConfig()
		if err := ApplyExtraArgs(ec, args); err != nil || !reflect.DeepEqual(ec, embed.NewConfig()) {
			t.Errorf("ApplyExtraArgs(%q) = %v, or changed ec", args, err)
		}
	}
}

// TestFlagClassification is in the spirit of etcd's
// TestMatchNewConfigAddFlags: every flag etcd registers is classified, and
// the forbidden list names only flags that exist, so that a rename or
// removal in etcd fails here rather than silently allowing the new name.
func TestFlagClassification(t *testing.T) {
	fs := newFlagSet(embed.NewConfig())
	var allowed, forbidden []string
	fs.VisitAll(func(f *flag.Flag) {
		if _, no := forbiddenFlag(f.Name); no {
			forbidden = append(forbidden, f.Name)
		} else {
			allowed = append(allowed, f.Name)
		}
	})
	t.Logf("allowed (%d): %s", len(allowed), strings.Join(allowed, " "))
	t.Logf("forbidden (%d): %s", len(forbidden), strings.Join(forbidden, " "))

	// Every etcdmain-only flag that newFlagSet adds must be forbidden:
	// they exist only so that they are refused with a reason.
	for _, name := range []string{"initial-cluster-state", "config-file", "version", "v2-deprecation", "discovery-fallback"} {
		if _, no := forbiddenFlag(name); !no {
			t.Errorf("etcdmain flag %q is not forbidden", name)
		}
	}

	// Every name in forbiddenFlag's switch must be a flag etcd has.
	names := forbiddenFlagNames(t)
	if len(names) < 30 {
		t.Fatalf("found only %d names in forbiddenFlag: %q", len(names), names)
	}
	for _, name := range names {
		if fs.Lookup(name) == nil {
			t.Errorf("forbiddenFlag names %q, which etcd %s does not have", name, etcdVersion())
		}
		if _, no := forbiddenFlag(name); !no {
			t.Errorf("forbiddenFlag(%q) = false", name)
		}
	}
	var discovery int
	for _, name := range forbidden {
		if strings.HasPrefix(name, "discovery") {
			discovery++
		}
	}
	if discovery < 5 {
		t.Errorf("only %d discovery flags forbidden; etcd renamed them?", discovery)
	}
	// Allowed flags that the spec relies on.
	for _, name := range []string{"quota-backend-bytes", "heartbeat-interval", "election-timeout", "auto-compaction-retention", "max-learners", "snapshot-count", "feature-gates"} {
		if fs.Lookup(name) == nil || slices.Contains(forbidden, name) {
			t.Errorf("flag %q is missing or forbidden", name)
		}
	}
}

// forbiddenFlagNames returns the string literals of the case clauses in
// forbiddenFlag, read from the source.
func forbiddenFlagNames(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "extraargs.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "forbiddenFlag" {
			return true
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			cc, ok := n.(*ast.CaseClause)
			if !ok {
				return true
			}
			for _, e := range cc.List {
				lit, ok := e.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("forbiddenFlag case is not a string literal: %T", e)
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, s)
			}
			return false
		})
		return false
	})
	return names
}
