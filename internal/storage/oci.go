package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/vetcd/vetcd/internal/storage/storageurl"
)

// Media types of a vetcd snapshot stored as an OCI artifact. A registry
// UI or `oras manifest fetch` shows what an artifact is by these, and Get
// refuses any artifact whose config is not ConfigMediaType, so a mistyped
// tag never feeds someone's container image to a restore.
const (
	// ArtifactType is the manifest's artifactType.
	ArtifactType = "application/vnd.vetcd.snapshot.v1"
	// ConfigMediaType is the config blob: the snapshot's JSON manifest.
	ConfigMediaType = "application/vnd.vetcd.snapshot.manifest.v1+json"
	// LayerMediaType is the one layer: etcd's snapshot db, zstd-compressed.
	LayerMediaType = "application/vnd.vetcd.snapshot.db.v1+zstd"
	// LayerMediaTypeAge is the layer when it is also age-encrypted.
	LayerMediaTypeAge = "application/vnd.vetcd.snapshot.db.v1+zstd+age"
)

// Annotations on the OCI manifest, so that a registry listing shows when
// and from which cluster a snapshot was taken without reading the config.
const (
	AnnotationRevision  = "io.vetcd.snapshot.revision"
	AnnotationClusterID = "io.vetcd.snapshot.cluster-id"
)

// Environment variables holding registry credentials. They take precedence
// over the docker config (DOCKER_CONFIG or ~/.docker/config.json) so a
// pod can get them from a Secret without writing a file.
const (
	EnvOCIUsername = "VETCD_OCI_USERNAME"
	EnvOCIPassword = "VETCD_OCI_PASSWORD"
)

const (
	defaultOCITimeout     = 15 * time.Second
	defaultOCIIdleTimeout = 2 * time.Minute
	// maxOCIManifest bounds what is read of an OCI manifest or a vetcd
	// manifest: both are a few hundred bytes.
	maxOCIManifest = 1 << 20
)

// errNotSnapshot is an artifact that is not a vetcd snapshot.
var errNotSnapshot = errors.New("storage: oci: not a vetcd snapshot")

// ociOptionsFromQuery reads the URL options (storageurl.ParseOCIOptions
// checks them) into the backend's options.
func ociOptionsFromQuery(q url.Values) (OCIOptions, error) {
	o, err := storageurl.ParseOCIOptions(q)
	if err != nil {
		return OCIOptions{}, err
	}
	return OCIOptions{PlainHTTP: o.PlainHTTP, CAFile: o.CAFile, Timeout: o.Timeout}, nil
}

func openOCI(ctx context.Context, loc Location) (Backend, error) {
	opts, err := ociOptionsFromQuery(loc.Query)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	user, pass := os.Getenv(EnvOCIUsername), os.Getenv(EnvOCIPassword)
	if (user == "") != (pass == "") {
		return nil, fmt.Errorf("storage: oci: set both %s and %s, or neither (then the docker config is used)", EnvOCIUsername, EnvOCIPassword)
	}
	opts.Username, opts.Password = user, pass
	return NewOCI(ctx, loc.Root, opts)
}

// OCIOptions tunes NewOCI.
type OCIOptions struct {
	// PlainHTTP talks HTTP instead of HTTPS (?insecure=true).
	PlainHTTP bool
	// CAFile is a PEM file of CA certificates trusted for the registry's
	// https certificate besides the system's (?ca=FILE).
	CAFile string
	// Username and Password authenticate to the registry. When both are
	// empty the docker config is read (DOCKER_CONFIG or
	// ~/.docker/config.json, including credential helpers).
	Username, Password string
	// Timeout bounds connecting, the TLS handshake and the first contact
	// (default 15s): an unreachable registry is an error, not a hang.
	Timeout time.Duration
	// IdleTimeout bounds how long a transfer may move no byte (default 2m).
	IdleTimeout time.Duration
	// TempDir spools data objects to learn their digest before the push
	// (default os.TempDir(), i.e. $TMPDIR): it needs room for the largest
	// compressed snapshot.
	TempDir string
}

