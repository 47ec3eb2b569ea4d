package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/testtools/testregistry"
)

func TestParseOCI(t *testing.T) {
	tests := []struct {
		in         string
		root, name string
		err        string
	}{
		{in: "oci://127.0.0.1:5000/vetcd/snaps:nightly-1?insecure=true", root: "127.0.0.1:5000/vetcd/snaps", name: "nightly-1"},
		{in: "oci://registry.example.com/team/etcd/backups:v1.2_x", root: "registry.example.com/team/etcd/backups", name: "v1.2_x"},
		{in: "oci://ghcr.io/org/snaps:nightly-?timeout=5s", root: "ghcr.io/org/snaps", name: "nightly-"},
		{in: "oci://localhost:5000/snaps", root: "localhost:5000/snaps", name: ""},
		{in: "oci://localhost:5000/snaps:", root: "localhost:5000/snaps", name: ""},
		{in: "oci://localhost:5000/snaps/", root: "localhost:5000/snaps", name: ""},
		{in: "oci://localhost:5000/snaps:" + strings.Repeat("a", 128), root: "localhost:5000/snaps", name: strings.Repeat("a", 128)},
		{in: "oci://localhost:5000/snaps:" + strings.Repeat("a", 129), err: "a tag is 1-128"},
		{in: "oci://localhost:5000/snaps@sha256:" + strings.Repeat("ab", 32), err: "digest reference"},
		{in: "oci://localhost:5000/snaps:t@sha256:" + strings.Repeat("ab", 32), err: "digest reference"},
		{in: "oci:///snaps:t", err: "no registry"},
		{in: "oci://localhost:5000", err: "no repository"},
		{in: "oci://localhost:5000/:t", err: "no repository"},
		{in: "oci://localhost:5000/Snaps:t", err: `repository "Snaps"`},
		{in: "oci://localhost:5000/snaps:-t", err: `tag "-t"`},
		{in: "oci://localhost:5000/snaps:a/b", err: "repository"},
		{in: "oci://localhost:5000/snaps:t?insecure=maybe", err: `insecure="maybe"`},
		{in: "oci://localhost:5000/snaps:t?timeout=-1s", err: `timeout="-1s"`},
		{in: "oci://localhost:5000/snaps:t?region=x", err: `unknown option "region"`},
		{in: "oci://localhost:5000/snaps:t?insecure=true&insecure=false", err: `"insecure" given 2 times`},
		{in: "oci://localhost:5000/snaps:t?ca=", err: "ca=: name a PEM file"},
		{in: "oci://localhost:5000/snaps:t?ca=/etc/ca.pem&insecure=true", err: "use one"},
		{in: "oci://localhost:5000/snaps:t?ca=/etc/ca.pem", root: "localhost:5000/snaps", name: "t"},
		{in: "oci://bob:hunter2@localhost:5000/snaps:t", err: "credentials in the URL"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			loc, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse(%q) = %+v, %v; want an error containing %q", tc.in, loc, err, tc.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if loc.Scheme != "oci" || loc.Root != tc.root || loc.Name != tc.name {
				t.Fatalf("Parse(%q) = %+v; want root %q name %q", tc.in, loc, tc.root, tc.name)
			}
		})
	}
}

// ociHermetic keeps the machine's docker config and env credentials out of
// a test.
func ociHermetic(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv(EnvOCIUsername, "")
	t.Setenv(EnvOCIPassword, "")
}

func ociOpenURL(t *testing.T, raw string) (Location, Backend) {
	t.Helper()
	loc, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, loc)
	if err != nil {
		t.Fatalf("open %s: %v", raw, err)
	}
	return loc, b
}

func ociTestManifest(t *testing.T, encryption string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"formatVersion": 1, "clusterID": "c0ffee", "revision": 4242, "keyCount": 7,
		"created": time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC), "sha256": strings.Repeat("0", 64),
		"size": 1, "compression": "zstd", "encryption": encryption,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ociPutSnapshot stores data and manifest the way snapshot.Create does: the
// data through a pipe of unknown size, then the manifest.
func ociPutSnapshot(t *testing.T, b Backend, name string, data, manifest []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, bytes.NewReader(data))
		pw.CloseWithError(err)
	}()
	if err := b.Put(ctx, name, pr, -1); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
	if err := b.Put(ctx, name+ManifestSuffix, bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		t.Fatalf("put %s: %v", name+ManifestSuffix, err)
	}
}

