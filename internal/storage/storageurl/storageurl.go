// Package storageurl reads snapshot URLs (file://, s3://, oci://) and
// their options. It is a leaf: config validation parses and checks a URL
// here without linking the backends (minio-go's client, oras's remote
// registry), which live in package storage and open what this package
// parsed.
package storageurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
	"oras.land/oras-go/v2/registry"
)

// DefaultS3Endpoint is AWS itself, used when the URL names no endpoint.
const DefaultS3Endpoint = "s3.amazonaws.com"

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

// s3Option reports whether k is a query key s3:// URLs accept. Anything
// else is an error, so a typo (?endpont=) is not silently sent to AWS.
func s3Option(k string) bool {
	switch k {
	case "endpoint", "region", "insecure", "tls", "ca", "path-style":
		return true
	}
	return false
}

// S3Options are an s3:// URL's options: how the backend reaches the
// endpoint. Credentials are never part of them.
type S3Options struct {
	// Endpoint is host[:port] ("" for DefaultS3Endpoint).
	Endpoint string
	// Insecure selects plain http instead of https.
	Insecure bool
	// Region is the bucket's region ("" asks the service).
	Region string
	// PathStyle addresses buckets as endpoint/bucket/key.
	PathStyle bool
	// CAFile is a PEM bundle of extra CAs trusted for https.
	CAFile string
}

// parseS3 fills loc from s3://bucket/prefix/name?endpoint=&region=&….
// Root is "bucket" or "bucket/prefix"; Name is the last element (empty
// when the URL ends in "/"). It checks the URL's shape and options only;
// storage.Open reaches the endpoint.
func parseS3(u *url.URL, loc *Location) error {
	if u.Opaque != "" || u.Host == "" {
		return errors.New("s3 URLs name a bucket: s3://bucket/prefix/name")
	}
	if u.Port() != "" {
		return fmt.Errorf("s3 URLs name a bucket, not host:port %q; give the endpoint as ?endpoint=%s", u.Host, u.Host)
	}
	if err := s3utils.CheckValidBucketNameStrict(u.Host); err != nil {
		return fmt.Errorf("bucket %q: %w", u.Host, err)
	}
	if u.Fragment != "" {
		return fmt.Errorf("s3 URLs take no fragment (#%s)", u.Fragment)
	}
	key := strings.TrimPrefix(u.Path, "/")
	if key != "" {
		for _, seg := range strings.Split(strings.TrimSuffix(key, "/"), "/") {
			if seg == "" || seg == "." || seg == ".." {
				return fmt.Errorf("key %q: empty, \".\" and \"..\" path elements are not allowed", key)
			}
		}
	}
	if _, err := ParseS3Options(u.Query()); err != nil {
		return err
	}
	var prefix string
	switch {
	case key == "" || strings.HasSuffix(key, "/"):
		prefix, loc.Name = strings.TrimSuffix(key, "/"), ""
	default:
		prefix, loc.Name = path.Dir(key), path.Base(key)
		if prefix == "." {
			prefix = ""
		}
	}
	loc.Root = u.Host
	if prefix != "" {
		loc.Root += "/" + prefix
	}
	return nil
}

// ParseS3Options reads an s3:// URL's options, refusing unknown keys,
// repeated keys and contradictions. The storage package turns them into
// its backend config.
func ParseS3Options(q url.Values) (S3Options, error) {
	var c S3Options
	for k, v := range q {
		if !s3Option(k) {
			return c, fmt.Errorf("unknown option %q; s3 URLs take ?endpoint=, ?region=, ?insecure=, ?tls=, ?ca= and ?path-style=", k)
		}
		if len(v) != 1 {
			return c, fmt.Errorf("option %q is given %d times", k, len(v))
		}
	}
	boolOpt := func(k string) (val, set bool, err error) {
		if !q.Has(k) {
			return false, false, nil
		}
		b, err := strconv.ParseBool(q.Get(k))
		if err != nil {
			return false, false, fmt.Errorf("option %s=%q: want true or false", k, q.Get(k))
		}
		return b, true, nil
	}
	insecure, insecureSet, err := boolOpt("insecure")
	if err != nil {
		return c, err
	}
	useTLS, tlsSet, err := boolOpt("tls")
	if err != nil {
		return c, err
	}
	pathStyle, pathStyleSet, err := boolOpt("path-style")
	if err != nil {
		return c, err
	}
	if insecureSet && tlsSet && insecure == useTLS {
		return c, fmt.Errorf("options insecure=%t and tls=%t contradict each other", insecure, useTLS)
	}
	c.Insecure = insecure || (tlsSet && !useTLS)

	ep := q.Get("endpoint")
	switch {
	case strings.HasPrefix(ep, "http://"):
		if (insecureSet && !insecure) || (tlsSet && useTLS) {
			return c, fmt.Errorf("endpoint %q is plain http but the URL asks for TLS", ep)
		}
		ep, c.Insecure = strings.TrimPrefix(ep, "http://"), true
	case strings.HasPrefix(ep, "https://"):
		if c.Insecure {
			return c, fmt.Errorf("endpoint %q is https but the URL asks for plain http", ep)
		}
		ep = strings.TrimPrefix(ep, "https://")
	case strings.Contains(ep, "://"):
		return c, fmt.Errorf("endpoint %q: give host:port (with ?insecure=true for plain http)", ep)
	}
	ep = strings.TrimSuffix(ep, "/")
	if q.Has("endpoint") {
		if ep == "" || strings.ContainsAny(ep, "/?#@ ") {
			return c, fmt.Errorf("endpoint %q: give host:port", q.Get("endpoint"))
		}
		if _, port, err := net.SplitHostPort(ep); err == nil {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return c, fmt.Errorf("endpoint %q: bad port %q", ep, port)
			}
		}
	}
	c.Endpoint = ep
	c.Region = q.Get("region")
	c.CAFile = q.Get("ca")
	if q.Has("ca") && c.CAFile == "" {
		return c, errors.New("option ca is empty; give a PEM file: ?ca=/path/ca.pem")
	}
	if c.CAFile != "" && c.Insecure {
		return c, errors.New("option ca is for https; it makes no sense with plain http")
	}
	// AWS itself takes virtual-hosted requests; any other endpoint gets
	// path style unless the URL says otherwise.
	c.PathStyle = c.Endpoint != "" && c.Endpoint != DefaultS3Endpoint
	if pathStyleSet {
		c.PathStyle = pathStyle
	}
	return c, nil
}

