// Command image builds an OCI image from a Go binary without a container
// engine or a registry, for the single-node Kubernetes of hack/kube, whose
// containerd imports the result with `ctr images import`.
//
// `make image` builds vetcd's image from the Dockerfile's own definition: it
// reads the final stage's COPY destination, USER, EXPOSE, ENTRYPOINT and CMD,
// and puts the binary from `make build` where COPY would. So the image the tests
// run is the image users get from `docker build`, except for the base: the
// Dockerfile's distroless/static:nonroot is replaced by the few files of it that
// a static binary uses (passwd and group naming uid 65532, /tmp, /home/nonroot,
// the CA bundle). TestDockerfileDefinition keeps the two in step.
//
// Other images (kube-apiserver, MinIO, CoreDNS, the sandbox's pause) are built
// with -binary, -path and the flags that set the config directly.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Definition is what an image needs besides its binary.
type Definition struct {
	Path       string   // where the binary goes
	User       string   // uid:gid
	Entrypoint []string // exec form
	Cmd        []string
	Expose     []string // "2379/tcp"
}

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: image -binary FILE -tag REF -out FILE.tar [-dockerfile Dockerfile | -path P -entrypoint E [-cmd C] [-user U]]")
		fs.PrintDefaults()
	}
	var (
		binary     = fs.String("binary", "", "the static binary to put in the image (required)")
		tag        = fs.String("tag", "", "the image reference the tarball names, e.g. vetcd.local/vetcd:dev (required)")
		out        = fs.String("out", "", "the docker-archive tarball to write (required)")
		dockerfile = fs.String("dockerfile", "", "take path, user, ports, entrypoint and cmd from this Dockerfile's final stage")
		path       = fs.String("path", "", "where the binary goes in the image (without -dockerfile)")
		entrypoint = fs.String("entrypoint", "", "the entrypoint, comma-separated (default: -path)")
		cmd        = fs.String("cmd", "", "the default arguments, comma-separated")
		user       = fs.String("user", "65532:65532", "uid:gid the container runs as")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" || *tag == "" || *out == "" {
		fs.Usage()
		return errors.New("-binary, -tag and -out are required")
	}
	var def Definition
	if *dockerfile != "" {
		src, err := os.ReadFile(*dockerfile)
		if err != nil {
			return fmt.Errorf("reading the Dockerfile: %w", err)
		}
		if def, err = ParseDockerfile(string(src)); err != nil {
			return fmt.Errorf("%s: %w", *dockerfile, err)
		}
	} else {
		if *path == "" {
			return errors.New("-path is required without -dockerfile")
		}
		def = Definition{Path: *path, User: *user, Entrypoint: split(*entrypoint), Cmd: split(*cmd)}
		if len(def.Entrypoint) == 0 {
			def.Entrypoint = []string{*path}
		}
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("-tag %q: %w", *tag, err)
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return fmt.Errorf("reading the binary: %w", err)
	}
	if err := static(bin); err != nil {
		return fmt.Errorf("%s: %w", *binary, err)
	}
	img, err := Build(bin, def)
	if err != nil {
		return err
	}
	tmp := *out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	return os.Rename(tmp, *out)
}

// static refuses a binary that needs a dynamic loader: the image has no libc,
// so the container would fail with "exec ...: no such file or directory".
func static(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked; the image has no libc: build it with CGO_ENABLED=0")
		}
	}
	return nil
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Build makes a one-layer image: the binary at def.Path, plus the files of
// distroless/static:nonroot a static binary running as uid 65532 uses.
func Build(bin []byte, def Definition) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(rootfs(bin, def.Path))), nil
	})
	if err != nil {
		return nil, fmt.Errorf("making the layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("adding the layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	cf = cf.DeepCopy()
	// Without os and architecture, the CRI refuses the image.
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.User = def.User
	cf.Config.Entrypoint = def.Entrypoint
	cf.Config.Cmd = def.Cmd
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	if len(def.Expose) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range def.Expose {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the layer's tar: directories, the nonroot user, the CA bundle of
// this machine when it has one, and the binary. Times are zero so the same
// binary gives the same digest.
func rootfs(bin []byte, path string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid int) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid})
	}
	file := func(name string, mode int64, data []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))})
		tw.Write(data)
	}
	seen := map[string]bool{}
	parents := func(p string) {
		parts := strings.Split(strings.Trim(p, "/"), "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/")
			if !seen[d] {
				seen[d] = true
				dir(d, 0o755, 0)
			}
		}
	}
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "home"} {
		seen[d] = true
		dir(d, 0o755, 0)
	}
	dir("tmp", 0o1777, 0)
	dir("home/nonroot", 0o700, 65532)
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"))
	if ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		file("etc/ssl/certs/ca-certificates.crt", 0o644, ca)
	}
	parents(path)
	file(strings.TrimPrefix(path, "/"), 0o755, bin)
	tw.Close()
	return buf.Bytes()
}
