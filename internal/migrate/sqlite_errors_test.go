package migrate

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestIsNoSuchTable produces SQLite's real "no such table" error, bare and
// wrapped, and other SQL errors of the same result code that must not
// match, so that a rewording in the driver fails here rather than making
// revision fail on a kine database without sqlite_sequence.
func TestIsNoSuchTable(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "empty.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	queryErr := func(q string) error {
		t.Helper()
		var v any
		err := db.QueryRowContext(t.Context(), q).Scan(&v)
		if err == nil {
			t.Fatalf("%s: no error", q)
		}
		return err
	}
	noTable := queryErr("SELECT seq FROM sqlite_sequence WHERE name = 'kine'")
	t.Logf("no such table: %v", noTable)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no such table", noTable, true},
		{"wrapped", fmt.Errorf("revision: %w", noTable), true},
		{"no such column", queryErr("SELECT nosuchcolumn FROM sqlite_schema"), false},
		{"syntax error", queryErr("SELEC 1"), false},
		{"no rows", sql.ErrNoRows, false},
		{"not from SQLite", errors.New("no such table"), false},
		{"nil", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isNoSuchTable(tc.err); got != tc.want {
				t.Errorf("isNoSuchTable(%v) = %t, want %t", tc.err, got, tc.want)
			}
		})
	}
}

// TestClassify produces SQLite's real errors for a foreign and a damaged
// file and checks that classify maps them by result code.
func TestClassify(t *testing.T) {
	dir := t.TempDir()
	queryErr := func(path, q string) error {
		t.Helper()
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v any
		err = db.QueryRowContext(t.Context(), q).Scan(&v)
		if err == nil {
			t.Fatalf("%s on %s: no error", q, path)
		}
		return err
	}

	foreign := filepath.Join(dir, "text.db")
	write(t, foreign, bytes.Repeat([]byte("not a database\n"), 512))

	damaged := filepath.Join(dir, "damaged.db")
	db, err := sql.Open("sqlite", damaged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t (v BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO t SELECT randomblob(200) FROM n"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := os.ReadFile(damaged)
	if err != nil {
		t.Fatal(err)
	}
	// Keep the header page and the schema; overwrite b-tree pages.
	for i := 4096; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	write(t, damaged, b)

	tests := []struct {
		name string
		err  error
		want error
	}{
		{"not a database", queryErr(foreign, "SELECT 1 FROM sqlite_schema"), ErrNotSQLite},
		{"damaged", queryErr(damaged, "SELECT sum(length(v)) FROM t"), ErrCorrupt},
		{"no such table", queryErr(damaged, "SELECT 1 FROM nosuchtable"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			if !errors.Is(got, tc.err) {
				t.Errorf("classify(%v) = %v: lost the original error", tc.err, got)
			}
			for _, kind := range []error{ErrNotSQLite, ErrCorrupt} {
				if errors.Is(got, kind) != (kind == tc.want) {
					t.Errorf("classify(%v) = %v: errors.Is(%v) = %t", tc.err, got, kind, errors.Is(got, kind))
				}
			}
		})
	}
}
