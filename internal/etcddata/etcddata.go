// Package etcddata reads and writes etcd's backend file (member/snap/db)
// while no etcd has it open: the meta bucket's consistent index,
// compactions and storage version, the key bucket's revisions, the lease
// bucket, and the migration's bulk writes. It knows no bucket name, key
// name, revision layout or protobuf field number of its own: every one
// comes from etcd's packages (server/storage/schema, server/storage/mvcc,
// api/mvccpb), and the meta reads and writes are etcd's own functions
// (schema.UnsafeReadConsistentIndex, mvcc.UnsafeReadFinishedCompact,
// schema.UnsafeSetStorageVersion, ...), run on a bbolt transaction seen
// through etcd's backend.UnsafeReadWriter interface. So the layout is
// known once, by etcd, and a new etcd version that changes it changes it
// here too.
//
// It opens the file with bbolt directly, not with etcd's backend.Backend:
// the backend opens read-write (a read would write a commit), ends the
// process on an I/O error (zap Fatal), commits from a goroutine of its
// own where a damaged page panics beyond any recover, and does not write
// bbolt's free list, so that reopening a file it wrote walks every page.
// A reader of data that may be corrupt, and a bulk loader that must turn
// a full disk into an error and resume after a crash, need none of that.
package etcddata

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"time"

	"github.com/coreos/go-semver/semver"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// boltTx is a bbolt transaction seen as etcd's backend.UnsafeReadWriter,
// so that etcd's schema and mvcc functions read and write it. etcd's own
// implementation ends the process on a bbolt error; this one keeps the
// first error for the caller, who fails the transaction with it.
type boltTx struct {
	tx  *bolt.Tx
	err error
}

var _ backend.UnsafeReadWriter = (*boltTx)(nil)

func (t *boltTx) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

// UnsafeRange is etcd's backend range: with no endKey the one key key
// (limit 1), else the keys in [key, endKey), at most limit (0: all).
// A missing bucket holds nothing.
func (t *boltTx) UnsafeRange(b backend.Bucket, key, endKey []byte, limit int64) (keys, vals [][]byte) {
	bk := t.tx.Bucket(b.Name())
	if bk == nil {
		return nil, nil
	}
	if limit <= 0 {
		limit = math.MaxInt64
	}
	match := func(k []byte) bool { return bytes.Compare(k, endKey) < 0 }
	if len(endKey) == 0 {
		match, limit = func(k []byte) bool { return bytes.Equal(k, key) }, 1
	}
	c := bk.Cursor()
	for k, v := c.Seek(key); k != nil && match(k); k, v = c.Next() {
		keys, vals = append(keys, k), append(vals, v)
		if int64(len(keys)) == limit {
			break
		}
	}
	return keys, vals
}

func (t *boltTx) UnsafeForEach(b backend.Bucket, visitor func(k, v []byte) error) error {
	if bk := t.tx.Bucket(b.Name()); bk != nil {
		return bk.ForEach(visitor)
	}
	return nil
}

func (t *boltTx) UnsafeCreateBucket(b backend.Bucket) {
	if _, err := t.tx.CreateBucketIfNotExists(b.Name()); err != nil {
		t.fail(fmt.Errorf("create bucket %s: %w", b, err))
	}
}

func (t *boltTx) UnsafeDeleteBucket(b backend.Bucket) {
	if err := t.tx.DeleteBucket(b.Name()); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
		t.fail(fmt.Errorf("delete bucket %s: %w", b, err))
	}
}

func (t *boltTx) UnsafePut(b backend.Bucket, key, value []byte) { t.put(b, key, value, false) }

// UnsafeSeqPut is a put of keys that only grow: pages are filled to 90%,
// as etcd's batch transaction fills them.
func (t *boltTx) UnsafeSeqPut(b backend.Bucket, key, value []byte) { t.put(b, key, value, true) }

