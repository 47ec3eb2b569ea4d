package config

import (
	"strings"
	"testing"
)

func TestSnapshotsValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Snapshots
		want string // substring of the error; "" for valid
	}{
		{name: "off", s: Snapshots{}},
		{name: "cron and file prefix", s: Snapshots{Schedule: "0 */6 * * *", Target: "file:///backups/", Retention: 7}},
		{name: "descriptor", s: Snapshots{Schedule: "@every 30m", Target: "file:///b/"}},
		{name: "bad schedule", s: Snapshots{Schedule: "every hour", Target: "file:///b/"}, want: "snapshots.schedule"},
		{name: "schedule without target", s: Snapshots{Schedule: "@hourly"}, want: "snapshots.target: required"},
		{name: "target without schedule", s: Snapshots{Target: "file:///b/"}, want: "set snapshots.schedule"},
		{name: "target names an object", s: Snapshots{Schedule: "@hourly", Target: "file:///b/x"}, want: "prefix ending in /"},
		{name: "unknown scheme", s: Snapshots{Schedule: "@hourly", Target: "ftp://h/b/"}, want: "unknown scheme"},
		{name: "negative retention", s: Snapshots{Schedule: "@hourly", Target: "file:///b/", Retention: -1}, want: "snapshots.retention"},
		{name: "two passphrase sources", s: Snapshots{Schedule: "@hourly", Target: "file:///b/", Encryption: SnapshotEncryption{PassphraseFile: "f", PassphraseEnv: "E"}}, want: "use one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.s.validate()
			var msgs []string
			for _, e := range errs {
				if e != nil {
					msgs = append(msgs, e.Error())
				}
			}
			got := strings.Join(msgs, "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("validate = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSnapshotsParse(t *testing.T) {
	c, err := Parse([]byte("snapshots:\n  schedule: \"@every 10s\"\n  target: file:///b/\n  retention: 3\n  encryption:\n    passphraseEnv: BACKUP_PASS\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Snapshots.Retention != 3 || c.Snapshots.Encryption.PassphraseEnv != "BACKUP_PASS" {
		t.Fatalf("parsed %+v", c.Snapshots)
	}
	if _, err := Parse([]byte("snapshots:\n  schedul: x\n")); err == nil || !strings.Contains(err.Error(), "schedul") {
		t.Fatalf("unknown key inside snapshots: %v", err)
	}
}
