package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// Expiry reads the certificate files a replica loads and returns when its
// own certificate (the first in certFile) and the CA that signed it stop
// being valid. Expired TLS is a failure vetcd cannot recover from by
// itself, so both are exported as metrics for an alert well before then.
// The CA is the certificate in caFile that issued the member's (during a
// CA rotation the bundle holds the old and the new CA, and only the
// issuer's expiry breaks the chain); when none did, the earliest expiry in
// caFile.
func Expiry(caFile, certFile string) (ca, member time.Time, err error) {
	cas, err := readCerts(caFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("certificate expiry: CA: %w", err)
	}
	leaves, err := readCerts(certFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("certificate expiry: member certificate: %w", err)
	}
	leaf := leaves[0]
	for _, c := range cas {
		if leaf.CheckSignatureFrom(c) == nil {
			return c.NotAfter, leaf.NotAfter, nil
		}
	}
	earliest := cas[0].NotAfter
	for _, c := range cas[1:] {
		earliest = minTime(earliest, c.NotAfter)
	}
	return earliest, leaf.NotAfter, nil
}

// readCerts parses every CERTIFICATE block of a PEM file; it needs one.
func readCerts(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != pemCertificate {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New(file + ": no PEM certificate")
	}
	return certs, nil
}