// OCI stores snapshots in one repository of an OCI registry, one artifact
// per snapshot, tagged with the snapshot's name: the data is the single
// layer, the JSON manifest is the config blob. Backend objects map onto it:
// NAME is the layer, NAME + ManifestSuffix the config.
//
// Put(NAME) only uploads the layer blob and remembers its descriptor in
// this OCI value; Put(NAME + ManifestSuffix) uploads the config and pushes
// the manifest under the tag in one request. So the tag appears only when
// the snapshot is complete, and both Puts must go through the same OCI.
// Deletes remove the manifest (and with it the tag); blobs are left to the
// registry's garbage collection, since another snapshot may share them.
// OCI is safe for concurrent use.
type OCI struct {
	repo    *remote.Repository
	tempDir string

	mu sync.Mutex
	// pending holds layers uploaded by Put(NAME) whose manifest is not
	// pushed yet, by tag.
	pending map[string]ocispec.Descriptor
}

var _ Backend = (*OCI)(nil)

// NewOCI returns a backend for repository ("registry[:port]/path") after
// checking that the registry answers (and accepts the credentials) within
// opts.Timeout, so a wrong URL fails before a snapshot is taken.
func NewOCI(ctx context.Context, repository string, opts OCIOptions) (*OCI, error) {
	ref, err := registry.ParseReference(repository)
	if err != nil || ref.Reference != "" {
		return nil, fmt.Errorf("storage: oci: repository %q: want registry[:port]/path: %v", repository, err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultOCITimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = defaultOCIIdleTimeout
	}
	cred, err := ociCredential(ref.Registry, opts)
	if err != nil {
		return nil, err
	}
	tlsConf, err := ociTLS(opts.CAFile)
	if err != nil {
		return nil, err
	}
	client := &auth.Client{
		Client:     ociHTTPClient(opts.Timeout, opts.IdleTimeout, tlsConf),
		Cache:      auth.NewCache(),
		Credential: cred,
		Header:     http.Header{"User-Agent": {"vetcd"}},
	}
	repo := &remote.Repository{Client: client, Reference: ref, PlainHTTP: opts.PlainHTTP}
	o := &OCI{repo: repo, tempDir: opts.TempDir, pending: map[string]ocispec.Descriptor{}}

	pctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	reg := &remote.Registry{RepositoryOptions: remote.RepositoryOptions{Client: client, Reference: registry.Reference{Registry: ref.Registry}, PlainHTTP: opts.PlainHTTP}}
	if err := reg.Ping(pctx); err != nil {
		return nil, o.wrap("connect", err)
	}
	return o, nil
}

// ociCredential picks the credentials: explicit ones for this registry
// only, else the docker config. They are handed to oras' auth client and
// never logged or put in an error.
func ociCredential(host string, opts OCIOptions) (auth.CredentialFunc, error) {
	if opts.Username != "" || opts.Password != "" {
		return auth.StaticCredential(host, auth.Credential{Username: opts.Username, Password: opts.Password}), nil
	}
	store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("storage: oci: read the docker config for registry credentials: %w", err)
	}
	return credentials.Credential(store), nil
}

// ociTLS trusts the system's CAs plus those in caFile, if given.
func ociTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("storage: oci: ca=%s: %w", caFile, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("storage: oci: ca=%s: no PEM certificate in the file", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// ociHTTPClient bounds connecting by timeout and every read or write by
// idle, so neither an unreachable nor a stalled registry hangs a caller.
func ociHTTPClient(timeout, idle time.Duration, tlsConf *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c, idle: idle}, nil
	}
	tr.TLSHandshakeTimeout = timeout
	if tlsConf != nil {
		tr.TLSClientConfig = tlsConf
	}
	return &http.Client{Transport: tr}
}

// idleConn fails a read or write that moves nothing for idle.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(p)
}

// wrap names the registry and explains the errors a user can act on.
func (o *OCI) wrap(doing string, err error) error {
	var resp *errcode.ErrorResponse
	var nerr net.Error
	var cerr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, ErrNotFound):
		return err
	case o.repo.PlainHTTP && errors.As(err, &resp) && resp.StatusCode == http.StatusBadRequest:
		return fmt.Errorf("storage: oci: %s: registry %s refused a plain-HTTP request; if it serves https, drop ?insecure=true: %w", doing, o.repo.Reference.Registry, err)
	case errors.As(err, &cerr):
		return fmt.Errorf("storage: oci: %s: the certificate of registry %s is not trusted; add ?ca=FILE with its CA: %w", doing, o.repo.Reference.Registry, err)
	case errors.Is(err, auth.ErrBasicCredentialNotFound) ||
		errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden):
		return fmt.Errorf("storage: oci: %s: access denied; give credentials with %s/%s or `docker login %s`: %w",
			doing, EnvOCIUsername, EnvOCIPassword, o.repo.Reference.Registry, err)
	case errors.As(err, &nerr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF):
		hint := " over http"
		if !o.repo.PlainHTTP {
			hint = " over https (for a plain-HTTP registry add ?insecure=true)"
		}
		return fmt.Errorf("storage: oci: %s: registry %s unreachable or not answering%s: %w", doing, o.repo.Reference.Registry, hint, err)
	}
	return fmt.Errorf("storage: oci: %s: %w", doing, err)
}