func (t *boltTx) put(b backend.Bucket, key, value []byte, seq bool) {
	bk := t.tx.Bucket(b.Name())
	if bk == nil {
		t.fail(fmt.Errorf("put into bucket %s: no such bucket", b))
		return
	}
	if seq {
		bk.FillPercent = 0.9
	}
	if err := bk.Put(key, value); err != nil {
		t.fail(fmt.Errorf("put into bucket %s: %w", b, err))
	}
}

func (t *boltTx) UnsafeDelete(b backend.Bucket, key []byte) {
	bk := t.tx.Bucket(b.Name())
	if bk == nil {
		return
	}
	if err := bk.Delete(key); err != nil {
		t.fail(fmt.Errorf("delete from bucket %s: %w", b, err))
	}
}

// guard runs one of etcd's functions, which panic on records they cannot
// decode (a revision of the wrong length, a short consistent index),
// and returns such a panic as an error.
func guard(what string, fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %v", what, r)
		}
	}()
	fn()
	return nil
}

// View opens the backend file at path read-only (it never writes it) and
// calls fn with a Reader valid until fn returns. bbolt's panics on a
// damaged file, and faults on a mapping that points past the file's end,
// become errors.
func View(path string, fn func(*Reader) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("read %s: bbolt: %v", path, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error { return fn(newReader(tx)) }); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// Reader reads one transaction of a backend file. The slices it returns
// point into the mapped file: valid until the transaction ends.
type Reader struct {
	t   *boltTx
	dec kvDecoder
}

func newReader(tx *bolt.Tx) *Reader { return &Reader{t: &boltTx{tx: tx}, dec: newKVDecoder()} }

// HasBucket reports whether the file has bucket b (schema.Key, schema.Meta,
// ...): a file that is not etcd's lacks them.
func (r *Reader) HasBucket(b backend.Bucket) bool { return r.t.tx.Bucket(b.Name()) != nil }

// ConsistentIndex returns the raft index (and its term) of the last entry
// etcd applied to this file; 0 if none is recorded (etcd never records 0).
func (r *Reader) ConsistentIndex() (index, term uint64, err error) {
	err = guard("consistent index", func() { index, term = schema.UnsafeReadConsistentIndex(r.t) })
	return index, term, err
}

// Compaction is what the meta bucket records of compactions: the
// revision of the last one scheduled and of the last one finished.
type Compaction struct {
	Scheduled, Finished     int64
	ScheduledOK, FinishedOK bool
}

// Compaction reads the scheduled and finished compaction revisions.
func (r *Reader) Compaction() (c Compaction, err error) {
	err = guard("compaction revisions", func() {
		c.Scheduled, c.ScheduledOK = mvcc.UnsafeReadScheduledCompact(r.t)
		c.Finished, c.FinishedOK = mvcc.UnsafeReadFinishedCompact(r.t)
	})
	return c, err
}

// StorageVersion returns the storage version etcd 3.6 and newer record
// (nil: none, as etcd 3.5 writes). etcd reads one that does not parse as
// none; this returns an error instead, so that nobody takes a damaged
// record for etcd 3.5's data.
func (r *Reader) StorageVersion() (*semver.Version, error) {
	_, vs := r.t.UnsafeRange(schema.Meta, schema.MetaStorageVersionName, nil, 1)
	if len(vs) == 0 {
		return nil, nil
	}
	v := schema.UnsafeReadStorageVersion(r.t)
	if v == nil {
		return nil, fmt.Errorf("storage version %q does not parse", vs[0])
	}
	return v, nil
}

// Leases returns every lease record.
func (r *Reader) Leases() (ls []*leasepb.Lease, err error) {
	err = guard("lease records", func() { ls = schema.MustUnsafeGetAllLeases(r.t) })
	return ls, err
}

// Rev is the revision a key-bucket record is stored under.
type Rev struct {
	mvcc.Revision
	// Tombstone marks a delete: the record holds the deleted key only.
	Tombstone bool
}

// decodeRev reads a key-bucket key with etcd's own decoder, which panics
// on one that is not a revision.
func decodeRev(k []byte) (rev Rev, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("revision key %x: %v", k, r)
		}
	}()
	return Rev{Revision: mvcc.BytesToBucketKey(k).Revision, Tombstone: mvcc.IsTombstone(k)}, nil
}

