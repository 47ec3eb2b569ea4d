package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/coreos/go-semver/semver"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"

	"github.com/vetcd/vetcd/internal/etcddata"
)

// Seed writes the keys straight into the new member's etcd backend file
// (bbolt), in etcd's mvcc layout, the layout etcd rebuilds its index from,
// with etcddata.Loader: the key bucket maps a revision to a marshalled
// mvccpb.KeyValue, the lease bucket a lease ID to a leasepb.Lease, the
// meta bucket holds the storage version. This is what etcd's own mvcc
// store writes when it applies a Put (mvcc storeTxnWrite.put:
// UnsafeSeqPut of the revision and the KeyValue) and what a lease grant
// persists (lease.persistTo); the raft log, gRPC and
// the per-request apply that a staging etcd added (three quarters of the
// old migration's time) are not needed for a member that has never run.
// The file comes from etcdutl's restore of an empty backend file, which
// wrote the membership, the raft log and snapshot, and the revision bump
// (an empty record at the top revision, marked compacted); the keys go
// below that revision.
//
// Each batch of keys is one bbolt transaction and one etcd revision (the
// keys are its sub-revisions, as in a txn of puts), and the migration
// marker is its last put: a batch and its progress record commit together,
// so after a crash the file holds exactly the batches up to the last
// resume point. Commits are not fsynced (the staging etcd this replaced
// ran with --unsafe-no-fsync); Seed fsyncs the file once, after the last
// batch. A killed process loses nothing the kernel has; what a power loss
// tears either fails to open (the next run starts over) or fails the
// verification against the source (which starts over too).

// Staging batch limits: a commit per 16 MiB or 64k keys (about 14
// commits for 200k keys of 1 KiB).
const (
	stageBatchKeys  = 1 << 16
	stageBatchBytes = 16 << 20
)

// errBadKey marks a source key that cannot be migrated (bad input).
type errBadKey struct{ error }

func (e errBadKey) Unwrap() error { return e.error }

// stageDB is a backend file open for Seed's keys. Not safe for
// concurrent use.
type stageDB struct {
	ld *etcddata.Loader
	db *bolt.DB // ld's file
	// rev is the last main revision written (1: empty, as in etcd).
	rev int64
	// top is the revision of the newest record when it is etcdutl's
	// revision bump (an empty record), 0 otherwise: the keys go below.
	top int64
	// marker is the marker's newest KeyValue, nil before the first batch.
	marker *mvccpb.KeyValue
	// leases are the lease IDs persisted so far.
	leases map[int64]bool
	// flush syncs the file behind the commits (nil: not syncing).
	flush *flusher
}

// openStageDB opens (or creates) a backend file for Seed's keys and finds
// where an earlier run stopped: after its last marker, below etcdutl's
// revision bump. A file that is not one vetcd wrote (or that bbolt
// cannot read) is an error: the caller starts over.
func openStageDB(path string) (*stageDB, error) {
	ld, err := etcddata.OpenLoader(path)
	if err != nil {
		return nil, err
	}
	s := &stageDB{ld: ld, db: ld.Bolt(), rev: 1, leases: map[int64]bool{}}
	err = ld.View(func(r *etcddata.Reader) error {
		ls, err := r.Leases()
		if err != nil {
			return err
		}
		for _, l := range ls {
			s.leases[l.ID] = true
		}
		var bad error
		err = r.Newest(func(rev etcddata.Rev, kv *mvccpb.KeyValue) bool {
			if s.top == 0 && len(kv.Key) == 0 && !rev.Tombstone {
				// etcdutl's revision bump: the keys go below it.
				s.top = rev.Main
				return true
			}
			if string(kv.Key) != MarkerKey || rev.Tombstone {
				bad = fmt.Errorf("the newest entry is %q, not the migration marker", kv.Key)
				return false
			}
			s.rev, s.marker = rev.Main, kv
			return false
		})
		if err == nil {
			err = bad
		}
		return err
	})
	if err != nil {
		ld.Close()
		return nil, fmt.Errorf("backend file %s: %w", path, err)
	}
	return s, nil
}

