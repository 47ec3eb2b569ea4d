package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Ensure makes sure dir holds a CA, a member certificate and an admin
// client certificate, so that "vetcd up" can start replicas with mTLS on
// every port and the CLI can talk to them.
//
// The member certificate carries server and client auth and the SANs of
// opts; every replica uses it for its client, peer and agent ports. The
// admin certificate (CN "vetcd-admin") carries client auth only and is
// used by the CLI and etcdctl.
//
// Ensure is idempotent: valid files are kept byte for byte, so a second
// "vetcd up" reuses them. Missing pieces are filled in from the existing
// CA: a leaf that is missing, does not match its key, is not signed by the
// CA, lacks a requested SAN or expires within 30 days is reissued. A CA
// key whose certificate is missing (an interrupted first run) gets a new
// self-signed certificate for the same key, under which existing leaves
// stay valid.
//
// Ensure never destroys trust silently: a file that is not valid PEM, a CA
// certificate that does not match its key or has expired, or a CA
// certificate without its key is an error naming the file, and then
// nothing is written.
//
// Files are written with mode 0600 (dir 0700), each atomically through a
// temporary file in dir that is synced and renamed into place.
func Ensure(dir string, opts Options) (Files, error) {
	return ensure(dir, opts, time.Now())
}

// leafSpec describes one leaf certificate Ensure maintains.
type leafSpec struct {
	certFile, keyFile string
	commonName        string
	server, client    bool
	opts              Options
}

// pemFile is one file of the PKI directory and its current contents.
type pemFile struct {
	name string
	data []byte // nil if missing
}

// ensure is Ensure at a given time, for tests.
func ensure(dir string, opts Options, now time.Time) (Files, error) {
	files := FilesIn(dir)
	if _, err := opts.leafValidity(); err != nil {
		return files, fmt.Errorf("pki options: %w", err)
	}
	if _, _, err := normalizeSANs(opts); err != nil {
		return files, fmt.Errorf("pki options: %w", err)
	}

	cur, err := readFiles(files)
	if err != nil {
		return files, err
	}
	// Parse everything up front: garbage anywhere is an error before any
	// decision is taken or any byte written.
	certs := map[string]*x509.Certificate{}
	keys := map[string]crypto.Signer{}
	for _, name := range []string{files.CA, files.MemberCert, files.ClientCert} {
		if data := cur[name]; data != nil {
			if certs[name], err = parseCert(data); err != nil {
				return files, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	for _, name := range []string{files.CAKey, files.MemberKey, files.ClientKey} {
		if data := cur[name]; data != nil {
			if keys[name], err = parseKey(data); err != nil {
				return files, fmt.Errorf("%s: %w", name, err)
			}
		}
	}

	var writes []pemFile // in write order: keys before their certificates
	ca, caKey := certs[files.CA], keys[files.CAKey]
	switch {
	case ca == nil && caKey == nil:
		certPEM, keyPEM, err := NewCA(CACommonName, DefaultCAValidity, now)
		if err != nil {
			return files, err
		}
		writes = append(writes, pemFile{files.CAKey, keyPEM}, pemFile{files.CA, certPEM})
		if ca, err = parseCert(certPEM); err != nil {
			return files, fmt.Errorf("new CA: %w", err)
		}
		if caKey, err = parseKey(keyPEM); err != nil {
			return files, fmt.Errorf("new CA: %w", err)
		}
	case ca == nil:
		// The key survived an interrupted run or a lost certificate: keep
		// it, so that nothing it signed loses trust.
		certPEM, err := selfSign(caKey, CACommonName, DefaultCAValidity, now)
		if err != nil {
			return files, fmt.Errorf("%s: %w", files.CA, err)
		}
		writes = append(writes, pemFile{files.CA, certPEM})
		if ca, err = parseCert(certPEM); err != nil {
			return files, fmt.Errorf("new CA: %w", err)
		}
	case caKey == nil:
		return files, fmt.Errorf("%s: missing, so the CA in %s cannot sign certificates (restore the key, or remove %s to start over with a new CA)", files.CAKey, files.CA, dir)
	default:
		if err := checkCA(ca, caKey, now); err != nil {
			return files, fmt.Errorf("%s: %w (remove %s to start over with a new CA)", files.CA, err, dir)
		}
	}

	leaves := []leafSpec{
		{files.MemberCert, files.MemberKey, MemberCommonName, true, true, opts},
		{files.ClientCert, files.ClientKey, AdminCommonName, false, true, Options{Validity: opts.Validity}},
	}
	for _, l := range leaves {
		if leafOK(certs[l.certFile], keys[l.keyFile], ca, l, now) {
			continue
		}
		certPEM, keyPEM, err := newLeaf(ca, caKey, l.commonName, l.server, l.client, l.opts, now)
		if err != nil {
			return files, fmt.Errorf("%s: %w", l.certFile, err)
		}
		writes = append(writes, pemFile{l.keyFile, keyPEM}, pemFile{l.certFile, certPEM})
	}

	if len(writes) == 0 {
		return files, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return files, fmt.Errorf("create PKI directory: %w", err)
	}
	for _, w := range writes {
		if err := writeAtomic(w.name, w.data); err != nil {
			return files, err
		}
	}
	if err := syncDir(dir); err != nil {
		return files, err
	}
	return files, nil
}

// readFiles reads every file of files; missing ones map to nil.
func readFiles(files Files) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, name := range []string{files.CA, files.CAKey, files.MemberCert, files.MemberKey, files.ClientCert, files.ClientKey} {
		data, err := os.ReadFile(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, fmt.Errorf("read PKI file: %w", err)
		}
		out[name] = data
	}
	return out, nil
}

// leafOK reports whether an existing leaf can be kept: it has its key, is
// signed by ca for the usages of spec, covers the requested SANs and is
// not about to expire (unless reissuing would not extend it because the CA
// itself expires first).
func leafOK(cert *x509.Certificate, key crypto.Signer, ca *x509.Certificate, spec leafSpec, now time.Time) bool {
	if cert == nil || key == nil || !keyMatches(cert, key) {
		return false
	}
	if cert.Subject.CommonName != spec.commonName {
		return false
	}
	var usages []x509.ExtKeyUsage
	if spec.server {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	if spec.client {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, u := range usages {
		_, err := cert.Verify(x509.VerifyOptions{
			Roots:       roots,
			CurrentTime: now,
			KeyUsages:   []x509.ExtKeyUsage{u},
		})
		if err != nil {
			return false
		}
	}
	if !coversSANs(cert, spec.opts) {
		return false
	}
	validity, err := spec.opts.leafValidity()
	if err != nil {
		return false
	}
	renew := min(renewBefore, validity/2)
	if cert.NotAfter.Sub(now) < renew && leafNotAfter(ca, validity, now).After(cert.NotAfter) {
		return false
	}
	return true
}

// coversSANs reports whether cert lists every SAN of opts. Names are
// compared literally (a wildcard request needs the wildcard in the
// certificate) because that is what was asked for.
func coversSANs(cert *x509.Certificate, opts Options) bool {
	dns, ips, err := normalizeSANs(opts)
	if err != nil {
		return false
	}
	for _, name := range dns {
		if !slices.ContainsFunc(cert.DNSNames, func(have string) bool { return strings.EqualFold(have, name) }) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, func(have net.IP) bool { return have.Equal(ip) }) {
			return false
		}
	}
	return true
}

// writeAtomic replaces name with data so that readers see the old or the
// new contents, never a mix: a temporary file in the same directory is
// written with mode 0600, synced and renamed over name.
func writeAtomic(name string, data []byte) (err error) {
	dir, base := filepath.Split(name)
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
