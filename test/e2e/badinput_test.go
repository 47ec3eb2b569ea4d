package e2e

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInput: every bad input gets an error that names the problem, a
// non-zero exit (2: the caller's mistake), and writes nothing.
func TestBadInput(t *testing.T) {
	root := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	regular := write("a-file", "not a dir")
	foreign := filepath.Join(root, "foreign")
	if err := os.MkdirAll(filepath.Join(foreign, "stuff"), 0o700); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		want []string // substrings of the error output
	}{
		{
			name: "unknown config key, with its line",
			args: []string{"up", "--config", write("unknown.yaml", "snapshotCount: 5\nsnapshotCnt: 3\n")},
			want: []string{"line 2", "snapshotCnt"},
		},
		{
			name: "malformed YAML",
			args: []string{"up", "--config", write("malformed.yaml", "extraArgs: [\n")},
			want: []string{"malformed.yaml"},
		},
		{
			name: "wrong type",
			args: []string{"up", "--config", write("type.yaml", "snapshotCount: lots\n")},
			want: []string{"snapshotCount"},
		},
		{
			name: "unknown etcd flag in extraArgs",
			args: []string{"up", "--config", write("unknownflag.yaml", "extraArgs: [\"--quota-bytes=1\"]\n")},
			want: []string{"extraArgs[0]", "quota-bytes"},
		},
		{
			name: "forbidden etcd flag in extraArgs",
			args: []string{"up", "--config", write("forbidden.yaml", "extraArgs: [\"--data-dir=/tmp/x\"]\n")},
			want: []string{"extraArgs[0]", "data-dir"},
		},
		{
			name: "forbidden force-new-cluster",
			args: []string{"up", "--config", write("force.yaml", "extraArgs: [\"--force-new-cluster\"]\n")},
			want: []string{"force-new-cluster", "rebuild"},
		},
		{
			name: "identity keys are up's to fill",
			args: []string{"up", "--config", write("identity.yaml", "dataDir: /somewhere\n")},
			want: []string{"dataDir", "vetcd up fills in"},
		},
		{
			name: "vCluster file with an unknown embedded key",
			args: []string{"up", "--config", write("vcluster.yaml", "controlPlane:\n  distro: {k8s: {}}\n  backingStore:\n    etcd:\n      embedded:\n        enabled: true\n        snapshotCout: 3\n")},
			want: []string{"line 7", "snapshotCout"},
		},
		{
			name: "DIR is a regular file",
			args: []string{"up", "--dir", regular},
			want: []string{regular, "not a directory"},
		},
		{
			name: "DIR is a non-empty foreign directory",
			args: []string{"up", "--dir", foreign},
			want: []string{foreign, "not a vetcd cluster dir"},
		},
		{
			name: "replicas out of range",
			args: []string{"up", "--replicas", "0"},
			want: []string{"--replicas"},
		},
		{
			name: "scale with a bad count",
			args: []string{"scale", "many"},
			want: []string{"many"},
		},
		{
			name: "status of a dir that is no cluster",
			args: []string{"status", "--dir", foreign},
			want: []string{"not a vetcd cluster dir"},
		},
		{
			name: "unknown output format",
			args: []string{"status", "-o", "yamlish"},
			want: []string{"yamlish"},
		},
		{
			name: "serve without config",
			args: []string{"serve"},
			want: []string{"--config"},
		},
		{
			name: "serve with a config missing required keys",
			args: []string{"serve", "--config", write("serve.yaml", "snapshotCount: 1\n")},
			want: []string{"dataDir", "required"},
		},
		{
			name: "unknown flag",
			args: []string{"up", "--replica", "3"},
			want: []string{"--replica"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			work := filepath.Join(t.TempDir(), "work")
			if err := os.MkdirAll(work, 0o700); err != nil {
				t.Fatal(err)
			}
			before := snapshotTree(t, root)
			cmd := exec.Command(binary, tc.args...)
			cmd.Dir = work // the default --dir .vetcd lands here if anything writes
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want exit code 2; output:\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if after := snapshotTree(t, root); after != before {
				t.Errorf("bad input changed files under %s:\nbefore: %s\nafter:  %s", root, before, after)
			}
			if entries, _ := os.ReadDir(work); len(entries) != 0 {
				t.Errorf("bad input wrote %s into the working dir", entries[0].Name())
			}
		})
	}
}

// snapshotTree lists every path with its size and mtime.
func snapshotTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.ModTime().Format(time.RFC3339Nano) + " " + fi.Mode().String() + ";")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