// Marker returns the marker the last commit wrote.
func (s *stageDB) Marker() (m Marker, ok bool, err error) {
	if s.marker == nil {
		return m, false, nil
	}
	if err := json.Unmarshal(s.marker.Value, &m); err != nil {
		return m, false, fmt.Errorf("migration marker in the backend file: %w", err)
	}
	return m, true, nil
}

// close closes the bbolt file (it does not sync it: flush does).
func (s *stageDB) close() error {
	if s.ld == nil {
		return nil
	}
	err := s.ld.Close()
	s.ld, s.db = nil, nil
	return err
}

// flusher syncs a file in the background while it is written, so that
// the final sync has little left to wait for. Every sync goes through one
// file descriptor: Linux reports a writeback error once per descriptor,
// and a descriptor opened later would not see it.
type flusher struct {
	f        *os.File
	inflight chan struct{}
	mu       sync.Mutex
	err      error
}

func newFlusher(path string) (*flusher, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return &flusher{f: f, inflight: make(chan struct{}, 1)}, nil
}

// kick starts a sync unless one is running.
func (fl *flusher) kick() {
	select {
	case fl.inflight <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-fl.inflight }()
		if err := fl.f.Sync(); err != nil {
			fl.mu.Lock()
			if fl.err == nil {
				fl.err = err
			}
			fl.mu.Unlock()
		}
	}()
}

// finish waits for a running sync, syncs once more and closes the
// descriptor; it returns the first error any sync had.
func (fl *flusher) finish() error {
	fl.inflight <- struct{}{}
	err := fl.f.Sync()
	fl.mu.Lock()
	if fl.err != nil {
		err = fl.err
	}
	fl.mu.Unlock()
	if cerr := fl.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("migrate: sync %s: %w", fl.f.Name(), err)
	}
	return nil
}

// commit writes entries (new keys, in order) and then the marker m, as
// one revision in one bbolt transaction; done also records the storage
// version of the etcd that will run on the data.
func (s *stageDB) commit(entries []Entry, m Marker, done bool) error {
	mv, err := json.Marshal(m)
	if err != nil {
		return err
	}
	rev := s.rev + 1
	if s.top > 0 && rev >= s.top {
		return fmt.Errorf("migrate: revision %d would reach the data dir's bumped revision %d", rev, s.top)
	}
	marker := &mvccpb.KeyValue{Key: []byte(MarkerKey), Value: mv, CreateRevision: rev, ModRevision: rev, Version: 1}
	if s.marker != nil {
		marker.CreateRevision, marker.Version = s.marker.CreateRevision, s.marker.Version+1
	}
	granted := map[int64]bool{}
	err = s.ld.Batch(func(b *etcddata.Batch) error {
		for i, e := range entries {
			var id int64
			if e.TTL > 0 {
				id = leaseID(e.TTL)
				if !s.leases[id] && !granted[id] {
					if err := b.PutLease(&leasepb.Lease{ID: id, TTL: e.TTL}); err != nil {
						return err
					}
					granted[id] = true
				}
			}
			kv := &mvccpb.KeyValue{Key: e.Key, Value: e.Value, CreateRevision: rev, ModRevision: rev, Version: 1, Lease: id}
			if err := b.Put(mvcc.Revision{Main: rev, Sub: int64(i)}, kv); err != nil {
				return err
			}
		}
		if done {
			// This data is for the etcd linked into vetcd (3.7), so that
			// vetcd's upgrade gate never takes it for 3.5 data before
			// etcd first records its version.
			v, err := semver.NewVersion(version.Version)
			if err != nil {
				return fmt.Errorf("etcd's version %q: %w", version.Version, err)
			}
			if err := b.SetStorageVersion(v); err != nil {
				return err
			}
		}
		return b.Put(mvcc.Revision{Main: rev, Sub: int64(len(entries))}, marker)
	})
	if err == nil && s.flush != nil {
		s.flush.kick()
	}
	if err != nil {
		return fmt.Errorf("migrate: write the member's backend file: %w", err)
	}
	s.rev, s.marker = rev, marker
	for id := range granted {
		s.leases[id] = true
	}
	return nil
}