// ociTag maps an object name to its snapshot's tag, and says whether the
// object is the manifest (config) rather than the data (layer).
func ociTag(name string) (tag string, manifest bool, err error) {
	tag = strings.TrimSuffix(name, ManifestSuffix)
	if !storageurl.ValidTag(tag) {
		return "", false, fmt.Errorf("storage: bad object name %q: an OCI tag is 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", name)
	}
	return tag, tag != name, nil
}

func (o *OCI) ref(tag string) string {
	return o.repo.Reference.Registry + "/" + o.repo.Reference.Repository + ":" + tag
}

// Put implements Backend. The data object is spooled to a temporary file
// (its digest must be known before the upload) and uploaded as a blob; the
// manifest object must be a vetcd snapshot manifest (JSON) and is pushed
// last, with the tag.
func (o *OCI) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	tag, manifest, err := ociTag(name)
	if err != nil {
		return err
	}
	if manifest {
		return o.putManifest(ctx, tag, r)
	}
	desc, err := o.pushLayer(ctx, r, size)
	if err != nil {
		return o.wrap("push the data of "+o.ref(tag), err)
	}
	o.mu.Lock()
	o.pending[tag] = desc
	o.mu.Unlock()
	return nil
}

func (o *OCI) pushLayer(ctx context.Context, r io.Reader, size int64) (ocispec.Descriptor, error) {
	tmp, err := os.CreateTemp(o.tempDir, "vetcd-oci-*")
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("spool: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx, r})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("spool: %w", err)
	}
	if size >= 0 && n != size {
		return ocispec.Descriptor{}, fmt.Errorf("read %d bytes, the caller announced %d", n, size)
	}
	desc := ocispec.Descriptor{
		MediaType: LayerMediaType,
		Digest:    digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)),
		Size:      n,
	}
	if ok, err := o.repo.Blobs().Exists(ctx, desc); err == nil && ok {
		return desc, nil // same bytes already stored
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("spool: %w", err)
	}
	if err := o.repo.Blobs().Push(ctx, desc, tmp); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// ociManifestFields are the fields of a vetcd manifest the artifact
// shows in its annotations and media types. storage cannot import snapshot
// (snapshot imports storage), so the few fields are read here.
type ociManifestFields struct {
	ClusterID  string    `json:"clusterID"`
	Revision   int64     `json:"revision"`
	Created    time.Time `json:"created"`
	Encryption string    `json:"encryption"`
}

func (o *OCI) putManifest(ctx context.Context, tag string, r io.Reader) error {
	raw, err := io.ReadAll(io.LimitReader(ctxReader{ctx, r}, maxOCIManifest+1))
	if err != nil {
		return fmt.Errorf("storage: oci: read the manifest of %s: %w", o.ref(tag), err)
	}
	if len(raw) > maxOCIManifest {
		return fmt.Errorf("storage: oci: the manifest of %s is over %d bytes", o.ref(tag), maxOCIManifest)
	}
	var f ociManifestFields
	if err := json.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("storage: oci: %s%s is not a vetcd snapshot manifest: %w", tag, ManifestSuffix, err)
	}
	o.mu.Lock()
	layer, ok := o.pending[tag]
	o.mu.Unlock()
	if !ok {
		return fmt.Errorf("storage: oci: no data was stored for %s by this backend: store the data first, then the manifest", o.ref(tag))
	}
	switch f.Encryption {
	case "":
		layer.MediaType = LayerMediaType
	case "age":
		layer.MediaType = LayerMediaTypeAge
	default:
		return fmt.Errorf("storage: oci: the manifest of %s names encryption %q; vetcd knows \"\" and \"age\"", o.ref(tag), f.Encryption)
	}
	layer.Annotations = map[string]string{ocispec.AnnotationTitle: tag}

	config := content.NewDescriptorFromBytes(ConfigMediaType, raw)
	if ok, err := o.repo.Blobs().Exists(ctx, config); err != nil || !ok {
		if err := o.repo.Blobs().Push(ctx, config, bytes.NewReader(raw)); err != nil {
			return o.wrap("push the manifest of "+o.ref(tag), err)
		}
	}
	ann := map[string]string{
		AnnotationRevision:  strconv.FormatInt(f.Revision, 10),
		AnnotationClusterID: f.ClusterID,
	}
	if !f.Created.IsZero() {
		ann[ocispec.AnnotationCreated] = f.Created.UTC().Format(time.RFC3339Nano)
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       config,
		Layers:       []ocispec.Descriptor{layer},
		Annotations:  ann,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("storage: oci: %w", err)
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	if err := o.repo.PushReference(ctx, desc, bytes.NewReader(mb), tag); err != nil {
		return o.wrap("push the artifact "+o.ref(tag), err)
	}
	o.mu.Lock()
	delete(o.pending, tag)
	o.mu.Unlock()
	return nil
}

