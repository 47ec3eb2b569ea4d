package etcddata

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/coreos/go-semver/semver"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"google.golang.org/protobuf/proto"
)

// Loader writes keys into a backend file in bulk, in etcd's mvcc layout:
// what etcd's store writes when it applies a txn of puts
// (storeTxnWrite.put: UnsafeSeqPut of the revision and the marshalled
// KeyValue into schema.Key) and what a lease grant persists
// (schema.MustUnsafePutLease), with no raft log and no index in memory.
// etcd rebuilds its index from these records when it starts. Not safe
// for concurrent use.
type Loader struct {
	db *bolt.DB
	// slabs hold a batch's marshalled records, reused by the next.
	slabs slabs
}

// OpenLoader opens (or creates) the backend file at path for loading and
// makes sure it has etcd's key, lease and meta buckets. Commits are not
// fsynced, nor is the file when it grows: the caller syncs the file once
// (a bulk load that is lost is redone). A file bbolt cannot read is an
// error, never a panic.
func OpenLoader(path string) (l *Loader, err error) {
	// A damaged file can point bbolt outside the mapped file: a fault,
	// made this goroutine's panic, then an error.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil { // bbolt panics on some damaged pages
			err = fmt.Errorf("backend file %s: bbolt: %v", path, r)
			if l != nil {
				l.db.Close()
				l = nil
			}
		}
	}()
	// Map as much as etcd's backend does (10 GiB of address space, not
	// memory): growing the mapping as the file grows remaps it at every
	// doubling, a fifth of the write time.
	// The free list is written with every commit (etcd's backend does
	// not write it, and reads it when it is there): reopening a file
	// without one makes bbolt walk every page in a goroutine of its own,
	// where a page a power loss tore panics beyond any recover.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType,
		InitialMmapSize: int(backend.InitialMmapSize)})
	if err != nil {
		return nil, fmt.Errorf("backend file %s: %w", path, err)
	}
	db.NoSync, db.NoGrowSync = true, true
	l = &Loader{db: db}
	err = l.update(func(t *boltTx) error {
		t.UnsafeCreateBucket(schema.Key) // as mvcc.NewStore does
		schema.UnsafeCreateLeaseBucket(t)
		schema.UnsafeCreateMetaBucket(t)
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("backend file %s: %w", path, err)
	}
	return l, nil
}

// Close closes the file; it does not sync it.
func (l *Loader) Close() error { return l.db.Close() }

// Bolt is the open bbolt file, for tests that write records etcd may
// write and a Loader does not (tombstones, overwrites).
func (l *Loader) Bolt() *bolt.DB { return l.db }

// View calls fn with a Reader of the file as last committed. bbolt's
// panics on a damaged file become errors.
func (l *Loader) View(fn func(*Reader) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v", r)
		}
	}()
	return l.db.View(func(tx *bolt.Tx) error { return fn(newReader(tx)) })
}

func (l *Loader) update(fn func(*boltTx) error) error {
	return l.db.Update(func(tx *bolt.Tx) error {
		t := &boltTx{tx: tx}
		if err := fn(t); err != nil {
			return err
		}
		return t.err
	})
}

// Batch runs fn in one bbolt transaction: what fn puts commits together,
// or not at all if fn (or a put) fails.
func (l *Loader) Batch(fn func(*Batch) error) error {
	// Committed or rolled back, bbolt no longer holds the slices.
	defer l.slabs.reset()
	return l.update(func(t *boltTx) error {
		b := &Batch{t: t, slabs: &l.slabs, slab: l.slabs.take(), revLen: len(mvcc.NewRevBytes())}
		err := fn(b)
		l.slabs.keep(b.slab)
		return err
	})
}

// Batch is one transaction of a Loader.
type Batch struct {
	t      *boltTx
	slabs  *slabs
	slab   []byte
	revLen int // of a revision key, as mvcc.NewRevBytes makes it
}

// Put writes kv at revision rev. Revisions must grow from put to put, as
// etcd's do. The records of a batch share large buffers (bbolt keeps the
// slices until the commit): a few allocations per batch, not two per key.
func (b *Batch) Put(rev mvcc.Revision, kv *mvccpb.KeyValue) error {
	revLen := b.revLen
	n := proto.Size(kv)
	if cap(b.slab)-len(b.slab) < revLen+n {
		b.slabs.keep(b.slab)
		b.slab = b.slabs.grow(revLen + n)
	}
	start := len(b.slab)
	k := mvcc.RevToBytes(rev, b.slab[start:start+revLen])
	d, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b.slab[start+revLen:start+revLen], kv)
	if err != nil {
		return fmt.Errorf("marshal key %q: %w", kv.Key, err)
	}
	if len(d) != n {
		return fmt.Errorf("key %q: marshalled %d bytes, sized %d", kv.Key, len(d), n)
	}
	b.slab = b.slab[:start+revLen+n]
	b.t.UnsafeSeqPut(schema.Key, k[:revLen:revLen], d[:n:n])
	return b.t.err
}

// PutLease writes a lease record, as etcd's lessor persists a grant.
func (b *Batch) PutLease(l *leasepb.Lease) error {
	if err := guard("lease record", func() { schema.MustUnsafePutLease(b.t, l) }); err != nil {
		return err
	}
	return b.t.err
}

// SetStorageVersion records v's major.minor as the data's storage version,
// as etcd 3.6 and newer do once their cluster version is decided.
func (b *Batch) SetStorageVersion(v *semver.Version) error {
	schema.UnsafeSetStorageVersion(b.t, v)
	return b.t.err
}

// Reader reads the batch's transaction, its own puts included.
func (b *Batch) Reader() *Reader { return &Reader{t: b.t, dec: newKVDecoder()} }

// slabs are buffers handed out for one bbolt transaction and reused after
// it ended (bbolt keeps the slices of a Put until then).
type slabs struct {
	free, used [][]byte
}

const slabBytes = 4 << 20

// take returns an empty buffer.
func (p *slabs) take() []byte { return p.grow(0) }

// grow returns an empty buffer of at least n bytes.
func (p *slabs) grow(n int) []byte {
	for i, b := range p.free {
		if cap(b) >= n {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return b[:0]
		}
	}
	return make([]byte, 0, max(slabBytes, n))
}

// keep records a buffer as used by the open transaction.
func (p *slabs) keep(b []byte) {
	if cap(b) > 0 {
		p.used = append(p.used, b)
	}
}

// reset makes every used buffer free again: call after the transaction.
func (p *slabs) reset() {
	p.free = append(p.free, p.used...)
	p.used = p.used[:0]
}
