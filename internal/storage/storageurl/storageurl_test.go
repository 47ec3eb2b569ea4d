package storageurl

import (
	"strings"
	"testing"
)

// TestParse covers each scheme's shape here, where config validation
// reads it; the storage package's tests cover the same URLs through its
// wrappers, next to the backends that open them.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in               string
		scheme, root, nm string
		err              string
	}{
		{in: "file:///var/snap/a.db", scheme: "file", root: "/var/snap", nm: "a.db"},
		{in: "file:///var/snap/", scheme: "file", root: "/var/snap"},
		{in: "s3://bucket/p/q/n?endpoint=127.0.0.1:9000&insecure=true", scheme: "s3", root: "bucket/p/q", nm: "n"},
		{in: "s3://bucket/", scheme: "s3", root: "bucket"},
		{in: "oci://reg.example:5000/team/etcd:nightly", scheme: "oci", root: "reg.example:5000/team/etcd", nm: "nightly"},
		{in: "oci://reg.example/team/etcd", scheme: "oci", root: "reg.example/team/etcd"},
		{in: "relative/path", err: "no scheme"},
		{in: "ftp://h/x", err: "unknown scheme"},
		{in: "s3://user:secret@bucket/x", err: "credentials in the URL"},
		{in: "s3://bucket/x?endpont=h", err: "unknown option"},
		{in: "s3://Bad_Bucket/x", err: "bucket"},
		{in: "oci://reg.example/Team/etcd:x", err: "repository"},
		{in: "oci://reg.example/team/etcd:.bad", err: "tag"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			loc, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse(%q) = %+v, %v; want an error containing %q", tc.in, loc, err, tc.err)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("Parse(%q): the error shows the password: %v", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if loc.Scheme != tc.scheme || loc.Root != tc.root || loc.Name != tc.nm {
				t.Fatalf("Parse(%q) = %+v; want %s root %q name %q", tc.in, loc, tc.scheme, tc.root, tc.nm)
			}
		})
	}
}
