package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// MarkerKey is the etcd key that records a kine SQLite migration: its
// progress while it runs, and state "done" afterwards, so that it never
// runs twice. Keys under MarkerPrefix are vetcd's, not user keys.
const (
	MarkerPrefix = "/vetcd/migration/"
	MarkerKey    = MarkerPrefix + "sqlite"
	bumpKey      = MarkerPrefix + "sqlite-revision"
)

// Marker states.
const (
	StateCopying = "copying"
	StateDone    = "done"
)

// maxTTL bounds a migrated lease TTL: it must fit the low 32 bits of the
// deterministic lease ID (etcd itself allows up to 9e9 s).
const maxTTL = 1<<32 - 1

// leaseBase tags the lease IDs a migration grants ("kine" in the high 32
// bits); the low 32 bits are the TTL. The same TTL always gives the same
// lease, so a rerun reuses the leases of the crashed run.
const leaseBase = int64(0x6b696e65) << 32

func leaseID(ttl int64) int64 { return leaseBase | ttl }

// Marker is the JSON value of MarkerKey.
type Marker struct {
	State string `json:"state"`
	// Source is the path of the SQLite file.
	Source string `json:"source"`
	// SourceRevision is kine's revision when the migration started; a
	// resumed run continues only from the same source revision.
	SourceRevision int64 `json:"sourceRevision"`
	// After is the last key written in order (resume point).
	After string `json:"after,omitempty"`
	// Member is the seeded member as name=peerURL (Seed only): a work
	// dir made for another member is not resumed.
	Member string `json:"member,omitempty"`
	// Keys, Bytes and SHA256 describe the verified result (state done).
	Keys   int64  `json:"keys,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Revision is the etcd revision after the migration (state done).
	Revision int64     `json:"revision,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
}

// ReadMarker returns the migration marker of the cluster cli talks to;
// ok is false when there is none.
func ReadMarker(ctx context.Context, cli *clientv3.Client) (m Marker, ok bool, err error) {
	resp, err := cli.Get(ctx, MarkerKey)
	if err != nil {
		return m, false, fmt.Errorf("read migration marker: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return m, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
		return m, false, fmt.Errorf("migration marker %s: %w", MarkerKey, err)
	}
	return m, true, nil
}

func putMarker(ctx context.Context, cli *clientv3.Client, m Marker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, MarkerKey, string(b)); err != nil {
		return fmt.Errorf("write migration marker: %w", err)
	}
	return nil
}

// Progress is told how many keys and value bytes were written so far, and
// the totals when known (0 otherwise). Called from one goroutine.
type Progress func(keys, bytes int64)

// Stats are the count and content hash of a set of live keys.
type Stats struct {
	Keys  int64
	Bytes int64
	// SHA256 is over the keys in byte order: the SHA-256 of the
	// concatenated SHA-256 digests of each key's entry (uvarint length and
	// bytes of the key, of the value, then the TTL as a varint). Digests
	// per entry let a reader that meets the keys in another order (etcd's
	// bbolt file holds them in revision order) keep 32 bytes per key, not
	// the values, until it has sorted them.
	SHA256 string
}

// hasher computes Stats from entries added in key order. Not safe for
// concurrent use.
type hasher struct {
	h, entry hash.Hash
	keys     int64
	bytes    int64
	buf      [binary.MaxVarintLen64]byte
	sum      [sha256.Size]byte
}

func newHasher() *hasher { return &hasher{h: sha256.New(), entry: sha256.New()} }

// digest is the SHA-256 of one entry.
func (h *hasher) digest(key, value []byte, ttl int64) [sha256.Size]byte {
	e := h.entry
	e.Reset()
	e.Write(h.buf[:binary.PutUvarint(h.buf[:], uint64(len(key)))])
	e.Write(key)
	e.Write(h.buf[:binary.PutUvarint(h.buf[:], uint64(len(value)))])
	e.Write(value)
	e.Write(h.buf[:binary.PutVarint(h.buf[:], ttl)])
	e.Sum(h.sum[:0])
	return h.sum
}

func (h *hasher) add(key, value []byte, ttl int64) {
	d := h.digest(key, value, ttl)
	h.addDigest(d, int64(len(value)))
}

// addDigest adds an entry by its digest and value length.
func (h *hasher) addDigest(d [sha256.Size]byte, valueLen int64) {
	h.h.Write(d[:])
	h.keys++
	h.bytes += valueLen
}

func (h *hasher) stats() Stats {
	return Stats{Keys: h.keys, Bytes: h.bytes, SHA256: hex.EncodeToString(h.h.Sum(nil))}
}

// SourceStats reads every live key of the source and returns their count
// and hash.
func (s *Source) SourceStats(ctx context.Context) (Stats, error) {
	h := newHasher()
	err := s.Scan(ctx, "", func(e Entry) error { h.add(e.Key, e.Value, e.TTL); return nil })
	return h.stats(), err
}

