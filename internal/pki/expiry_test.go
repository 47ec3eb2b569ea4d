package pki

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Expiry reports the member certificate's NotAfter and that of the CA that
// issued it, also when the CA bundle holds another CA (a rotation) that
// expires first or last.
func TestExpiry(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, parts ...[]byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(parts, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldCA, oldKey, err := NewCA("old", 30*24*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	newCA, newKey, err := NewCA("new", 365*24*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := NewLeaf(newCA, newKey, "vetcd-0", true, true, Options{DNSNames: []string{"localhost"}, Validity: 90 * 24 * time.Hour}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	oldLeaf, _, err := NewLeaf(oldCA, oldKey, "vetcd-0", true, true, Options{DNSNames: []string{"localhost"}, Validity: 90 * 24 * time.Hour}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	for _, tc := range []struct {
		name         string
		ca, cert     string
		wantCA, want time.Duration // after testNow, to the day
	}{
		{"the issuer alone", write("a.crt", newCA), write("l.crt", leaf), 365 * day, 90 * day},
		{"old and new CA, signed by the new", write("b.crt", oldCA, newCA), write("l.crt", leaf), 365 * day, 90 * day},
		{"old and new CA, signed by the old (capped at the CA)", write("c.crt", newCA, oldCA), write("o.crt", oldLeaf), 30 * day, 30 * day},
		{"no issuer in the bundle: the earliest CA", write("d.crt", newCA, oldCA), write("l2.crt", func() []byte {
			other, otherKey, err := NewCA("other", 400*day, testNow)
			if err != nil {
				t.Fatal(err)
			}
			l, _, err := NewLeaf(other, otherKey, "x", true, false, Options{DNSNames: []string{"localhost"}, Validity: 10 * day}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}()), 30 * day, 10 * day},
	} {
		ca, member, err := Expiry(tc.ca, tc.cert)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := ca.Sub(testNow).Round(day); got != tc.wantCA {
			t.Errorf("%s: CA expires %v after now, want %v", tc.name, got, tc.wantCA)
		}
		if got := member.Sub(testNow).Round(day); got != tc.want {
			t.Errorf("%s: member certificate expires %v after now, want %v", tc.name, got, tc.want)
		}
	}
	if _, _, err := Expiry(write("empty.crt"), write("l3.crt", leaf)); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("an empty CA file: %v", err)
	}
}
