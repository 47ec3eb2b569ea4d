// Package testtools finds the real servers that tests run against (MinIO,
// an OCI registry, helm, kube-apiserver), installed by `make test-tools`.
// Tests import it; the product never does.
package testtools

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Path returns the absolute path of tool name. A missing tool skips the
// test with the command that installs it, or fails it when
// VETCD_REQUIRE_TOOLS=1 (as `make test` sets), so CI cannot pass by skipping.
func Path(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("VETCD_TEST_BIN")
	if dir == "" {
		dir = filepath.Join(repoRoot(), "bin", "test")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if lp, err := exec.LookPath(name); err == nil && os.Getenv("VETCD_TEST_BIN") == "" {
		return lp
	}
	msg := "test tool " + name + " not found in " + dir + "; install it with `make test-tools`"
	if os.Getenv("VETCD_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// repoRoot is the module root, found from this source file's location.
func repoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Helm runs the helm binary with private cache, config and data dirs (so a
// test never reads or writes the user's) and returns its combined output.
func Helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Path(t, "helm"), args...)
	cmd.Env = append(cmd.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}
