package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// snapshot records the contents and mtimes of every entry of a directory.
type snapshot map[string]fileState

type fileState struct {
	data  []byte
	mtime time.Time
}

func takeSnapshot(t *testing.T, dir string) snapshot {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot{}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		s[e.Name()] = fileState{data, info.ModTime()}
	}
	return s
}

// backdate sets the mtime of every file in dir an hour back.
func backdate(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for _, e := range entries {
		if err := os.Chtimes(filepath.Join(dir, e.Name()), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

func (s snapshot) diff(o snapshot) []string {
	var d []string
	for name, a := range s {
		b, ok := o[name]
		switch {
		case !ok:
			d = append(d, name+" removed")
		case !bytes.Equal(a.data, b.data):
			d = append(d, name+" contents changed")
		case !a.mtime.Equal(b.mtime):
			d = append(d, name+" mtime changed")
		}
	}
	for name := range o {
		if _, ok := s[name]; !ok {
			d = append(d, name+" added")
		}
	}
	return d
}

func allFiles(f Files) []string {
	return []string{f.CA, f.CAKey, f.MemberCert, f.MemberKey, f.ClientCert, f.ClientKey}
}

func mustEnsure(t *testing.T, dir string, opts Options) Files {
	t.Helper()
	f, err := ensure(dir, opts, testNow)
	if err != nil {
		t.Fatalf("ensure: %v", err)
	}
	return f
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	c, err := parseCert(mustRead(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// verify checks cert against the CA in caFile for one usage and host.
func verify(t *testing.T, caFile string, cert *x509.Certificate, usage x509.ExtKeyUsage, host string) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(mustCert(t, caFile))
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		DNSName:     host,
		CurrentTime: testNow,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	})
	return err
}

func TestFilesIn(t *testing.T) {
	f := FilesIn("/d")
	want := []string{"/d/ca.crt", "/d/ca.key", "/d/member.crt", "/d/member.key", "/d/client.crt", "/d/client.key"}
	for i, got := range allFiles(f) {
		if got != want[i] {
			t.Errorf("file %d = %q, want %q", i, got, want[i])
		}
	}
}

func TestEnsureCreatesFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	f, err := Ensure(dir, LocalOptions())
	if err != nil {
		t.Fatal(err)
	}
	if f != FilesIn(dir) {
		t.Errorf("Ensure returned %+v, want %+v", f, FilesIn(dir))
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("dir mode = %v, want 0700", perm)
	}
	for _, name := range allFiles(f) {
		info, err := os.Stat(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, perm)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 6 {
		t.Errorf("dir holds %d entries, want 6 (no temporary files left)", len(entries))
	}
	if cn := mustCert(t, f.ClientCert).Subject.CommonName; cn != AdminCommonName {
		t.Errorf("client CN = %q, want %q", cn, AdminCommonName)
	}
	for _, name := range []string{f.CAKey, f.MemberKey, f.ClientKey} {
		if !bytes.HasPrefix(mustRead(t, name), []byte("-----BEGIN PRIVATE KEY-----")) {
			t.Errorf("%s is not a PKCS #8 PEM key", name)
		}
	}
}

func TestEnsureIdempotent(t *testing.T) {
	dir := t.TempDir()
	mustEnsure(t, dir, LocalOptions())
	before := takeSnapshot(t, dir)
	// A later run, well within validity, keeps everything.
	if _, err := ensure(dir, LocalOptions(), testNow.Add(365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if d := before.diff(takeSnapshot(t, dir)); len(d) > 0 {
		t.Errorf("second Ensure changed files: %v", d)
	}
}

func TestEnsureCompletes(t *testing.T) {
	// other CA, used to plant a leaf the dir's CA did not sign.
	otherCA, otherKey, err := NewCA("other", 0, testNow)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// change damages a complete directory.
		change func(t *testing.T, f Files)
		opts   Options // for the second Ensure; zero means LocalOptions
		// reissued are the files expected to change, the rest are kept.
		reissued func(f Files) []string
	}{
		{
			name:     "member cert deleted",
			change:   func(t *testing.T, f Files) { os.Remove(f.MemberCert) },
			reissued: func(f Files) []string { return []string{f.MemberCert, f.MemberKey} },
		},
		{
			name:     "member key deleted",
			change:   func(t *testing.T, f Files) { os.Remove(f.MemberKey) },
			reissued: func(f Files) []string { return []string{f.MemberCert, f.MemberKey} },
		},
		{
			name: "client files deleted",
			change: func(t *testing.T, f Files) {
				os.Remove(f.ClientCert)
				os.Remove(f.ClientKey)
			},
			reissued: func(f Files) []string { return []string{f.ClientCert, f.ClientKey} },
		},
		{
			name: "member key from another pair",
			change: func(t *testing.T, f Files) {
				os.WriteFile(f.MemberKey, mustRead(t, f.ClientKey), 0o600)
			},
			reissued: func(f Files) []string { return []string{f.MemberCert, f.MemberKey} },
		},
		{
			name: "client signed by another CA",
			change: func(t *testing.T, f Files) {
				c, k, err := NewLeaf(otherCA, otherKey, AdminCommonName, false, true, Options{}, testNow)
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(f.ClientCert, c, 0o600)
				os.WriteFile(f.ClientKey, k, 0o600)
			},
			reissued: func(f Files) []string { return []string{f.ClientCert, f.ClientKey} },
		},
		{
			name: "member about to expire",
			change: func(t *testing.T, f Files) {
				c, k, err := NewLeaf(mustRead(t, f.CA), mustRead(t, f.CAKey), MemberCommonName, true, true,
					Options{DNSNames: LocalOptions().DNSNames, IPs: LocalOptions().IPs, Validity: 10 * 24 * time.Hour}, testNow)
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(f.MemberCert, c, 0o600)
				os.WriteFile(f.MemberKey, k, 0o600)
			},
			reissued: func(f Files) []string { return []string{f.MemberCert, f.MemberKey} },
		},
		{
			name:   "new SAN requested",
			change: func(t *testing.T, f Files) {},
			opts: Options{
				DNSNames: append(LocalOptions().DNSNames, "etcd.example.com"),
				IPs:      append(LocalOptions().IPs, net.ParseIP("10.0.0.7")),
			},
			reissued: func(f Files) []string { return []string{f.MemberCert, f.MemberKey} },
		},
		{
			name:     "subset of SANs requested",
			change:   func(t *testing.T, f Files) {},
			opts:     Options{DNSNames: []string{"VETCD-3"}, IPs: []net.IP{net.ParseIP("::1")}},
			reissued: func(f Files) []string { return nil },
		},
		{
			name:     "CA cert lost, key kept",
			change:   func(t *testing.T, f Files) { os.Remove(f.CA) },
			reissued: func(f Files) []string { return []string{f.CA} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f := mustEnsure(t, dir, LocalOptions())
			tt.change(t, f)
			before := map[string][]byte{}
			for _, name := range allFiles(f) {
				before[name], _ = os.ReadFile(name)
			}
			opts := tt.opts
			if opts.DNSNames == nil && opts.IPs == nil {
				opts = LocalOptions()
			}
			mustEnsure(t, dir, opts)

			reissued := tt.reissued(f)
			for _, name := range allFiles(f) {
				changed := !bytes.Equal(before[name], mustRead(t, name))
				want := false
				for _, r := range reissued {
					want = want || r == name
				}
				if changed != want {
					t.Errorf("%s changed = %v, want %v", filepath.Base(name), changed, want)
				}
			}
			member, client := mustCert(t, f.MemberCert), mustCert(t, f.ClientCert)
			for _, name := range opts.DNSNames {
				if err := verify(t, f.CA, member, x509.ExtKeyUsageServerAuth, strings.ReplaceAll(name, "*", "x")); err != nil {
					t.Errorf("member for %s: %v", name, err)
				}
			}
			for _, ip := range opts.IPs {
				if err := verify(t, f.CA, member, x509.ExtKeyUsageServerAuth, ip.String()); err != nil {
					t.Errorf("member for %s: %v", ip, err)
				}
			}
			if err := verify(t, f.CA, client, x509.ExtKeyUsageClientAuth, ""); err != nil {
				t.Errorf("client: %v", err)
			}
			// A third run is a no-op.
			snap := takeSnapshot(t, dir)
			mustEnsure(t, dir, opts)
			if d := snap.diff(takeSnapshot(t, dir)); len(d) > 0 {
				t.Errorf("third Ensure changed files: %v", d)
			}
		})
	}
}

func TestEnsureRejects(t *testing.T) {
	_, strayKey, err := NewCA("stray", 0, testNow)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(t *testing.T, f Files)
		at     time.Time
		file   func(f Files) string // the file the error must name
	}{
		{
			name:   "corrupt ca.crt",
			change: func(t *testing.T, f Files) { os.WriteFile(f.CA, []byte("not PEM\n"), 0o600) },
			file:   func(f Files) string { return f.CA },
		},
		{
			name: "ca.crt holds a key",
			change: func(t *testing.T, f Files) {
				os.WriteFile(f.CA, mustRead(t, f.CAKey), 0o600)
			},
			file: func(f Files) string { return f.CA },
		},
		{
			name: "truncated ca.key",
			change: func(t *testing.T, f Files) {
				k := mustRead(t, f.CAKey)
				os.WriteFile(f.CAKey, append([]byte(nil), k[:len(k)/2]...), 0o600)
			},
			file: func(f Files) string { return f.CAKey },
		},
		{
			name:   "ca.key of another CA",
			change: func(t *testing.T, f Files) { os.WriteFile(f.CAKey, strayKey, 0o600) },
			file:   func(f Files) string { return f.CA },
		},
		{
			name:   "ca.key missing",
			change: func(t *testing.T, f Files) { os.Remove(f.CAKey) },
			file:   func(f Files) string { return f.CAKey },
		},
		{
			name: "CA is not a CA",
			change: func(t *testing.T, f Files) {
				os.WriteFile(f.CA, mustRead(t, f.ClientCert), 0o600)
				os.WriteFile(f.CAKey, mustRead(t, f.ClientKey), 0o600)
			},
			file: func(f Files) string { return f.CA },
		},
		{
			name:   "CA expired",
			change: func(t *testing.T, f Files) {},
			at:     testNow.Add(DefaultCAValidity + time.Hour),
			file:   func(f Files) string { return f.CA },
		},
		{
			name: "corrupt member.crt and member.key missing",
			change: func(t *testing.T, f Files) {
				os.WriteFile(f.MemberCert, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
				os.Remove(f.MemberKey)
			},
			file: func(f Files) string { return f.MemberCert },
		},
		{
			name:   "corrupt client.key",
			change: func(t *testing.T, f Files) { os.WriteFile(f.ClientKey, nil, 0o600) },
			file:   func(f Files) string { return f.ClientKey },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f := mustEnsure(t, dir, LocalOptions())
			tt.change(t, f)
			// Make the damage the only reason to write: a leaf that would be
			// reissued anyway must still not be touched.
			os.Remove(f.ClientCert)
			// Date every file back so that a rewrite shows in its mtime, even
			// one within the file system's clock granularity.
			backdate(t, dir)
			before := takeSnapshot(t, dir)
			at := tt.at
			if at.IsZero() {
				at = testNow
			}
			_, err := ensure(dir, LocalOptions(), at)
			if err == nil {
				t.Fatal("ensure succeeded")
			}
			if want := tt.file(f); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
			if d := before.diff(takeSnapshot(t, dir)); len(d) > 0 {
				t.Errorf("failed Ensure changed files: %v", d)
			}
		})
	}
}

func TestEnsureRejectsBadOptions(t *testing.T) {
	for _, opts := range []Options{
		{Validity: -time.Hour},
		{DNSNames: []string{""}},
		{IPs: []net.IP{{1, 2, 3}}},
	} {
		dir := filepath.Join(t.TempDir(), "pki")
		if _, err := Ensure(dir, opts); err == nil {
			t.Errorf("Ensure(%+v) succeeded", opts)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Ensure(%+v) created %s", opts, dir)
		}
	}
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	f := mustEnsure(t, dir, LocalOptions())
	tests := []struct {
		name    string
		cert    string
		usage   x509.ExtKeyUsage
		host    string
		wantErr bool
	}{
		{"member server by name", f.MemberCert, x509.ExtKeyUsageServerAuth, "vetcd-7", false},
		{"member server by IPv4", f.MemberCert, x509.ExtKeyUsageServerAuth, "127.0.0.1", false},
		{"member server by IPv6", f.MemberCert, x509.ExtKeyUsageServerAuth, "::1", false},
		{"member server by localhost", f.MemberCert, x509.ExtKeyUsageServerAuth, "localhost", false},
		{"member server by wildcard", f.MemberCert, x509.ExtKeyUsageServerAuth, "vetcd-40.vetcd.local", false},
		{"member client by name", f.MemberCert, x509.ExtKeyUsageClientAuth, "vetcd-7", false},
		{"member client by IP", f.MemberCert, x509.ExtKeyUsageClientAuth, "127.0.0.1", false},
		{"member unknown name", f.MemberCert, x509.ExtKeyUsageServerAuth, "vetcd-32", true},
		{"member unknown IP", f.MemberCert, x509.ExtKeyUsageServerAuth, "10.0.0.1", true},
		{"client as client", f.ClientCert, x509.ExtKeyUsageClientAuth, "", false},
		{"client as server", f.ClientCert, x509.ExtKeyUsageServerAuth, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verify(t, f.CA, mustCert(t, tt.cert), tt.usage, tt.host)
			if (err != nil) != tt.wantErr {
				t.Errorf("verify error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestNewCA(t *testing.T) {
	certPEM, keyPEM, err := NewCA("test-ca", 0, testNow)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkCA(ca, key, testNow); err != nil {
		t.Error(err)
	}
	if !ca.MaxPathLenZero || ca.MaxPathLen != 0 {
		t.Errorf("MaxPathLen = %d (zero %v), want 0", ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if got, want := ca.NotBefore, testNow.Add(-time.Hour); !got.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", got, want)
	}
	if got, want := ca.NotAfter, testNow.Add(DefaultCAValidity); !got.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", got, want)
	}
	if ca.SerialNumber.BitLen() > 128 || ca.SerialNumber.Sign() <= 0 {
		t.Errorf("serial %v is not a positive 128-bit number", ca.SerialNumber)
	}
}

func TestNewLeaf(t *testing.T) {
	caPEM, caKeyPEM, err := NewCA("test-ca", 48*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKeyPEM, err := NewCA("other", 0, testNow)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("capped at CA expiry", func(t *testing.T) {
		certPEM, _, err := NewLeaf(caPEM, caKeyPEM, "x", true, false, Options{}, testNow)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := parseCert(certPEM)
		ca, _ := parseCert(caPEM)
		if !leaf.NotAfter.Equal(ca.NotAfter) {
			t.Errorf("leaf NotAfter = %v, want CA's %v", leaf.NotAfter, ca.NotAfter)
		}
		if leaf.IsCA {
			t.Error("leaf is a CA")
		}
		if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("KeyUsage = %v, want DigitalSignature", leaf.KeyUsage)
		}
	})
	tests := []struct {
		name           string
		caKey          []byte
		server, client bool
		at             time.Time
	}{
		{"no usage", caKeyPEM, false, false, testNow},
		{"wrong CA key", otherKeyPEM, true, true, testNow},
		{"garbage CA key", []byte("junk"), true, true, testNow},
		{"expired CA", caKeyPEM, true, true, testNow.Add(72 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := NewLeaf(caPEM, tt.caKey, "x", tt.server, tt.client, Options{}, tt.at); err == nil {
				t.Error("NewLeaf succeeded")
			}
		})
	}
}

func TestHandshake(t *testing.T) {
	dir := t.TempDir()
	f := mustEnsure(t, dir, LocalOptions())

	otherDir := t.TempDir()
	other := mustEnsure(t, otherDir, LocalOptions())
	// A client cert with the right CN, from a CA the server does not trust,
	// verified by the client against the right CA.
	mixedCA := filepath.Join(otherDir, "right-ca.crt")
	if err := os.WriteFile(mixedCA, mustRead(t, f.CA), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name                        string
		clientCA, clientCert, clKey string
		// rejectedBy is the side that must refuse the peer's certificate;
		// empty means the handshake must succeed.
		rejectedBy string
	}{
		{"admin client", f.CA, f.ClientCert, f.ClientKey, ""},
		{"member as client", f.CA, f.MemberCert, f.MemberKey, ""},
		{"client of another CA", mixedCA, other.ClientCert, other.ClientKey, "server"},
		{"client trusting another CA", other.CA, f.ClientCert, f.ClientKey, "client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverCfg, err := ServerConfig(f.CA, f.MemberCert, f.MemberKey)
			if err != nil {
				t.Fatal(err)
			}
			clientCfg, err := ClientConfig(tt.clientCA, tt.clientCert, tt.clKey)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			serverErr := make(chan error, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					serverErr <- err
					return
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if err := conn.(*tls.Conn).Handshake(); err != nil {
					serverErr <- err
					return
				}
				_, err = conn.Write([]byte("ok"))
				serverErr <- err
			}()

			clientErr := func() error {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), clientCfg)
				if err != nil {
					return err
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				// With TLS 1.3 the server's verdict on the client
				// certificate arrives after the client's handshake is
				// done, so read to see it.
				buf := make([]byte, 2)
				_, err = conn.Read(buf)
				return err
			}()
			sErr := <-serverErr
			var unknownCA x509.UnknownAuthorityError
			switch tt.rejectedBy {
			case "":
				if clientErr != nil || sErr != nil {
					t.Errorf("handshake failed: client %v, server %v", clientErr, sErr)
				}
			case "server":
				if !errors.As(sErr, &unknownCA) || clientErr == nil {
					t.Errorf("server error = %v, client error = %v; want server to reject an unknown authority", sErr, clientErr)
				}
			case "client":
				if !errors.As(clientErr, &unknownCA) {
					t.Errorf("client error = %v, want an unknown authority", clientErr)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	f := mustEnsure(t, dir, LocalOptions())
	bad := filepath.Join(dir, "bad.crt")
	if err := os.WriteFile(bad, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, build := range []func(string, string, string) (*tls.Config, error){ServerConfig, ClientConfig} {
		if _, err := build(filepath.Join(dir, "missing"), f.MemberCert, f.MemberKey); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("missing CA: err = %v, want not exist", err)
		}
		if _, err := build(bad, f.MemberCert, f.MemberKey); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("bad CA: err = %v, want naming %s", err, bad)
		}
		if _, err := build(f.CA, f.MemberCert, f.ClientKey); err == nil {
			t.Error("mismatched key pair accepted")
		}
	}
}
