package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestMigrateFrom(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		want     string // substring of the error; "" for valid
		path     string
		explicit bool
	}{
		{name: "none", yaml: ""},
		{name: "sqlite file", yaml: "migrateFrom: {sqlite: /var/lib/kine/state.db}", path: "/var/lib/kine/state.db", explicit: true},
		{name: "kine dir", yaml: "migrateFrom: {kineDir: /data/server/db}", path: "/data/server/db/state.db"},
		{name: "both", yaml: "migrateFrom: {sqlite: /a/state.db, kineDir: /b}", want: "use one"},
		{name: "relative", yaml: "migrateFrom: {sqlite: state.db}", want: `migrateFrom.sqlite "state.db": must be an absolute path`},
		{name: "unknown key", yaml: "migrateFrom: {sqlit: /a}", want: `unknown key "migrateFrom.sqlit"`},
		{name: "wrong type", yaml: "migrateFrom: {sqlite: [a]}", want: "migrateFrom.sqlite: cannot use a list as a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			var msgs []string
			if err != nil {
				msgs = append(msgs, err.Error())
			} else {
				for _, e := range c.MigrateFrom.validate() {
					msgs = append(msgs, e.Error())
				}
			}
			got := strings.Join(msgs, "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if tc.want != "" {
				return
			}
			path, explicit := c.MigrateFrom.SQLiteSource()
			if path != tc.path || explicit != tc.explicit {
				t.Fatalf("SQLiteSource = %q, %v; want %q, %v", path, explicit, tc.path, tc.explicit)
			}
			// The section round-trips through Marshal.
			b, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(b)
			if err != nil || !reflect.DeepEqual(back.MigrateFrom, c.MigrateFrom) {
				t.Fatalf("round trip: %+v, %v\n%s", back.MigrateFrom, err, b)
			}
		})
	}
}
