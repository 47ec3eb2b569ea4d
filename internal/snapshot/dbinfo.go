package snapshot

import (
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"

	"go.etcd.io/etcd/server/v3/storage/schema"

	"github.com/vetcd/vetcd/internal/etcddata"
)

// dbInfo is what a snapshot's manifest needs from the db itself.
type dbInfo struct {
	Revision int64
	Version  string
}

// readDBInfo reads the revision and storage version of an etcd snapshot db
// without scanning it: the revision is the newest key of the key bucket
// (as etcdutl's status reports it), read with one cursor step. A file that
// is not an etcd db fails here.
func readDBInfo(path string) (dbInfo, error) {
	var info dbInfo
	err := etcddata.View(path, func(r *etcddata.Reader) error {
		if !r.HasBucket(schema.Key) || !r.HasBucket(schema.Meta) {
			return errors.New("not an etcd db: no key or meta bucket")
		}
		rev, err := r.Revision()
		if err != nil {
			return fmt.Errorf("not an etcd db: %w", err)
		}
		info.Revision = rev.Main
		v, err := r.StorageVersion()
		if v != nil {
			info.Version = v.String()
		}
		return err
	})
	return info, err
}

// trailerHash hashes a stream that ends in etcd's snapshot checksum (the
// sha256 of everything before it, appended by the server) in one pass: it
// gives the sha256 of the whole stream, as the manifest records it, and
// checks the trailer.
type trailerHash struct {
	body hash.Hash // everything but the last sha256.Size bytes
	hold []byte    // the last bytes seen, not yet in body
}

func newTrailerHash() *trailerHash { return &trailerHash{body: sha256.New()} }

func (t *trailerHash) Write(p []byte) (int, error) {
	n := len(p)
	if len(t.hold)+len(p) <= sha256.Size {
		t.hold = append(t.hold, p...)
		return n, nil
	}
	// Flush what no longer can be part of the trailer.
	spill := len(t.hold) + len(p) - sha256.Size
	if spill <= len(t.hold) {
		t.body.Write(t.hold[:spill])
		t.hold = append(t.hold[:0], t.hold[spill:]...)
		t.hold = append(t.hold, p...)
		return n, nil
	}
	t.body.Write(t.hold)
	t.body.Write(p[:spill-len(t.hold)])
	t.hold = append(t.hold[:0], p[len(p)-sha256.Size:]...)
	return n, nil
}

// sums returns the sha256 of the whole stream and whether the stream's last
// sha256.Size bytes are the sha256 of what came before them.
func (t *trailerHash) sums() (whole []byte, trailerOK bool, err error) {
	bodySum := t.body.Sum(nil)
	trailerOK = len(t.hold) == sha256.Size && string(bodySum) == string(t.hold)
	// Continue a copy of the body's hash state with the trailer: the
	// whole stream's hash without hashing it twice.
	state, err := t.body.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, false, err
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, false, err
	}
	h.Write(t.hold)
	return h.Sum(nil), trailerOK, nil
}
