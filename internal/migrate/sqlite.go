package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"modernc.org/sqlite" // the pure-Go SQLite driver ("sqlite"); no cgo
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors a caller can tell apart (errors.Is). Each is wrapped with the path
// and what was wrong.
var (
	// ErrSourceMissing: the SQLite file does not exist.
	ErrSourceMissing = errors.New("migrate: source not found")
	// ErrNotSQLite: the file is not an SQLite database.
	ErrNotSQLite = errors.New("migrate: not an SQLite database")
	// ErrCorrupt: SQLite reports the file damaged.
	ErrCorrupt = errors.New("migrate: SQLite database is corrupt")
	// ErrNotKine: an SQLite database without kine's table.
	ErrNotKine = errors.New("migrate: not a kine database")
	// ErrSourceBusy: kine is still writing to the database.
	ErrSourceBusy = errors.New("migrate: kine is still writing to the source")
)

// sqliteHeader starts every SQLite 3 database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// kineColumns are the columns of kine's table that a migration reads.
var kineColumns = []string{"id", "name", "deleted", "create_revision", "prev_revision", "lease", "value"}

// Entry is one live key of the source.
type Entry struct {
	Key   []byte
	Value []byte
	// TTL is the lease TTL in seconds; 0 for a key without a lease.
	TTL int64
	// ModRevision is kine's revision (row id) of the entry.
	ModRevision int64
}

// skipName reports kine's own bookkeeping rows, which are not user keys:
// compact_rev_key holds kine's compaction state, compact_rev_key_apiserver
// is kine's stand-in for the apiserver's compact_rev_key (stored as
// "version|value"; in etcd the apiserver keeps that key itself and creates
// it anew), and gap-* rows fill holes in kine's id sequence.
func skipName(name string) bool {
	return name == "compact_rev_key" || name == "compact_rev_key_apiserver" || strings.HasPrefix(name, "gap-")
}

// Source is an open kine SQLite database. It is read-only and not safe for
// concurrent use.
type Source struct {
	path    string
	db      *sql.DB
	created []string
	closed  bool
	// Revision is kine's current revision: the highest row id it ever
	// handed out (including rows compaction deleted since).
	Revision int64
	// CompactRevision is kine's compaction revision (0 if never).
	CompactRevision int64
	// Rows is the number of rows in the kine table.
	Rows int64
	// Size is the size of the database file and its WAL in bytes.
	Size int64
}

// SourceOptions tunes OpenSQLite.
type SourceOptions struct {
	// Quiet is how long the source's revision must stand still before it
	// is read; a change means kine is still writing (ErrSourceBusy). 0
	// means one second (kine polls its table every second); negative skips
	// the wait (tests, benchmarks).
	Quiet time.Duration
}

// mmapBytes is how much of the source SQLite maps into memory instead of
// reading it page by page with pread (a read-only mapping: half the read
// time on a 1.3 GB file). A file that shrinks under the mapping (kine
// vacuuming it: kine must be stopped) faults, which Scan turns into an
// error.
const mmapBytes = 1 << 40

// OpenSQLite opens the kine database at path read-only and checks it: the
// file exists, is an SQLite database with kine's table, and kine is not
// writing to it. It changes nothing on disk (a WAL kine left behind is
// read, not checkpointed). Close it after use.
//
// It does not run SQLite's quick_check, which reads every page of the
// file (1.7 s for 1.3 GB): call Check, before writing anything that cannot
// be undone, or beside the work that can.
func OpenSQLite(ctx context.Context, path string, opts SourceOptions) (*Source, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite source %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("sqlite source %s: %w", path, ErrSourceMissing)
	case err != nil:
		return nil, fmt.Errorf("sqlite source %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("sqlite source %s: %w (not a regular file)", path, ErrNotSQLite)
	}
	if err := checkHeader(abs); err != nil {
		return nil, fmt.Errorf("sqlite source %s: %w", path, err)
	}
	// mode=ro: never write the source. busy_timeout: wait out a write
	// lock kine holds for a moment rather than failing.
	u := url.URL{Scheme: "file", Path: abs, RawQuery: fmt.Sprintf("mode=ro&_pragma=busy_timeout(10000)&_pragma=mmap_size(%d)", int64(mmapBytes))}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("sqlite source %s: %w", path, err)
	}
	// Two connections: Scan and Check may run at once.
	db.SetMaxOpenConns(2)
	s := &Source{path: abs, db: db}
	// Reading a WAL-mode database creates its -wal and -shm files when
	// they are missing (kine is not running); Close removes those again,
	// so that reading leaves the directory as it was.
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Lstat(abs + suffix); errors.Is(err, fs.ErrNotExist) {
			s.created = append(s.created, abs+suffix)
		}
	}
	if err := s.check(ctx, opts); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite source %s: %w", path, err)
	}
	s.Size = fi.Size()
	if wal, err := os.Stat(abs + "-wal"); err == nil {
		s.Size += wal.Size()
	}
	return s, nil
}

