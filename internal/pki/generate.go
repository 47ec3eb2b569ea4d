package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// PEM block types written and accepted.
const (
	pemCertificate = "CERTIFICATE"
	pemPKCS8       = "PRIVATE KEY"
	pemEC          = "EC PRIVATE KEY"
	pemPKCS1       = "RSA PRIVATE KEY"
)

// NewCA creates a self-signed CA certificate with a fresh ECDSA P-256 key
// and returns both PEM encoded (the key as PKCS #8). It does no I/O so the
// result can go to files or to a Kubernetes Secret alike. A zero validity
// means DefaultCAValidity; the certificate is valid from now-1h to allow
// for clock skew. The CA may only sign leaves (MaxPathLen 0).
func NewCA(commonName string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	certPEM, err = selfSign(key, commonName, validity, now)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// selfSign makes a CA certificate for an existing key. Ensure uses it to
// recover a CA whose certificate was lost but whose key survived: leaves
// signed under the old certificate still verify against the new one,
// because subject, key and key identifier are unchanged.
func selfSign(key crypto.Signer, commonName string, validity time.Duration, now time.Time) ([]byte, error) {
	switch {
	case validity < 0:
		return nil, fmt.Errorf("new CA: negative validity %v", validity)
	case validity == 0:
		validity = DefaultCAValidity
	}
	if commonName == "" {
		return nil, errors.New("new CA: empty common name")
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA: sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), nil
}

// NewLeaf creates a certificate signed by the given CA, with a fresh ECDSA
// P-256 key, both PEM encoded (the key as PKCS #8). server and client
// select the ServerAuth and ClientAuth extended key usages; at least one is
// required. opts supplies the SANs and lifetime; the certificate never
// outlives the CA. It does no I/O, like NewCA.
func NewLeaf(caCertPEM, caKeyPEM []byte, commonName string, server, client bool, opts Options, now time.Time) (certPEM, keyPEM []byte, err error) {
	ca, err := parseCert(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("new leaf: CA certificate: %w", err)
	}
	caKey, err := parseKey(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("new leaf: CA key: %w", err)
	}
	if err := checkCA(ca, caKey, now); err != nil {
		return nil, nil, fmt.Errorf("new leaf: %w", err)
	}
	return newLeaf(ca, caKey, commonName, server, client, opts, now)
}

// newLeaf is NewLeaf for an already parsed and checked CA.
func newLeaf(ca *x509.Certificate, caKey crypto.Signer, commonName string, server, client bool, opts Options, now time.Time) (certPEM, keyPEM []byte, err error) {
	if !server && !client {
		return nil, nil, errors.New("new leaf: neither server nor client usage requested")
	}
	if commonName == "" {
		return nil, nil, errors.New("new leaf: empty common name")
	}
	validity, err := opts.leafValidity()
	if err != nil {
		return nil, nil, fmt.Errorf("new leaf: %w", err)
	}
	dns, ips, err := normalizeSANs(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("new leaf: %w", err)
	}
	var usages []x509.ExtKeyUsage
	if server {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	if client {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("new leaf: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             maxTime(now.Add(-clockSkew), ca.NotBefore),
		NotAfter:              leafNotAfter(ca, validity, now),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usages,
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("new leaf %q: sign: %w", commonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), keyPEM, nil
}

// leafNotAfter is the expiry a leaf issued now would get: its validity,
// capped at the CA's expiry so the chain never outlives its root.
func leafNotAfter(ca *x509.Certificate, validity time.Duration, now time.Time) time.Time {
	return minTime(now.Add(validity), ca.NotAfter)
}

// checkCA reports whether ca can sign leaves with key at time now.
func checkCA(ca *x509.Certificate, key crypto.Signer, now time.Time) error {
	if !ca.BasicConstraintsValid || !ca.IsCA {
		return errors.New("certificate is not a CA")
	}
	if ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("CA certificate may not sign certificates (no CertSign key usage)")
	}
	if !keyMatches(ca, key) {
		return errors.New("CA certificate does not match CA key")
	}
	if now.After(ca.NotAfter) {
		return fmt.Errorf("CA certificate expired at %s", ca.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(ca.NotBefore) {
		return fmt.Errorf("CA certificate not valid before %s", ca.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// keyMatches reports whether key is the private key of cert.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// normalizeSANs validates and deduplicates the SANs of opts, so that the
// certificate stays small and coverage checks compare like with like.
func normalizeSANs(opts Options) ([]string, []net.IP, error) {
	var dns []string
	for _, name := range opts.DNSNames {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			return nil, nil, errors.New("empty DNS name")
		}
		if !slices.Contains(dns, name) {
			dns = append(dns, name)
		}
	}
	var ips []net.IP
	for _, ip := range opts.IPs {
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		} else if len(ip) != net.IPv6len {
			return nil, nil, fmt.Errorf("invalid IP address %v", ip)
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	return dns, ips, nil
}

// newKey generates the ECDSA P-256 key used for every certificate: small,
// fast and supported by every TLS stack etcd clients use.
func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return key, nil
}

// newSerial returns a random, positive 128-bit serial number, so that
// certificates reissued from the same CA never share a serial.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// encodeKey PEM-encodes key as PKCS #8.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPKCS8, Bytes: der}), nil
}

// parseCert decodes the first PEM block of data, which must be a
// certificate.
func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	if block.Type != pemCertificate {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, pemCertificate)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// parseKey decodes the first PEM block of data, which must be a private
// key in PKCS #8, SEC 1 ("EC PRIVATE KEY") or PKCS #1 form, so that keys
// made by openssl or cfssl are accepted too.
func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case pemPKCS8:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case pemEC:
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case pemPKCS1:
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, pemPKCS8)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return signer, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
