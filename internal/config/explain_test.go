package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestExplainYAMLMessages produces each kind of problem message yaml.v3's
// strict decoder writes and checks that explain's patterns read it: if a
// yaml.v3 release words them otherwise, Parse would fall back to the bare
// message (line, no key path), and this test says which one changed.
func TestExplainYAMLMessages(t *testing.T) {
	type section struct {
		Count int           `yaml:"count"`
		Every time.Duration `yaml:"every"`
		Args  []string      `yaml:"args"`
	}
	type doc struct {
		Section section `yaml:"section"`
	}
	problems := func(t *testing.T, src string) []string {
		t.Helper()
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		var d doc
		var te *yaml.TypeError
		if err := dec.Decode(&d); !errors.As(err, &te) {
			t.Fatalf("Decode(%q) = %v, want a *yaml.TypeError", src, err)
		}
		return te.Errors
	}
	tests := []struct {
		name string
		src  string
		// want are the submatches of each message, in order.
		want [][]string
	}{
		{"unknown field", "section:\n  cuont: 1\n", [][]string{{"2", "cuont", "config.section"}}},
		{"duplicate key", "section: {}\nsection: {}\n", [][]string{{"2", `"section"`, "1"}}},
		{"wrong scalar", "section: {count: many}\n", [][]string{{"1", "!!str", "many", "int"}}},
		{"long value, cut", "section: {every: two hours and a bit}\n", [][]string{{"1", "!!str", "two hou...", "time.Duration"}}},
		{"number as a duration", "section: {every: 5}\n", [][]string{{"1", "!!int", "5", "time.Duration"}}},
		{"multi-line value", "section:\n  every: |\n    a\n    b\n", [][]string{{"2", "!!str", "a\nb\n", "time.Duration"}}},
		{"mapping, no value", "section: {args: [{a: 1}]}\n", [][]string{{"1", "!!map", "", "string"}}},
		{"list as a section", "section: [1]\n", [][]string{{"1", "!!seq", "", "config.section"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs := problems(t, tc.src)
			if len(msgs) != len(tc.want) {
				t.Fatalf("yaml.v3 reported %q, want %d problems", msgs, len(tc.want))
			}
			for i, msg := range msgs {
				var m []string
				for _, re := range []interface{ FindStringSubmatch(string) []string }{unknownFieldMsg, duplicateMsg, wrongTypeMsg} {
					if m = re.FindStringSubmatch(msg); m != nil {
						break
					}
				}
				if m == nil {
					t.Fatalf("no pattern reads yaml.v3's %q", msg)
				}
				if got := m[1:]; strings.Join(got, "|") != strings.Join(tc.want[i], "|") {
					t.Errorf("read %q as %q, want %q", msg, got, tc.want[i])
				}
			}
		})
	}
}

// TestExplainKeepsUnknownMessages: a message explain cannot place is
// returned as yaml.v3 wrote it (with its line), never dropped.
func TestExplainKeepsUnknownMessages(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("dataDir: /d\n"), &doc); err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{
		"line 1: something yaml.v3 may say one day",
		"line 9: field nowhere not found in type config.Config",
	} {
		err := explain(&doc, &yaml.TypeError{Errors: []string{msg}})
		if err == nil || err.Error() != msg {
			t.Errorf("explain(%q) = %v, want it unchanged", msg, err)
		}
	}
}

// TestParseDuplicateKeyOnce: a key written three times is reported once
// per repetition, each against its first line (yaml.v3 also reports the
// third against the second).
func TestParseDuplicateKeyOnce(t *testing.T) {
	_, err := Parse([]byte("dataDir: /a\ndataDir: /b\ndataDir: /c\n"))
	want := "line 2: duplicate key \"dataDir\" (first at line 1)\nline 3: duplicate key \"dataDir\" (first at line 1)"
	if err == nil || err.Error() != want {
		t.Errorf("Parse: %v\nwant: %s", err, want)
	}
}

// TestParseAliasBomb: a document whose aliases expand to a billion nodes
// is refused at once, by yaml.v3's alias limit; naming its problems must
// not expand it either.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("m0: &m0 {interval: 1s}\n")
	for i := 1; i < 10; i++ {
		refs := strings.TrimSuffix(strings.Repeat("*m"+string(rune('0'+i-1))+", ", 10), ", ")
		b.WriteString("m" + string(rune('0'+i)) + ": &m" + string(rune('0'+i)) + " {<<: [" + refs + "]}\n")
	}
	b.WriteString("controller: {<<: [*m9]}\n")
	done := make(chan error, 1)
	go func() {
		_, err := Parse([]byte(b.String()))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "excessive aliasing") {
			t.Errorf("Parse = %v, want yaml.v3's excessive aliasing error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Parse did not return within 20s: it expands the aliases")
	}
}