// checkHeader reads the first 16 bytes of the file.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, len(sqliteHeader))
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, sqliteHeader) {
		return fmt.Errorf("%w (no SQLite 3 header)", ErrNotSQLite)
	}
	return nil
}

// classify turns SQLite's result codes for a damaged or foreign file into
// this package's errors. The driver returns every SQLite failure as an
// *sqlite.Error carrying the (possibly extended) result code; the low byte
// is the primary code.
func classify(err error) error {
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CORRUPT:
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	case sqlite3.SQLITE_NOTADB:
		return fmt.Errorf("%w: %w", ErrNotSQLite, err)
	}
	return err
}

// sqliteCode is the primary SQLite result code of err, or -1 if err is not
// an error of the SQLite library.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return -1
	}
	return se.Code() & 0xff
}

// isNoSuchTable reports SQLite's "no such table" error. SQLite has no
// result code for it: it is SQLITE_ERROR, the code of every SQL error, so
// after the code its text is matched. modernc.org/sqlite v1.62.0 returns it
// from a query's prepare (e.g. QueryRowContext) as an *sqlite.Error whose
// message is "SQL logic error: no such table: NAME (1)".
// TestIsNoSuchTable produces the real error.
func isNoSuchTable(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_ERROR && strings.Contains(err.Error(), "no such table")
}

func (s *Source) check(ctx context.Context, opts SourceOptions) error {
	rows, err := s.db.QueryContext(ctx, "SELECT name FROM pragma_table_info('kine')")
	if err != nil {
		return classify(err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return classify(err)
		}
		have[c] = true
	}
	if err := rows.Close(); err != nil {
		return classify(err)
	}
	if len(have) == 0 {
		return fmt.Errorf("%w: it has no table named kine", ErrNotKine)
	}
	for _, c := range kineColumns {
		if !have[c] {
			return fmt.Errorf("%w: table kine has no column %q", ErrNotKine, c)
		}
	}
	rev, err := s.revision(ctx)
	if err != nil {
		return err
	}
	quiet := opts.Quiet
	if quiet == 0 {
		quiet = time.Second
	}
	if quiet > 0 {
		t := time.NewTimer(quiet)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if err := s.Unchanged(ctx, rev); err != nil {
			return err
		}
	}
	s.Revision = rev
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM kine").Scan(&s.Rows); err != nil {
		return classify(err)
	}
	var compact sql.NullInt64
	err = s.db.QueryRowContext(ctx, "SELECT prev_revision FROM kine WHERE name = 'compact_rev_key' ORDER BY id DESC LIMIT 1").Scan(&compact)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return classify(err)
	}
	s.CompactRevision = compact.Int64
	return nil
}

// Check runs SQLite's quick_check over the whole file (every page of the
// table, its indexes and the free list) on a connection of its own, so it
// can run while Scan reads. Scan alone reads only the pages that hold the
// migrated rows and the name index; damage elsewhere (another index, a
// free page) would go unnoticed, and a damaged file is refused whole
// (ErrCorrupt).
func (s *Source) Check(ctx context.Context) (err error) {
	// The file is memory-mapped: as in Scan, a fault is an error.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = fmt.Errorf("sqlite source %s: %w: reading the mapped file faulted (%v): was it truncated while read?", s.path, ErrCorrupt, r)
		}
	}()
	var res string
	if err := s.db.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&res); err != nil {
		return fmt.Errorf("sqlite source %s: %w", s.path, classify(err))
	}
	if res != "ok" {
		return fmt.Errorf("sqlite source %s: %w: quick_check: %s", s.path, ErrCorrupt, res)
	}
	return nil
}