// OCIOptions are an oci:// URL's options.
type OCIOptions struct {
	// PlainHTTP talks HTTP instead of HTTPS (?insecure=true).
	PlainHTTP bool
	// CAFile is a PEM file of CA certificates trusted for the registry
	// (?ca=FILE).
	CAFile string
	// Timeout bounds connecting and the first contact (?timeout=; 0: the
	// backend's default).
	Timeout time.Duration
}

// ociTagRegexp is the OCI distribution spec's tag grammar.
var ociTagRegexp = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// ValidTag reports whether tag follows the OCI distribution spec's tag
// grammar.
func ValidTag(tag string) bool { return ociTagRegexp.MatchString(tag) }

// parseOCI fills loc from oci://registry[:port]/repository[:tag]. Root is
// registry/repository, Name the tag; a URL with no tag, an empty tag
// ("repo:") or a trailing "/" names the repository as a whole, as `list`
// and a scheduled snapshots target want.
func parseOCI(u *url.URL, loc *Location) error {
	const form = "use oci://registry[:port]/repository:tag"
	if u.Host == "" {
		return fmt.Errorf("no registry; %s", form)
	}
	if u.Opaque != "" || u.Fragment != "" || u.RawFragment != "" {
		return fmt.Errorf("malformed; %s", form)
	}
	p := strings.TrimPrefix(u.Path, "/")
	if i := strings.Index(p, "@"); i >= 0 {
		return fmt.Errorf("digest reference %q: snapshots are named by tag; %s", p[i:], form)
	}
	p = strings.TrimSuffix(p, "/")
	repo, tag := p, ""
	if i := strings.LastIndex(p, ":"); i >= 0 && !strings.Contains(p[i:], "/") {
		repo, tag = p[:i], p[i+1:]
	}
	ref := registry.Reference{Registry: u.Host, Repository: repo, Reference: tag}
	if err := ref.ValidateRegistry(); err != nil {
		return fmt.Errorf("registry %q: %w", u.Host, err)
	}
	if repo == "" {
		return fmt.Errorf("no repository; %s", form)
	}
	if err := ref.ValidateRepository(); err != nil {
		return fmt.Errorf("repository %q: lower-case letters, digits and separators only: %w", repo, err)
	}
	if tag != "" && !ValidTag(tag) {
		return fmt.Errorf("tag %q: a tag is 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", tag)
	}
	if _, err := ParseOCIOptions(u.Query()); err != nil {
		return err
	}
	loc.Root = u.Host + "/" + repo
	loc.Name = tag
	return nil
}

// ParseOCIOptions reads an oci:// URL's options: insecure=true (plain HTTP),
// ca=FILE (a private CA for https) and timeout=DURATION (connect and
// ping). Unknown options are errors.
func ParseOCIOptions(q url.Values) (OCIOptions, error) {
	var o OCIOptions
	for k, v := range q {
		if len(v) != 1 {
			return o, fmt.Errorf("option %q given %d times", k, len(v))
		}
		switch k {
		case "insecure":
			b, err := strconv.ParseBool(v[0])
			if err != nil {
				return o, fmt.Errorf("insecure=%q: want true or false", v[0])
			}
			o.PlainHTTP = b
		case "timeout":
			d, err := time.ParseDuration(v[0])
			if err != nil || d <= 0 {
				return o, fmt.Errorf("timeout=%q: want a positive duration such as 30s", v[0])
			}
			o.Timeout = d
		case "ca":
			if v[0] == "" {
				return o, errors.New("ca=: name a PEM file with the registry's CA certificate")
			}
			o.CAFile = v[0]
		default:
			return o, fmt.Errorf("unknown option %q (oci:// URLs take insecure=true, ca=FILE and timeout=DURATION)", k)
		}
	}
	if o.PlainHTTP && o.CAFile != "" {
		return o, errors.New("ca= is for https and insecure=true is plain HTTP: use one")
	}
	return o, nil
}