// artifact reads the OCI manifest tagged tag and checks it is a vetcd
// snapshot. A missing tag (or repository) is ErrNotFound.
func (o *OCI) artifact(ctx context.Context, tag string) (ocispec.Descriptor, ocispec.Manifest, error) {
	var m ocispec.Manifest
	desc, rc, err := o.repo.FetchReference(ctx, tag)
	if errors.Is(err, errdef.ErrNotFound) || isNameUnknown(err) {
		return desc, m, fmt.Errorf("%w: %s", ErrNotFound, o.ref(tag))
	}
	if err != nil {
		return desc, m, o.wrap("read "+o.ref(tag), err)
	}
	defer rc.Close()
	if desc.Size > maxOCIManifest {
		return desc, m, fmt.Errorf("storage: oci: %s: manifest of %d bytes is not a vetcd snapshot", o.ref(tag), desc.Size)
	}
	raw, err := content.ReadAll(rc, desc)
	if err != nil {
		return desc, m, o.wrap("read "+o.ref(tag), err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return desc, m, fmt.Errorf("storage: oci: %s: manifest: %w", o.ref(tag), err)
	}
	if m.Config.MediaType != ConfigMediaType || len(m.Layers) != 1 {
		return desc, m, fmt.Errorf("%w: %s (media type %q, config %q, %d layers)",
			errNotSnapshot, o.ref(tag), desc.MediaType, m.Config.MediaType, len(m.Layers))
	}
	return desc, m, nil
}

// isNameUnknown reports a registry's answer for a repository that does not
// exist yet (404 NAME_UNKNOWN).
func isNameUnknown(err error) bool {
	var resp *errcode.ErrorResponse
	return errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound
}

// Get implements Backend. The data streams from the registry and is
// checked against the layer's digest: a short or altered blob is an error
// at the end of the stream, never a silent EOF.
func (o *OCI) Get(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	tag, manifest, err := ociTag(name)
	if err != nil {
		return nil, 0, err
	}
	_, m, err := o.artifact(ctx, tag)
	if err != nil {
		return nil, 0, err
	}
	if manifest {
		if m.Config.Size > maxOCIManifest {
			return nil, 0, fmt.Errorf("storage: oci: %s: config of %d bytes", o.ref(tag), m.Config.Size)
		}
		raw, err := content.FetchAll(ctx, o.repo.Blobs(), m.Config)
		if err != nil {
			return nil, 0, o.wrap("read the manifest of "+o.ref(tag), err)
		}
		return io.NopCloser(bytes.NewReader(raw)), int64(len(raw)), nil
	}
	layer := m.Layers[0]
	if err := layer.Digest.Validate(); err != nil || layer.Digest.Algorithm() != digest.SHA256 {
		return nil, 0, fmt.Errorf("storage: oci: %s: layer digest %q: want sha256", o.ref(tag), layer.Digest)
	}
	rc, err := o.repo.Blobs().Fetch(ctx, layer)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return nil, 0, fmt.Errorf("storage: oci: %s: the data blob %s is missing from the registry", o.ref(tag), layer.Digest)
		}
		return nil, 0, o.wrap("read the data of "+o.ref(tag), err)
	}
	return &verifyReader{rc: rc, h: sha256.New(), want: layer.Digest.Encoded(), size: layer.Size, ref: o.ref(tag)}, layer.Size, nil
}

