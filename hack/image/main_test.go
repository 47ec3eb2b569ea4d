package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestDockerfileDefinition: the image `make image` builds has the Dockerfile's
// path, user, ports, entrypoint and cmd, read from the repository's Dockerfile.
func TestDockerfileDefinition(t *testing.T) {
	src, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	def, err := ParseDockerfile(string(src))
	if err != nil {
		t.Fatal(err)
	}
	want := Definition{
		Path:       "/usr/local/bin/vetcd",
		User:       "65532:65532",
		Entrypoint: []string{"/usr/local/bin/vetcd"},
		Cmd:        []string{"serve", "--config", "/etc/vetcd/config.yaml"},
		Expose:     []string{"2379/tcp", "2380/tcp", "2381/tcp", "2382/tcp"},
	}
	if !reflect.DeepEqual(def, want) {
		t.Fatalf("Dockerfile's final stage:\n got %+v\nwant %+v", def, want)
	}

	out := filepath.Join(t.TempDir(), "vetcd.tar")
	bin, err := os.Executable() // this test binary: static under CGO_ENABLED=0, as make e2e-kube runs it
	if err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-dockerfile", "../../Dockerfile", "-binary", bin, "-tag", "vetcd.local/vetcd:test", "-out", out}, os.Stderr); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, p := range want.Expose {
		if _, ok := cf.Config.ExposedPorts[p]; ok {
			ports = append(ports, p)
		}
	}
	got := Definition{Path: want.Path, User: cf.Config.User, Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Expose: ports}
	if !reflect.DeepEqual(got, want) || cf.OS != "linux" || cf.Architecture == "" {
		t.Fatalf("image config: %+v (os %q arch %q), want %+v", got, cf.OS, cf.Architecture, want)
	}
}

func TestParseDockerfileRefuses(t *testing.T) {
	for name, src := range map[string]string{
		"no user":            "FROM x\nCOPY a /b\nENTRYPOINT [\"/b\"]\n",
		"shell form":         "FROM x\nCOPY a /b\nUSER 1\nENTRYPOINT /b serve\n",
		"two copies":         "FROM x\nCOPY a /b\nCOPY c /d\nUSER 1\nENTRYPOINT [\"/b\"]\n",
		"no entry":           "FROM x\nCOPY a /b\nUSER 1\n",
		"earlier stage only": "FROM x\nCOPY a /b\nUSER 1\nENTRYPOINT [\"/b\"]\nFROM y\n",
	} {
		if def, err := ParseDockerfile(src); err == nil {
			t.Errorf("%s: accepted as %+v", name, def)
		}
	}
}

// TestRefusesDynamicBinary: a binary that needs libc would fail in the image
// with a confusing "no such file or directory"; image refuses it up front and
// writes nothing.
func TestRefusesDynamicBinary(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.tar")
	err := run([]string{"-binary", "/bin/true", "-path", "/true", "-tag", "x.local/x:1", "-out", out}, os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("a dynamically linked /bin/true: %v, want a refusal naming CGO_ENABLED=0", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused build left %s behind", out)
	}
}