func ociReadAll(t *testing.T, b Backend, name string) ([]byte, int64) {
	t.Helper()
	rc, size, err := b.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return got, size
}

// fetchOCIManifest reads the artifact's OCI manifest straight from the
// registry, to check what other OCI tools see.
func fetchOCIManifest(t *testing.T, repo, tag string) ocispec.Manifest {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+repo[:strings.Index(repo, "/")]+"/v2/"+repo[strings.Index(repo, "/")+1:]+"/manifests/"+tag, nil)
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s:%s: %s", repo, tag, resp.Status)
	}
	var m ocispec.Manifest
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOCIRoundTrip(t *testing.T) {
	ociHermetic(t)
	reg := testregistry.Start(t, testregistry.Options{})
	loc, b := ociOpenURL(t, "oci://"+reg.Host+"/vetcd/snaps?insecure=true")
	ctx := context.Background()

	// A repository nobody pushed to yet lists empty and has no objects.
	if objs, err := b.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("list of a new repository: %v %v", objs, err)
	}
	if _, _, err := b.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get from a new repository: %v, want ErrNotFound", err)
	}

	data := make([]byte, 20<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	const name = "snap-1"

	// Data alone: uploaded, but no tag, nothing listed, nothing to get.
	if err := b.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if objs, err := b.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("a snapshot without its manifest is listed: %v %v", objs, err)
	}
	if _, _, err := b.Get(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a snapshot without its manifest can be read: %v", err)
	}
	manifest := ociTestManifest(t, "")
	if err := b.Put(ctx, name+ManifestSuffix, bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		t.Fatal(err)
	}

	got, size := ociReadAll(t, b, name)
	if size != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("data: %d bytes (announced %d), equal %v; want the %d bytes put", len(got), size, bytes.Equal(got, data), len(data))
	}
	gotM, size := ociReadAll(t, b, name+ManifestSuffix)
	if size != int64(len(manifest)) || !bytes.Equal(gotM, manifest) {
		t.Fatalf("manifest: %q (size %d), want %q", gotM, size, manifest)
	}

	// What other OCI tools see: one artifact, typed, annotated.
	m := fetchOCIManifest(t, loc.Root, name)
	if m.ArtifactType != ArtifactType || m.Config.MediaType != ConfigMediaType || len(m.Layers) != 1 ||
		m.Layers[0].MediaType != LayerMediaType || m.Layers[0].Size != int64(len(data)) ||
		m.Layers[0].Annotations[ocispec.AnnotationTitle] != name ||
		m.Annotations[ocispec.AnnotationCreated] != "2026-05-01T12:30:00Z" ||
		m.Annotations[AnnotationRevision] != "4242" || m.Annotations[AnnotationClusterID] != "c0ffee" {
		t.Fatalf("OCI manifest: %+v", m)
	}

	// An encrypted snapshot's layer says so; a second name lists apart.
	ociPutSnapshot(t, b, "other-1", []byte("age-encrypted bytes"), ociTestManifest(t, "age"))
	if m := fetchOCIManifest(t, loc.Root, "other-1"); m.Layers[0].MediaType != LayerMediaTypeAge {
		t.Fatalf("encrypted layer media type %q, want %q", m.Layers[0].MediaType, LayerMediaTypeAge)
	}
	objs, err := b.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Object{
		{Name: "other-1", Size: 19}, {Name: "other-1" + ManifestSuffix, Size: int64(len(ociTestManifest(t, "age")))},
		{Name: name, Size: int64(len(data))}, {Name: name + ManifestSuffix, Size: int64(len(manifest))},
	}
	if len(objs) != len(want) {
		t.Fatalf("list: %+v, want %+v", objs, want)
	}
	created := time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC)
	for i := range want {
		if objs[i].Name != want[i].Name || objs[i].Size != want[i].Size || !objs[i].Modified.Equal(created) {
			t.Fatalf("list[%d] = %+v, want %+v at %s", i, objs[i], want[i], created)
		}
	}
	for prefix, names := range map[string][]string{
		"snap":                     {name, name + ManifestSuffix},
		"snap-1.manifest":          {name + ManifestSuffix},
		"other-1" + ManifestSuffix: {"other-1" + ManifestSuffix},
		"x":                        nil,
	} {
		objs, err := b.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		var gotNames []string
		for _, o := range objs {
			gotNames = append(gotNames, o.Name)
		}
		if fmt.Sprint(gotNames) != fmt.Sprint(names) {
			t.Fatalf("list %q: %v, want %v", prefix, gotNames, names)
		}
	}

	// Delete as snapshot.Delete does: manifest, then data (already gone).
	if err := b.Delete(ctx, name+ManifestSuffix); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of the data after its manifest: %v, want ErrNotFound", err)
	}
	for _, n := range []string{name, name + ManifestSuffix} {
		if _, _, err := b.Get(ctx, n); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get %s after delete: %v, want ErrNotFound", n, err)
		}
	}
	if objs, err := b.List(ctx, ""); err != nil || len(objs) != 2 || objs[0].Name != "other-1" {
		t.Fatalf("list after delete: %+v %v", objs, err)
	}
	// Deleting the data object alone takes the whole snapshot.
	if err := b.Delete(ctx, "other-1"); err != nil {
		t.Fatal(err)
	}
	if objs, err := b.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("list after deleting everything: %+v %v", objs, err)
	}
	if err := b.Delete(ctx, "other-1"+ManifestSuffix); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}