// TargetStats reads every key of the cluster outside MarkerPrefix, with the
// granted TTL of its lease, and returns their count and hash. A key whose
// lease is gone (or has another TTL than its ID says) counts with the TTL
// etcd reports, so the hash then differs from the source's.
func TargetStats(ctx context.Context, cli *clientv3.Client) (Stats, error) {
	h := newHasher()
	ttls := map[clientv3.LeaseID]int64{}
	start := "\x00"
	for {
		resp, err := cli.Get(ctx, start, clientv3.WithFromKey(), clientv3.WithLimit(2000))
		if err != nil {
			return Stats{}, fmt.Errorf("read target keys: %w", err)
		}
		for _, kv := range resp.Kvs {
			if bytes.HasPrefix(kv.Key, []byte(MarkerPrefix)) {
				continue
			}
			var ttl int64
			if kv.Lease != 0 {
				id := clientv3.LeaseID(kv.Lease)
				t, ok := ttls[id]
				if !ok {
					r, err := cli.TimeToLive(ctx, id)
					if err != nil {
						return Stats{}, fmt.Errorf("lease %x of %q: %w", kv.Lease, kv.Key, err)
					}
					t = r.GrantedTTL
					ttls[id] = t
				}
				ttl = t
			}
			h.add(kv.Key, kv.Value, ttl)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return h.stats(), nil
}

// writeOptions tunes copyKeys.
type writeOptions struct {
	// Workers is how many txns are in flight at once (default 8).
	Workers int
	// Progress, if set, is told the keys and bytes written.
	Progress Progress
	// Hook, if set, is called after each batch commits with the number of
	// batches committed so far; an error stops the copy. Tests inject a
	// crash here.
	Hook   func(batches int) error
	Logger *zap.Logger
	// BatchOps is the most keys per txn (default batchOps).
	BatchOps int
}

// batch limits: etcd's default --max-txn-ops is 128 and
// --max-request-bytes 1.5 MiB.
const (
	// progressEvery is how many batches pass between two progress
	// records in the marker.
	progressEvery = 8
	batchOps      = 128
	batchBytes    = 1 << 20
)

type batch struct {
	seq  int
	ops  []clientv3.Op
	last string
	keys int64
	size int64
}

// copyKeys writes the source's live keys after m.After into the target,
// in batched txns, granting each distinct TTL's lease first. It records
// progress in the marker every few batches, in order, so that a rerun
// resumes after a key every earlier key of which is written. It returns
// the stats of the keys it wrote (all keys when m.After is "").
func copyKeys(ctx context.Context, cli *clientv3.Client, src *Source, m Marker, o writeOptions) (Stats, error) {
	workers := o.Workers
	if workers <= 0 {
		workers = 8
	}
	maxOps := o.BatchOps
	if maxOps <= 0 || maxOps > batchOps {
		maxOps = batchOps
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := newHasher()
	granted := map[int64]bool{}
	leases := pb.NewLeaseClient(cli.ActiveConnection())

	jobs := make(chan batch)
	results := make(chan batch, workers)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return firstErr
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				if _, err := cli.Txn(ctx).Then(b.ops...).Commit(); err != nil {
					fail(fmt.Errorf("write batch ending at %q: %w", b.last, err))
					return
				}
				b.ops = nil
				select {
				case results <- b:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	// The recorder commits progress in order: batch n is recorded only
	// once batches 0..n are all written.
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		pending := map[int]batch{}
		next, committed := 0, 0
		var keys, size int64
		for b := range results {
			pending[b.seq] = b
			advanced := false
			for {
				nb, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				next++
				keys += nb.keys
				size += nb.size
				m.After = nb.last
				advanced = true
			}
			committed++
			if o.Progress != nil {
				o.Progress(keys, size)
			}
			if advanced && next%progressEvery == 0 {
				if err := putMarker(ctx, cli, m); err != nil {
					fail(err)
					continue
				}
			}
			if o.Hook != nil {
				if err := o.Hook(committed); err != nil {
					fail(err)
				}
			}
		}
		if failed() == nil && len(pending) == 0 {
			// Everything written: the final resume point.
			if err := putMarker(ctx, cli, m); err != nil {
				fail(err)
			}
		}
	}()

	cur := batch{}
	seq := 0
	send := func() error {
		if len(cur.ops) == 0 {
			return nil
		}
		cur.seq = seq
		seq++
		select {
		case jobs <- cur:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur = batch{}
		return nil
	}
	scanErr := src.Scan(ctx, m.After, func(e Entry) error {
		if bytes.HasPrefix(e.Key, []byte(MarkerPrefix)) {
			return fmt.Errorf("source key %q is under %s, which vetcd reserves for its migration marker", e.Key, MarkerPrefix)
		}
		h.add(e.Key, e.Value, e.TTL)
		var opts []clientv3.OpOption
		if e.TTL > 0 {
			if !granted[e.TTL] {
				if err := grant(ctx, cli, leases, e.TTL); err != nil {
					return err
				}
				granted[e.TTL] = true
			}
			opts = append(opts, clientv3.WithLease(clientv3.LeaseID(leaseID(e.TTL))))
		}
		size := int64(len(e.Key) + len(e.Value) + 16)
		if len(cur.ops) >= maxOps || (len(cur.ops) > 0 && cur.size+size > batchBytes) {
			if err := send(); err != nil {
				return err
			}
		}
		cur.ops = append(cur.ops, clientv3.OpPut(string(e.Key), string(e.Value), opts...))
		cur.last = string(e.Key)
		cur.keys++
		cur.size += size
		return nil
	})
	if scanErr == nil {
		scanErr = send()
	}
	close(jobs)
	wg.Wait()
	close(results)
	<-recDone
	if err := failed(); err != nil {
		return Stats{}, err
	}
	if scanErr != nil {
		return Stats{}, scanErr
	}
	return h.stats(), nil
}

// grant creates the lease for ttl with its deterministic ID, or accepts
// the one an earlier run created if its TTL matches.
func grant(ctx context.Context, cli *clientv3.Client, leases pb.LeaseClient, ttl int64) error {
	id := leaseID(ttl)
	_, err := leases.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: ttl})
	if err == nil {
		return nil
	}
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseExist) {
		return fmt.Errorf("grant lease for TTL %ds: %w", ttl, err)
	}
	r, err := cli.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		return fmt.Errorf("lease %x: %w", id, err)
	}
	if r.GrantedTTL != ttl {
		return fmt.Errorf("lease %x exists with TTL %ds, not %ds: the target holds a lease vetcd did not grant", id, r.GrantedTTL, ttl)
	}
	return nil
}