// revision is kine's current revision: the highest id in the table or in
// SQLite's AUTOINCREMENT counter, whichever is higher (compaction may have
// deleted the newest rows' predecessors, never the counter).
func (s *Source) revision(ctx context.Context) (int64, error) {
	var maxID sql.NullInt64
	if err := s.db.QueryRowContext(ctx, "SELECT MAX(id) FROM kine").Scan(&maxID); err != nil {
		return 0, classify(err)
	}
	rev := maxID.Int64
	var seq sql.NullInt64
	err := s.db.QueryRowContext(ctx, "SELECT seq FROM sqlite_sequence WHERE name = 'kine'").Scan(&seq)
	// sqlite_sequence exists only once a table with AUTOINCREMENT has been
	// created.
	if err != nil && !errors.Is(err, sql.ErrNoRows) && !isNoSuchTable(err) {
		return 0, classify(err)
	}
	return max(rev, seq.Int64), nil
}

// Unchanged returns ErrSourceBusy if kine's revision is no longer rev.
func (s *Source) Unchanged(ctx context.Context, rev int64) error {
	now, err := s.revision(ctx)
	if err != nil {
		return err
	}
	if now != rev {
		return fmt.Errorf("%w: its revision moved from %d to %d; stop kine (and the apiserver) before migrating", ErrSourceBusy, rev, now)
	}
	return nil
}

// Path is the absolute path of the source file.
func (s *Source) Path() string { return s.path }

// Close closes the database and removes the -wal and -shm files that
// opening it created. Calling it again does nothing.
func (s *Source) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.db.Close()
	for _, p := range s.created {
		if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	return err
}

// Scan calls fn for every live key whose name sorts after `after` (all
// keys for ""), in key (byte) order, reading one consistent snapshot of the
// table. The Entry's Key and Value are valid only during the call (they
// are the driver's buffers): fn copies what it keeps. It stops at the
// first error fn returns.
func (s *Source) Scan(ctx context.Context, after string, fn func(Entry) error) (err error) {
	// The newest row per name from kine's name index (a covering index
	// scan: the row id is in the index), then the row itself by primary
	// key. SQLite compares TEXT with memcmp (BINARY), which is etcd's key
	// order. The subquery's ORDER BY with CROSS JOIN (the subquery stays
	// the outer loop) lets SQLite satisfy the outer ORDER BY from the
	// index order; a plain JOIN sorts every row, values included, in a
	// temporary b-tree first (1.5 s of 3.5 s on 300k rows of 1 KiB).
	// Deleted keys stay in SQLite (a NULL deleted is live, as kine
	// reads it): their rows never cross the driver.
	const q = `SELECT k.id, m.name, k.lease, k.value
		FROM (SELECT name, MAX(id) AS id FROM kine WHERE name > ? GROUP BY name ORDER BY name) AS m
		CROSS JOIN kine AS k ON k.id = m.id
		WHERE coalesce(k.deleted, 0) = 0
		ORDER BY m.name`
	// The source is memory-mapped: a file cut short under the mapping
	// faults; make that this goroutine's panic, and an error.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = fmt.Errorf("sqlite source %s: %w: reading the mapped file faulted (%v): was it truncated while read?", s.path, ErrCorrupt, r)
		}
	}()
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s.readErr(err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	rows, err := tx.QueryContext(ctx, q, after)
	if err != nil {
		return s.readErr(err)
	}
	defer rows.Close()
	var (
		prev  []byte
		first = true
		id    int64
		name  sql.RawBytes
		lease sql.NullInt64
		value sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&id, &name, &lease, &value); err != nil {
			return s.readErr(err)
		}
		if !first && bytes.Compare(name, prev) <= 0 {
			return fmt.Errorf("sqlite source %s: %w: keys out of order (%q after %q)", s.path, ErrCorrupt, name, prev)
		}
		first, prev = false, append(prev[:0], name...)
		key := name[:len(name):len(name)]
		if skipName(string(key)) {
			continue
		}
		if lease.Int64 < 0 || lease.Int64 > maxTTL {
			return errBadKey{fmt.Errorf("key %q: lease %d: not a TTL vetcd can keep (1..%d seconds)", key, lease.Int64, maxTTL)}
		}
		if value == nil {
			value = sql.RawBytes{}
		}
		if err := fn(Entry{Key: key, Value: value[:len(value):len(value)], TTL: lease.Int64, ModRevision: id}); err != nil {
			return err
		}
	}
	return s.readErr(rows.Err())
}

// readErr names the source in an error SQLite gave while reading it.
func (s *Source) readErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("sqlite source %s: %w", s.path, classify(err))
}