// Bad input is refused with an error naming it, and tags nothing.
func TestOCIRefusesBadInput(t *testing.T) {
	ociHermetic(t)
	reg := testregistry.Start(t, testregistry.Options{})
	_, b := ociOpenURL(t, "oci://"+reg.Host+"/vetcd/snaps:ignored?insecure=true")
	ctx := context.Background()
	tests := []struct {
		name string
		put  func() error
		want string
	}{
		{"manifest without data", func() error {
			return b.Put(ctx, "lonely"+ManifestSuffix, bytes.NewReader(ociTestManifest(t, "")), -1)
		}, "no data was stored"},
		{"manifest that is not JSON", func() error {
			if err := b.Put(ctx, "garbled", strings.NewReader("data"), 4); err != nil {
				return err
			}
			return b.Put(ctx, "garbled"+ManifestSuffix, strings.NewReader("{not json"), -1)
		}, "not a vetcd snapshot manifest"},
		{"unknown encryption", func() error {
			if err := b.Put(ctx, "weird", strings.NewReader("data"), 4); err != nil {
				return err
			}
			return b.Put(ctx, "weird"+ManifestSuffix, bytes.NewReader(ociTestManifest(t, "rot13")), -1)
		}, `encryption "rot13"`},
		{"name that is no tag", func() error {
			return b.Put(ctx, "a/b", strings.NewReader("data"), 4)
		}, `bad object name "a/b"`},
		{"short data", func() error {
			return b.Put(ctx, "short", strings.NewReader("data"), 5)
		}, "announced 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.put()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if objs, err := b.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("bad input tagged something: %+v %v", objs, err)
	}
}

// Another kind of artifact under a tag is neither listed, nor read as a
// snapshot, nor deleted.
func TestOCILeavesOtherArtifactsAlone(t *testing.T) {
	ociHermetic(t)
	reg := testregistry.Start(t, testregistry.Options{})
	ctx := context.Background()
	repo, err := remote.NewRepository(reg.Host + "/vetcd/snaps")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	mem := memory.New()
	layer, err := oras.PushBytes(ctx, mem, "text/plain", []byte("an app image"))
	if err != nil {
		t.Fatal(err)
	}
	desc, err := oras.PackManifest(ctx, mem, oras.PackManifestVersion1_1, "application/vnd.example.app", oras.PackManifestOptions{Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	if err := mem.Tag(ctx, desc, "latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := oras.Copy(ctx, mem, "latest", repo, "latest", oras.DefaultCopyOptions); err != nil {
		t.Fatal(err)
	}

	_, b := ociOpenURL(t, "oci://"+reg.Host+"/vetcd/snaps?insecure=true")
	ociPutSnapshot(t, b, "snap", []byte("db"), ociTestManifest(t, ""))
	objs, err := b.List(ctx, "")
	if err != nil || len(objs) != 2 || objs[0].Name != "snap" {
		t.Fatalf("list: %+v %v; want only the snapshot", objs, err)
	}
	if _, _, err := b.Get(ctx, "latest"); err == nil || !strings.Contains(err.Error(), "not a vetcd snapshot") {
		t.Fatalf("get of an app image: %v", err)
	}
	if err := b.Delete(ctx, "latest"); err == nil || !strings.Contains(err.Error(), "not a vetcd snapshot") {
		t.Fatalf("delete of an app image: %v", err)
	}
	if _, err := repo.Resolve(ctx, "latest"); err != nil {
		t.Fatalf("the app image is gone: %v", err)
	}
}

// A blob altered in the registry's storage is caught at the end of Get's
// stream, not handed over as good data.
func TestOCIGetDetectsCorruptData(t *testing.T) {
	ociHermetic(t)
	reg := testregistry.Start(t, testregistry.Options{})
	loc, b := ociOpenURL(t, "oci://"+reg.Host+"/vetcd/snaps?insecure=true")
	data := bytes.Repeat([]byte("etcd"), 64<<10)
	ociPutSnapshot(t, b, "snap", data, ociTestManifest(t, ""))
	sum := sha256.Sum256(data)
	hexSum := fmt.Sprintf("%x", sum)
	blob := filepath.Join(reg.Dir, "docker", "registry", "v2", "blobs", "sha256", hexSum[:2], hexSum, "data")
	if err := os.WriteFile(blob, append(bytes.Repeat([]byte("etcd"), 64<<10-1), []byte("ETCD")...), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, _, err := b.Get(context.Background(), "snap")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("reading an altered blob of %s: %v, want a checksum error", loc.Root, err)
	}
}

func TestOCIRegistryRefusingDeletes(t *testing.T) {
	ociHermetic(t)
	reg := testregistry.Start(t, testregistry.Options{NoDelete: true})
	_, b := ociOpenURL(t, "oci://"+reg.Host+"/vetcd/snaps?insecure=true")
	ociPutSnapshot(t, b, "snap", []byte("db"), ociTestManifest(t, ""))
	err := b.Delete(context.Background(), "snap"+ManifestSuffix)
	if err == nil || !strings.Contains(err.Error(), "refuses deletes") || !strings.Contains(err.Error(), reg.Host) {
		t.Fatalf("delete on a registry without deletes: %v", err)
	}
	if objs, err := b.List(context.Background(), ""); err != nil || len(objs) != 2 {
		t.Fatalf("the snapshot should still be listed: %+v %v", objs, err)
	}
}

// An unreachable or silent registry is an error naming it within the
// timeout, never a hang.
func TestOCIUnreachable(t *testing.T) {
	ociHermetic(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() { // accept, read, never answer
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { silent.Close() })

	plain := testregistry.Start(t, testregistry.Options{})
	tests := []struct {
		name, url, want string
	}{
		{"closed port", "oci://" + closedAddr + "/snaps:x?insecure=true&timeout=2s", "registry " + closedAddr + " unreachable"},
		{"silent server", "oci://" + silent.Addr().String() + "/snaps:x?insecure=true&timeout=1s", "registry " + silent.Addr().String() + " unreachable"},
		{"https to a plain-HTTP registry", "oci://" + plain.Host + "/snaps:x?timeout=2s", "?insecure=true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loc, err := Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			_, err = Open(ctx, loc)
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open %s: %v; want an error containing %q", tc.url, err, tc.want)
			}
			if took > 10*time.Second {
				t.Fatalf("open %s took %s; the timeout is a few seconds", tc.url, took)
			}
		})
	}
}

// Credentials come from VETCD_OCI_USERNAME/PASSWORD or the docker config,
// and never show in an error.
func TestOCICredentials(t *testing.T) {
	const user, pass = "backup", "s3cr3t-pa55"
	reg := testregistry.Start(t, testregistry.Options{Username: user, Password: pass})
	url := "oci://" + reg.Host + "/vetcd/snaps?insecure=true"
	loc, err := Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	dockerConfig := func(u, p string) string {
		dir := t.TempDir()
		auth := base64.StdEncoding.EncodeToString([]byte(u + ":" + p))
		conf := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, auth)
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	tests := []struct {
		name         string
		env          map[string]string
		want         string // "" means it works
		dockerConfig string
	}{
		{name: "none", want: "access denied"},
		{name: "env", env: map[string]string{EnvOCIUsername: user, EnvOCIPassword: pass}},
		{name: "env with a wrong password", env: map[string]string{EnvOCIUsername: user, EnvOCIPassword: "wrong-" + pass}, want: "access denied"},
		{name: "env without a password", env: map[string]string{EnvOCIUsername: user}, want: EnvOCIPassword},
		{name: "docker config", dockerConfig: dockerConfig(user, pass)},
		{name: "docker config with a wrong password", dockerConfig: dockerConfig(user, "wrong-"+pass), want: "access denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ociHermetic(t)
			if tc.dockerConfig != "" {
				t.Setenv("DOCKER_CONFIG", tc.dockerConfig)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b, err := Open(ctx, loc)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("open: %v; want an error containing %q", err, tc.want)
				}
				if strings.Contains(err.Error(), pass) {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			name := strings.ReplaceAll(tc.name, " ", "-")
			ociPutSnapshot(t, b, name, []byte("db bytes"), ociTestManifest(t, ""))
			if got, _ := ociReadAll(t, b, name); string(got) != "db bytes" {
				t.Fatalf("read back %q", got)
			}
			if err := b.Delete(ctx, name+ManifestSuffix); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// stallingProxy forwards TCP to addr until stall is called; from then on
// it moves no more bytes, like a registry that hangs mid-request.
func stallingProxy(t *testing.T, addr string) (host string, stall func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stalled := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-stalled:
				<-done // hold the connection open, silent
				return
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	var once bool
	return l.Addr().String(), func() {
		if !once {
			once = true
			close(stalled)
		}
	}
}

// A registry that stops answering in the middle of the work is an error
// after IdleTimeout, not a hang.
func TestOCIStalledRegistry(t *testing.T) {
	ociHermetic(t)
	reg := testregistry.Start(t, testregistry.Options{})
	host, stall := stallingProxy(t, reg.Host)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := NewOCI(ctx, host+"/vetcd/snaps", OCIOptions{PlainHTTP: true, Timeout: 2 * time.Second, IdleTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ociPutSnapshot(t, b, "snap", bytes.Repeat([]byte("x"), 1<<20), ociTestManifest(t, ""))
	stall()
	start := time.Now()
	_, _, err = b.Get(ctx, "snap")
	if err == nil || !strings.Contains(err.Error(), "registry "+host+" unreachable or not answering") {
		t.Fatalf("get from a stalled registry: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("get from a stalled registry took %s; the idle timeout is 1s", took)
	}
}

// An https registry: its certificate is checked, a private CA is trusted
// with ?ca=FILE, and a bad ca= is named.
func TestOCITLS(t *testing.T) {
	ociHermetic(t)
	dir := t.TempDir()
	now := time.Now()
	caPEM, caKey, err := pki.NewCA("vetcd test registry CA", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.NewLeaf(caPEM, caKey, "registry", true, false, pki.LocalOptions(), now)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"ca.pem": caPEM, "cert.pem": cert, "key.pem": key, "not-pem.txt": []byte("hello")}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reg := testregistry.Start(t, testregistry.Options{TLSCertFile: filepath.Join(dir, "cert.pem"), TLSKeyFile: filepath.Join(dir, "key.pem")})
	base := "oci://" + reg.Host + "/vetcd/snaps"
	for _, tc := range []struct {
		name, url, want string
	}{
		{"untrusted", base + "?timeout=5s", "certificate of registry " + reg.Host + " is not trusted"},
		{"missing ca file", base + "?ca=" + filepath.Join(dir, "nope.pem"), "nope.pem"},
		{"ca file without a certificate", base + "?ca=" + filepath.Join(dir, "not-pem.txt"), "no PEM certificate"},
		{"plain HTTP to https", base + "?insecure=true&timeout=5s", "drop ?insecure=true"},
		{"ca and insecure", base + "?insecure=true&ca=" + filepath.Join(dir, "ca.pem"), "use one"},
		{"trusted", base + "?ca=" + filepath.Join(dir, "ca.pem"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			loc, err := Parse(tc.url)
			var b Backend
			if err == nil {
				b, err = Open(ctx, loc)
			}
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("%s: %v; want an error containing %q", tc.url, err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ociPutSnapshot(t, b, "tls", []byte("over https"), ociTestManifest(t, ""))
			if got, _ := ociReadAll(t, b, "tls"); string(got) != "over https" {
				t.Fatalf("read back %q", got)
			}
		})
	}
}