// copyFrom reads the source's live keys after m.After and commits them in
// batches, reading the next batch while the last one is written. It
// returns the stats of the keys it read (all keys when m.After is "").
func (s *stageDB) copyFrom(ctx context.Context, src *Source, m Marker, o Options) (Stats, error) {
	maxKeys := stageBatchKeys
	if o.batchOps > 0 {
		maxKeys = o.batchOps
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := newHasher()
	// A batch's entries live in one buffer, which the writer hands back
	// after the commit (bbolt has copied them into pages by then): the
	// same few buffers carry the whole copy, with no fresh memory to
	// zero and fault in, and little for the GC.
	type batch struct {
		entries []Entry
		buf     []byte
	}
	batches := make(chan batch, 2)
	free := make(chan batch, 4)
	readErr := make(chan error, 1)
	go func() {
		defer close(batches)
		var cur batch
		next := func() {
			select {
			case cur = <-free:
				cur.entries, cur.buf = cur.entries[:0], cur.buf[:0]
				if cap(cur.buf) >= stageBatchBytes {
					return
				}
				cur.buf = make([]byte, 0, stageBatchBytes+64<<10)
			default:
				cur = batch{buf: make([]byte, 0, stageBatchBytes+64<<10)}
			}
		}
		next()
		send := func() error {
			select {
			case batches <- cur:
				next()
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		err := src.Scan(ctx, m.After, func(e Entry) error {
			if bytes.HasPrefix(e.Key, []byte(MarkerPrefix)) {
				return errBadKey{fmt.Errorf("source key %q is under %s, which vetcd reserves for its migration marker", e.Key, MarkerPrefix)}
			}
			n := len(e.Key) + len(e.Value)
			if len(cur.entries) > 0 && (len(cur.entries) >= maxKeys || len(cur.buf)+n > cap(cur.buf)) {
				if err := send(); err != nil {
					return err
				}
			}
			if len(cur.buf)+n > cap(cur.buf) {
				// One entry larger than a batch buffer: a buffer of its own.
				cur.buf = make([]byte, 0, n)
			}
			start := len(cur.buf)
			cur.buf = append(append(cur.buf, e.Key...), e.Value...)
			e.Key = cur.buf[start : start+len(e.Key) : start+len(e.Key)]
			e.Value = cur.buf[start+len(e.Key) : start+n : start+n]
			cur.entries = append(cur.entries, e)
			return nil
		})
		if err == nil && len(cur.entries) > 0 {
			err = send()
		}
		readErr <- err
	}()
	fail := func(err error) (Stats, error) {
		cancel()
		for range batches {
		}
		<-readErr
		return Stats{}, err
	}
	var (
		n           int
		keys, bytes int64
	)
	for bt := range batches {
		b := bt.entries
		// Hashed here, not in the reader: SQLite's side is the longer one.
		for _, e := range b {
			h.add(e.Key, e.Value, e.TTL)
			keys++
			bytes += int64(len(e.Value))
		}
		m.After = string(b[len(b)-1].Key)
		if err := s.commit(b, m, false); err != nil {
			return fail(err)
		}
		select {
		case free <- bt:
		default:
		}
		n++
		if o.Progress != nil {
			o.Progress(keys, bytes)
		}
		if o.Hook != nil {
			if err := o.Hook(n); err != nil {
				return fail(err)
			}
		}
	}
	if err := <-readErr; err != nil {
		return Stats{}, err
	}
	return h.stats(), nil
}

// dbContent is what verifyDB read from an etcd backend file.
type dbContent struct {
	// Stats are over the keys outside MarkerPrefix, with their leases'
	// TTLs.
	Stats
	// Marker is the migration marker's value (ok false: none).
	Marker   Marker
	MarkerOK bool
	// Revision is the newest revision in the file; Compacted the
	// revision it is marked compacted at (0: none).
	Revision, Compacted int64
}

// readDB reads an etcd backend file that no etcd has open, the way etcd
// rebuilds its index from it: every revision in order, the newest one per
// key winning, tombstones deleting (etcddata.Reader.ForEach, which decodes
// the records without copying them). Each key's entry is hashed as it is
// met; the digests are then combined in key order (Stats.SHA256).
func readDB(path string) (c dbContent, err error) {
	type entry struct {
		d [sha256.Size]byte
		n int64
	}
	// The live keys: in seq (keys pointing into the mapped file) while
	// records come in key order, else in live.
	type ordered struct {
		key []byte
		entry
	}
	var (
		seq     []ordered
		inOrder = true
		live    = map[string]entry{}
	)
	var markerVal []byte
	err = etcddata.View(path, func(r *etcddata.Reader) error {
		ttls := map[int64]int64{}
		ls, err := r.Leases()
		if err != nil {
			return err
		}
		for _, l := range ls {
			ttls[l.ID] = l.TTL
		}
		cp, err := r.Compaction()
		if err != nil {
			return err
		}
		if cp.ScheduledOK {
			c.Compacted = cp.Scheduled
		}
		if !r.HasBucket(schema.Key) {
			return errors.New("no key bucket")
		}
		// Two stages, so that hashing runs beside bbolt's walk: this
		// goroutine decodes records in revision order, the other hashes
		// and applies them in the same order. The slices point into the
		// mapped file, valid until this transaction ends, after both.
		type rec struct {
			key, value []byte
			ttl        int64
			tombstone  bool
		}
		recs := make(chan []rec, 4)
		hashed := make(chan struct{})
		var hashErr error
		go func() {
			defer close(hashed)
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			defer func() {
				if r := recover(); r != nil {
					hashErr = fmt.Errorf("reading the mapped file: %v", r)
					for range recs {
					}
				}
			}()
			h := newHasher()
			for rs := range recs {
				for _, r := range rs {
					if inOrder && !r.tombstone && (len(seq) == 0 || bytes.Compare(r.key, seq[len(seq)-1].key) > 0) {
						// Seed writes keys in order, each once: no map
						// and no sort while that holds.
						seq = append(seq, ordered{key: r.key, entry: entry{d: h.digest(r.key, r.value, r.ttl), n: int64(len(r.value))}})
						continue
					}
					if inOrder {
						inOrder = false
						for _, o := range seq {
							live[string(o.key)] = o.entry
						}
						seq = nil
					}
					if r.tombstone {
						delete(live, string(r.key))
						continue
					}
					live[string(r.key)] = entry{d: h.digest(r.key, r.value, r.ttl), n: int64(len(r.value))}
				}
			}
		}()
		batch := make([]rec, 0, 4096)
		err = r.ForEach(func(rev etcddata.Rev, kv etcddata.KV) error {
			c.Revision = max(c.Revision, rev.Main)
			key, value, lease := kv.Key, kv.Value, kv.Lease
			switch {
			case rev.Tombstone:
				if string(key) == MarkerKey {
					markerVal = nil
				}
				batch = append(batch, rec{key: key, tombstone: true})
			case len(key) == 0:
				// etcdutl's revision bump: an empty record.
			case bytes.HasPrefix(key, []byte(MarkerPrefix)):
				if string(key) == MarkerKey {
					markerVal = value
				}
			default:
				var ttl int64
				if lease != 0 {
					t, ok := ttls[lease]
					if !ok {
						return fmt.Errorf("key %q: lease %x has no record", key, lease)
					}
					ttl = t
				}
				batch = append(batch, rec{key: key, value: value, ttl: ttl})
			}
			if len(batch) == cap(batch) {
				recs <- batch
				batch = make([]rec, 0, 4096)
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			recs <- batch
		}
		close(recs)
		<-hashed
		if err == nil {
			err = hashErr
		}
		if markerVal != nil {
			// A copy: the mapping ends with the transaction.
			markerVal = bytes.Clone(markerVal)
		}
		return err
	})
	if err != nil {
		return c, err
	}
	if markerVal != nil {
		if err := json.Unmarshal(markerVal, &c.Marker); err != nil {
			return c, fmt.Errorf("read %s: migration marker: %w", path, err)
		}
		c.MarkerOK = true
	}
	h := newHasher()
	if inOrder {
		for _, o := range seq {
			h.addDigest(o.d, o.n)
		}
	} else {
		keys := make([]string, 0, len(live))
		for k := range live {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			h.addDigest(live[k].d, live[k].n)
		}
	}
	c.Stats = h.stats()
	return c, nil
}

// decodeKV reads the key, value and lease of a marshalled
// mvccpb.KeyValue without copying, as readDB does.
func decodeKV(b []byte) (key, value []byte, lease int64, err error) {
	kv, err := etcddata.DecodeKV(b)
	return kv.Key, kv.Value, kv.Lease, err
}
