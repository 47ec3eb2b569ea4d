package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vetcd/vetcd/internal/topology"
)

// TestUpRefusedChangesNothing (safety rule 6; issue 15, finding 9): a second
// `vetcd up` on a DIR whose `vetcd up` is running, or a `vetcd scale` with
// bad input, is refused — and the refusal changes nothing: the files of the
// running cluster are byte for byte the same, no replica is stopped, the
// cluster keeps its 3 voters, and every acknowledged write reads back.
// Before the fix, `vetcd up --replicas 1` rewrote topology.json and only
// then found the running supervisor's lock, so the running cluster scaled
// to 1 behind the user's back.
func TestUpRefusedChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	base := freeBasePort(t, 3)
	c := startUp(t, dir, base, 3)
	cli := c.client(3)
	w := startWriter(t, cli, "refused")
	w.waitAcked(100, 30*time.Second)
	id := c.requireSettled(3).ClusterID
	upPID := strconv.Itoa(c.cmd.Process.Pid)

	cfg := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(cfg, []byte("snapshotCount: 500\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherBase := strconv.Itoa(freeBasePort(t, 1))
	running := []string{"another vetcd up (pid " + upPID + ") is running on " + dir}
	// The cases that scaled the running cluster down before the fix come
	// last: each subtest can run alone (-run 'TestUpRefusedChangesNothing/NAME').
	tests := []struct {
		name string
		args []string
		want []string // substrings of the output
	}{
		{"up_same_flags", []string{"up", "--dir", dir, "--base-port", strconv.Itoa(base)}, running},
		{"up_other_config", []string{"up", "--dir", dir, "--config", cfg}, running},
		{"up_other_base_port", []string{"up", "--dir", dir, "--base-port", otherBase, "--replicas", "1"}, []string{"--base-port " + otherBase, "created with base port"}},
		{"scale_zero", []string{"scale", "0", "--dir", dir}, []string{`"0"`, "from 1 to"}},
		{"scale_above_limit", []string{"scale", "33", "--dir", dir}, []string{`"33"`, "from 1 to"}},
		{"scale_wait_zero_timeout", []string{"scale", "1", "--dir", dir, "--wait", "--timeout", "0s"}, []string{"--timeout 0s"}},
		{"up_replicas_1", []string{"up", "--dir", dir, "--replicas", "1"}, append(running, "vetcd scale")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := clusterFiles(t, dir)
			pids := []int{c.pid(0), c.pid(1), c.pid(2)}
			out, err := vetcd(t, time.Minute, tc.args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("vetcd %s: exit %v, want exit code 2 (refused); output:\n%s", strings.Join(tc.args, " "), err, out)
			}
			for _, s := range tc.want {
				if !strings.Contains(out, s) {
					t.Errorf("output does not say %q:\n%s", s, out)
				}
			}
			requireSameFiles(t, dir, before, "right after the refused command")

			// The running cluster stays as it was: watch it for ~5 s.
			deadline := time.Now().Add(5 * time.Second)
			sample := time.NewTicker(time.Second)
			defer sample.Stop()
			for samples := 0; time.Now().Before(deadline) || samples < 5; samples++ {
				for i, pid := range pids {
					if pid == 0 || syscall.Kill(pid, 0) != nil || c.pid(i) != pid {
						t.Fatalf("replica %d (pid %d) was stopped after the refused command (pid file now %d)", i, pid, c.pid(i))
					}
				}
				st := c.status(3)
				if st.ClusterID != id {
					t.Fatalf("cluster ID %s, was %s", st.ClusterID, id)
				}
				var voters []string
				for _, m := range st.Members {
					if m.Role != "learner" {
						voters = append(voters, m.Name)
					}
				}
				if len(st.Members) != 3 || len(voters) != 3 {
					t.Fatalf("after the refused command: %d members, voters %v; want 3 voters", len(st.Members), voters)
				}
				<-sample.C
			}
			if f, err := topology.ReadFile(filepath.Join(dir, "topology.json")); err != nil || f.Desired != 3 {
				t.Fatalf("topology.json: desired %d (%v), want 3", f.Desired, err)
			}
			requireSameFiles(t, dir, before, "5 s after the refused command")
			c.requireSettled(3)
			w.waitAcked(20, 30*time.Second)
		})
	}
	w.verify(cli)
}

// clusterFiles reads the files of a local cluster that a command could
// change: settings, topology, certificates, the supervisor lock and each
// replica's generated config and pid file. Data and logs are the running
// replicas' own.
func clusterFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	var paths []string
	for _, pattern := range []string{"*.json", "up.lock", "pki/*", "vetcd-*/config.yaml", "vetcd-*/pid"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
	}
	if _, ok := files["topology.json"]; !ok {
		t.Fatalf("no topology.json in %s", dir)
	}
	return files
}

// requireSameFiles fails the test if any of the files clusterFiles read
// was added, removed or changed.
func requireSameFiles(t *testing.T, dir string, before map[string][]byte, when string) {
	t.Helper()
	after := clusterFiles(t, dir)
	var names []string
	for name := range before {
		names = append(names, name)
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		b, a := before[name], after[name]
		switch {
		case b == nil:
			t.Errorf("%s: %s appeared", when, name)
		case a == nil:
			t.Errorf("%s: %s disappeared", when, name)
		case !bytes.Equal(a, b):
			t.Errorf("%s: %s changed:\nbefore: %s\nafter:  %s", when, name, b, a)
		}
	}
}
