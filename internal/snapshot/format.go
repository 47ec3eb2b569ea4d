// Package snapshot is vetcd's snapshot format: etcd's own snapshot db
// (what Maintenance.Snapshot streams, restorable by `etcdutl snapshot
// restore`), compressed with zstd, optionally encrypted with age, described
// by a JSON manifest. Encoding and decoding stream: a 1 GB database never
// sits in memory.
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// FormatVersion is the version of the layout this package writes.
const FormatVersion = 1

// Compression and encryption names written in manifests.
const (
	CompressionZstd = "zstd"
	EncryptionNone  = ""
	EncryptionAge   = "age"
)

// Manifest describes a snapshot. It travels beside the data (a second
// object, or an OCI config) and is checked before any byte is trusted.
type Manifest struct {
	FormatVersion int       `json:"formatVersion"`
	EtcdVersion   string    `json:"etcdVersion"`
	ClusterID     string    `json:"clusterID"`
	Revision      int64     `json:"revision"`
	KeyCount      int64     `json:"keyCount"`
	Created       time.Time `json:"created"`
	// SHA256 and Size are of the plain etcd db, before compression and
	// encryption.
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	Compression string `json:"compression"`
	Encryption  string `json:"encryption,omitempty"`
	// Source names the replica the snapshot was taken from.
	Source string `json:"source"`
}

// Errors a caller may want to tell apart.
var (
	ErrChecksum = errors.New("snapshot: checksum mismatch: the data is corrupt or truncated")
	ErrManifest = errors.New("snapshot: invalid manifest")
	ErrKey      = errors.New("snapshot: cannot decrypt: wrong or missing age key")
)

// Validate checks a manifest read from storage.
func (m Manifest) Validate() error {
	switch {
	case m.FormatVersion != FormatVersion:
		return fmt.Errorf("%w: format version %d, this vetcd reads %d", ErrManifest, m.FormatVersion, FormatVersion)
	case m.Compression != CompressionZstd:
		return fmt.Errorf("%w: compression %q, want %q", ErrManifest, m.Compression, CompressionZstd)
	case m.Encryption != EncryptionNone && m.Encryption != EncryptionAge:
		return fmt.Errorf("%w: encryption %q", ErrManifest, m.Encryption)
	case len(m.SHA256) != 64:
		return fmt.Errorf("%w: sha256 %q is not a hex SHA-256", ErrManifest, m.SHA256)
	case m.Size <= 0:
		return fmt.Errorf("%w: size %d", ErrManifest, m.Size)
	}
	if _, err := hex.DecodeString(m.SHA256); err != nil {
		return fmt.Errorf("%w: sha256: %v", ErrManifest, err)
	}
	return nil
}

// ParseManifest decodes and validates a manifest.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	return m, m.Validate()
}

// Encoding says how to write the data.
type Encoding struct {
	// Recipients encrypt with age when not empty.
	Recipients []age.Recipient
	// EtcdStream says src is etcd's snapshot stream, whose last 32 bytes
	// are the sha256 of the rest: Encode checks them.
	EtcdStream bool
}

// Encode streams the plain db from src to dst as zstd (then age, if
// recipients are given), and returns the manifest fields it measured:
// SHA256, Size, Compression, Encryption. The caller fills in the rest.
func Encode(dst io.Writer, src io.Reader, enc Encoding) (Manifest, error) {
	m := Manifest{FormatVersion: FormatVersion, Compression: CompressionZstd}
	w := dst
	var encCloser io.WriteCloser
	if len(enc.Recipients) > 0 {
		aw, err := age.Encrypt(dst, enc.Recipients...)
		if err != nil {
			return m, fmt.Errorf("snapshot: encrypt: %w", err)
		}
		encCloser, w = aw, aw
		m.Encryption = EncryptionAge
	}
	th := newTrailerHash()
	n, err := compressFrames(w, src, th) // hashing never fails
	if err != nil {
		return m, err
	}
	if encCloser != nil {
		if err := encCloser.Close(); err != nil {
			return m, fmt.Errorf("snapshot: encrypt: %w", err)
		}
	}
	if n == 0 {
		return m, errors.New("snapshot: the db is empty")
	}
	sum, trailerOK, err := th.sums()
	if err != nil {
		return m, fmt.Errorf("snapshot: checksum: %w", err)
	}
	if enc.EtcdStream && !trailerOK {
		return m, fmt.Errorf("%w: etcd's checksum at the end of the snapshot stream does not match its content: the stream was cut or corrupted", ErrChecksum)
	}
	m.SHA256 = hex.EncodeToString(sum)
	m.Size = n
	return m, nil
}

// Decoding says how to read the data.
type Decoding struct {
	// Identities decrypt age-encrypted data.
	Identities []age.Identity
}

// Decode returns a reader of the plain db from the stored data src. The
// reader checks size and SHA-256 against the manifest and returns
// ErrChecksum instead of io.EOF when they differ, so a caller that reads to
// the end never accepts corrupt data. Close releases the decompressor.
func Decode(src io.Reader, m Manifest, dec Decoding) (io.ReadCloser, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	r := src
	if m.Encryption == EncryptionAge {
		if len(dec.Identities) == 0 {
			return nil, fmt.Errorf("%w: the snapshot is encrypted; give --age-identity or --age-passphrase-file", ErrKey)
		}
		ar, err := age.Decrypt(src, dec.Identities...)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKey, err)
		}
		r = ar
	}
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", ErrChecksum, err)
	}
	want, _ := hex.DecodeString(m.SHA256)
	h := sha256.New()
	return &verifier{zr: zr, h: h, hw: newAsyncWriter(h), want: want, size: m.Size}, nil
}

type verifier struct {
	zr   *zstd.Decoder
	h    hash.Hash
	hw   *asyncWriter // feeds h on its own goroutine; nil after the end
	want []byte
	end  error // what every Read returns after the end
	size int64
	n    int64
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.end != nil {
		return 0, v.end
	}
	n, err := v.zr.Read(p)
	v.hw.Write(p[:n])
	v.n += int64(n)
	if v.n > v.size {
		return n, fmt.Errorf("%w: more than the %d bytes the manifest names", ErrChecksum, v.size)
	}
	switch {
	case errors.Is(err, io.EOF):
		_ = v.hw.Close()
		v.hw = nil
		v.end = io.EOF
		if v.n != v.size {
			v.end = fmt.Errorf("%w: %d bytes, the manifest names %d", ErrChecksum, v.n, v.size)
		} else if got := v.h.Sum(nil); string(got) != string(v.want) {
			v.end = fmt.Errorf("%w: sha256 %x, the manifest names %x", ErrChecksum, got, v.want)
		}
		return n, v.end
	case err != nil:
		return n, fmt.Errorf("%w: %v", ErrChecksum, err)
	}
	return n, nil
}

func (v *verifier) Close() error {
	if v.hw != nil {
		_ = v.hw.Close()
	}
	v.zr.Close()
	return nil
}