// verifyReader passes a blob through and, at its end, checks its size and
// sha256.
type verifyReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	n    int64
	want string
	size int64
	ref  string
}

func (v *verifyReader) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.size {
		return n, fmt.Errorf("storage: oci: %s: the data is longer than its %d bytes", v.ref, v.size)
	}
	if err == io.EOF {
		if v.n != v.size {
			return n, fmt.Errorf("storage: oci: %s: the data ended after %d of %d bytes: %w", v.ref, v.n, v.size, io.ErrUnexpectedEOF)
		}
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, fmt.Errorf("storage: oci: %s: the data has sha256 %s, its manifest says %s", v.ref, got, v.want)
		}
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.rc.Close() }

// List implements Backend: every tag whose artifact is a vetcd snapshot
// is listed as two objects, NAME (size of the data) and NAME +
// ManifestSuffix, filtered by prefix, sorted by name; Modified is the
// snapshot's creation time. Tags of other artifacts in the repository are
// not listed. A repository that does not exist yet lists as empty.
func (o *OCI) List(ctx context.Context, prefix string) ([]Object, error) {
	var tags []string
	err := o.repo.Tags(ctx, "", func(page []string) error {
		for _, t := range page {
			if strings.HasPrefix(t, prefix) || strings.HasPrefix(t+ManifestSuffix, prefix) {
				tags = append(tags, t)
			}
		}
		return nil
	})
	if isNameUnknown(err) {
		return nil, nil
	}
	if err != nil {
		return nil, o.wrap("list the tags of "+o.repo.Reference.String(), err)
	}

	// One manifest read per tag, four at a time.
	type result struct {
		objs []Object
		err  error
	}
	results := make([]result, len(tags))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, tag := range tags {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, m, err := o.artifact(ctx, tag)
			if err != nil {
				// Gone since the tag list, or another kind of artifact:
				// not a snapshot, not listed.
				if !errors.Is(err, ErrNotFound) && !errors.Is(err, errNotSnapshot) {
					results[i].err = err
				}
				return
			}
			mod, _ := time.Parse(time.RFC3339Nano, m.Annotations[ocispec.AnnotationCreated])
			for _, obj := range []Object{
				{Name: tag, Size: m.Layers[0].Size, Modified: mod},
				{Name: tag + ManifestSuffix, Size: m.Config.Size, Modified: mod},
			} {
				if strings.HasPrefix(obj.Name, prefix) {
					results[i].objs = append(results[i].objs, obj)
				}
			}
		}()
	}
	wg.Wait()
	var out []Object
	var errs []error
	for _, r := range results {
		out = append(out, r.objs...)
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Object) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete implements Backend. Deleting either object of a snapshot deletes
// its manifest and so its tag: a snapshot without its data or its
// manifest cannot be restored. The second Delete of the pair finds nothing
// and returns ErrNotFound. Only vetcd snapshots are deleted: a tag of
// another artifact is an error, and is left alone.
func (o *OCI) Delete(ctx context.Context, name string) error {
	tag, _, err := ociTag(name)
	if err != nil {
		return err
	}
	o.mu.Lock()
	_, pending := o.pending[tag]
	delete(o.pending, tag)
	o.mu.Unlock()
	desc, _, err := o.artifact(ctx, tag)
	if errors.Is(err, ErrNotFound) && pending {
		return nil // data uploaded, never tagged: nothing to untag
	}
	if err != nil {
		return err
	}
	err = o.repo.Delete(ctx, desc)
	var resp *errcode.ErrorResponse
	switch {
	case errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, o.ref(tag))
	case errors.As(err, &resp) && (resp.StatusCode == http.StatusMethodNotAllowed || slices.ContainsFunc(resp.Errors, func(e errcode.Error) bool { return e.Code == errcode.ErrorCodeUnsupported })):
		return fmt.Errorf("storage: oci: registry %s refuses deletes (HTTP %d); enable them (distribution: storage.delete.enabled) or delete %s with the registry's own tools: %w",
			o.repo.Reference.Registry, resp.StatusCode, o.ref(tag), err)
	case err != nil:
		return o.wrap("delete "+o.ref(tag), err)
	}
	return nil
}
