package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ServerConfig returns a TLS configuration for a vetcd listener (etcd
// client, etcd peer or agent port). It presents the certificate in
// certFile/keyFile and requires every client to present a certificate
// signed by the CA in caFile, which is what makes the cluster mTLS only.
func ServerConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, cert, err := load(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientConfig returns a TLS configuration for dialing a vetcd listener.
// It trusts only the CA in caFile (not the system roots, since the
// cluster CA is private) and presents the certificate in
// certFile/keyFile. ServerName is left empty so that the dialer derives it
// from the address it connects to.
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, cert, err := load(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}, nil
}

// load reads the CA pool and key pair shared by ServerConfig and
// ClientConfig.
func load(caFile, certFile, keyFile string) (*x509.CertPool, tls.Certificate, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, tls.Certificate{}, fmt.Errorf("%s: no valid PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, err)
	}
	return pool, cert, nil
}