// KV is a key-bucket record's key, value and lease, pointing into the
// mapped file.
type KV struct {
	Key, Value []byte
	Lease      int64
}

// ForEach calls fn for every record of the key bucket, in revision order:
// the order etcd rebuilds its index in. A missing key bucket has none.
func (r *Reader) ForEach(fn func(Rev, KV) error) error {
	return r.t.UnsafeForEach(schema.Key, func(k, v []byte) error {
		rev, err := decodeRev(k)
		if err != nil {
			return err
		}
		kv, err := r.dec.decode(v)
		if err != nil {
			return fmt.Errorf("revision %x: %w", k, err)
		}
		return fn(rev, kv)
	})
}

// Newest calls fn for the records of the key bucket from the newest back,
// while it returns true.
func (r *Reader) Newest(fn func(Rev, *mvccpb.KeyValue) bool) error {
	bk := r.t.tx.Bucket(schema.Key.Name())
	if bk == nil {
		return nil
	}
	c := bk.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		rev, err := decodeRev(k)
		if err != nil {
			return err
		}
		kv := &mvccpb.KeyValue{}
		if err := proto.Unmarshal(v, kv); err != nil {
			return fmt.Errorf("revision %x: %w", k, err)
		}
		if !fn(rev, kv) {
			return nil
		}
	}
	return nil
}

// Revision returns the revision of the newest record of the key bucket,
// where etcd's store stands after it rebuilt its index (0: no records).
// It does not decode the record.
func (r *Reader) Revision() (mvcc.Revision, error) {
	bk := r.t.tx.Bucket(schema.Key.Name())
	if bk == nil {
		return mvcc.Revision{}, nil
	}
	k, _ := bk.Cursor().Last()
	if k == nil {
		return mvcc.Revision{}, nil
	}
	rev, err := decodeRev(k)
	return rev.Revision, err
}

// Walk reads every page of the key bucket, so that a damaged one shows as
// an error (or a panic that View returns) now, not when etcd meets it.
func (r *Reader) Walk() error {
	return r.t.UnsafeForEach(schema.Key, func(_, _ []byte) error { return nil })
}

// kvDecoder reads a marshalled mvccpb.KeyValue's key, value and lease
// without copying them: the verification of a migration reads every
// record of the file, and proto.Unmarshal would copy each one. The field
// numbers come from mvccpb's generated descriptor.
type kvDecoder struct {
	key, value, lease protowire.Number
}

func newKVDecoder() kvDecoder {
	fields := (&mvccpb.KeyValue{}).ProtoReflect().Descriptor().Fields()
	num := func(name protoreflect.Name) protowire.Number {
		f := fields.ByName(name)
		if f == nil {
			panic("mvccpb.KeyValue has no field " + name)
		}
		return f.Number()
	}
	return kvDecoder{key: num("key"), value: num("value"), lease: num("lease")}
}

func (d kvDecoder) decode(b []byte) (kv KV, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return KV{}, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == d.key && typ == protowire.BytesType:
			kv.Key, n = protowire.ConsumeBytes(b)
		case num == d.value && typ == protowire.BytesType:
			kv.Value, n = protowire.ConsumeBytes(b)
		case num == d.lease && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			kv.Lease = int64(v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return KV{}, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return kv, nil
}

// DecodeKV reads a marshalled mvccpb.KeyValue's key, value and lease
// without copying them.
func DecodeKV(b []byte) (KV, error) { return newKVDecoder().decode(b) }
