package config

import (
	"strings"
	"testing"
)

func TestRestoreValidate(t *testing.T) {
	tests := []struct {
		name string
		r    Restore
		want string // substring of the error; "" for valid
	}{
		{name: "off", r: Restore{}},
		{name: "file snapshot", r: Restore{From: "file:///backups/vetcd-c1-20261124"}},
		{name: "with identity", r: Restore{From: "file:///b/s1", Decryption: RestoreDecryption{IdentityFile: "/keys/id"}}},
		{name: "prefix, not a snapshot", r: Restore{From: "file:///backups/"}, want: "names a prefix"},
		{name: "unknown scheme", r: Restore{From: "ftp://h/b/s"}, want: "unknown scheme"},
		{name: "relative file path", r: Restore{From: "file://b/s"}, want: "restore.from"},
		{name: "decryption without from", r: Restore{Decryption: RestoreDecryption{PassphraseEnv: "P"}}, want: "set restore.from"},
		{name: "two key sources", r: Restore{From: "file:///b/s", Decryption: RestoreDecryption{PassphraseEnv: "P", IdentityFile: "/k"}}, want: "use one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var msgs []string
			for _, e := range tc.r.validate() {
				msgs = append(msgs, e.Error())
			}
			got := strings.Join(msgs, "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("validate = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRestoreParse(t *testing.T) {
	c, err := Parse([]byte("restore:\n  from: file:///b/s1\n  decryption:\n    passphraseEnv: RESTORE_PASS\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Restore.From != "file:///b/s1" || c.Restore.Decryption.PassphraseEnv != "RESTORE_PASS" {
		t.Fatalf("parsed %+v", c.Restore)
	}
	if _, err := Parse([]byte("restore:\n  form: file:///b/s1\n")); err == nil || !strings.Contains(err.Error(), "form") {
		t.Fatalf("unknown key inside restore: %v", err)
	}
}
