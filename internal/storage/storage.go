// Package storage keeps snapshots: one small interface and a backend per
// URL scheme (file:// in file.go, s3:// in s3.go on minio-go, oci:// in
// oci.go). Names are slash-separated keys below the URL's location.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"time"
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

// Location is a parsed snapshot URL: where the backend is rooted, and the
// object name (or list prefix) below it.
type Location struct {
	Scheme string
	// Root is the backend's root: a directory for file://, "bucket" or
	// "bucket/prefix" for s3://, "registry[:port]/repository" for oci://.
	Root string
	// Name is the object name or prefix below Root ("" for a bare root);
	// for oci:// it is the tag.
	Name string
	// Query holds backend options (?endpoint=, ?region=, ?insecure=).
	Query url.Values
}

// Parse reads a snapshot URL. The last path element is the object name;
// a URL ending in "/" names a root, as `list` wants. oci:// URLs name the
// snapshot by tag (oci://registry/repo:NAME); without a tag they name the
// repository.
func Parse(raw string) (Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("snapshot URL %q: %w", raw, err)
	}
	if u.User != nil {
		return Location{}, fmt.Errorf("snapshot URL %q: credentials in the URL are not accepted; use the backend's standard environment or config", redact(u))
	}
	loc := Location{Scheme: u.Scheme, Query: u.Query()}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return Location{}, fmt.Errorf("snapshot URL %q: file URLs take an absolute path (file:///path), not host %q", raw, u.Host)
		}
		if !path.IsAbs(u.Path) {
			return Location{}, fmt.Errorf("snapshot URL %q: file URLs take an absolute path (file:///path)", raw)
		}
		loc.Root, loc.Name = splitLast(u.Path)
	case "s3":
		if err := parseS3(u, &loc); err != nil {
			return Location{}, fmt.Errorf("snapshot URL %q: %w", redact(u), err)
		}
	case "oci":
		if err := parseOCI(u, &loc); err != nil {
			return Location{}, fmt.Errorf("snapshot URL %q: %w", redact(u), err)
		}
	case "":
		return Location{}, fmt.Errorf("snapshot URL %q: no scheme; use file:///path, s3://bucket/key or oci://registry/repo:tag", raw)
	default:
		return Location{}, fmt.Errorf("snapshot URL %q: unknown scheme %q; use file:///path, s3://bucket/key or oci://registry/repo:tag", raw, u.Scheme)
	}
	return loc, nil
}

// WithName returns the URL of object name below prefixURL (a URL ending in
// "/"), keeping its options, so what `vetcd status` shows can be passed to
// `snapshot restore`: "s3://b/p/?endpoint=h" and "n" give
// "s3://b/p/n?endpoint=h".
func WithName(prefixURL, name string) string {
	base, query, ok := strings.Cut(prefixURL, "?")
	if !ok {
		return base + name
	}
	return base + name + "?" + query
}

func splitLast(p string) (dir, name string) {
	if strings.HasSuffix(p, "/") {
		return path.Clean(p), ""
	}
	return path.Dir(p), path.Base(p)
}

func redact(u *url.URL) string {
	if u.User == nil {
		return u.String() // nothing to hide; "REDACTED@" would suggest credentials
	}
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

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
