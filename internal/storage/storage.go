// Package storage keeps snapshots: one small interface and a backend per
// URL scheme (file:// in file.go, s3:// in s3.go on minio-go, oci:// in
// oci.go). Names are slash-separated keys below the URL's location.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vetcd/vetcd/internal/storage/storageurl"
)

// Object is one stored object.
type Object struct {
	Name     string
	Size     int64
	Modified time.Time
}

// Backend stores objects. Implementations are safe for concurrent use. Put
// never leaves a partial object under the final name.
type Backend interface {
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	Get(ctx context.Context, name string) (io.ReadCloser, int64, error)
	List(ctx context.Context, prefix string) ([]Object, error)
	Delete(ctx context.Context, name string) error
}

// ErrNotFound is returned by Get and Delete for a missing object.
var ErrNotFound = errors.New("storage: object not found")

// ManifestSuffix names a snapshot's manifest object: NAME holds the data,
// NAME + ManifestSuffix the manifest. It lives here, not in snapshot,
// because the oci:// backend maps the pair onto one artifact and must tell
// the two apart.
const ManifestSuffix = ".manifest.json"

// Location is a parsed snapshot URL (see storageurl.Location).
type Location = storageurl.Location

// Parse reads a snapshot URL; see storageurl.Parse. Config validation
// calls storageurl directly, so it does not link the backends.
func Parse(raw string) (Location, error) { return storageurl.Parse(raw) }

// WithName returns the URL of object name below prefixURL; see
// storageurl.WithName.
func WithName(prefixURL, name string) string { return storageurl.WithName(prefixURL, name) }

// Open returns the backend for a location.
func Open(ctx context.Context, loc Location) (Backend, error) {
	switch loc.Scheme {
	case "file":
		return NewFile(loc.Root), nil
	case "s3":
		return openS3(ctx, loc)
	case "oci":
		return openOCI(ctx, loc)
	}
	return nil, fmt.Errorf("storage: no backend for scheme %q", loc.Scheme)
}
