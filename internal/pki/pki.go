// Package pki creates and loads the certificates that secure a vetcd
// cluster with mutual TLS.
//
// A vetcd cluster uses one private CA and two leaf certificates: a member
// certificate, shared by every replica for its etcd client, etcd peer and
// agent ports (so it carries both server and client auth), and an admin
// client certificate used by the vetcd CLI and etcdctl.
//
// Generation (NewCA, NewLeaf) is pure and does no I/O so that a future
// Kubernetes mode can store the same PEM bytes in a Secret; Ensure adds
// the file handling used by "vetcd up".
package pki

import (
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// Common names of the certificates Ensure creates. They are fixed so that
// operators recognise vetcd certificates and so that Ensure can tell its
// own admin certificate apart from a foreign one.
const (
	// CACommonName names the cluster CA.
	CACommonName = "vetcd-ca"
	// MemberCommonName names the member certificate shared by replicas.
	MemberCommonName = "vetcd-member"
	// AdminCommonName names the admin client certificate used by the CLI
	// and etcdctl.
	AdminCommonName = "vetcd-admin"
)

// Default lifetimes. A local development cluster should not break because
// certificates expired, so both are long; leaves are shorter than the CA so
// that they can be reissued from the same CA before the CA runs out.
const (
	// DefaultCAValidity is the lifetime of a CA made by Ensure, and of one
	// made by NewCA when it is given a zero validity.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultLeafValidity is the lifetime of a leaf certificate when
	// Options.Validity is zero. A leaf never outlives the CA that signs it.
	DefaultLeafValidity = 5 * 365 * 24 * time.Hour
)

// clockSkew backdates NotBefore so that certificates are usable at once on
// hosts whose clocks lag the issuer's a little.
const clockSkew = time.Hour

// renewBefore is how long before expiry Ensure reissues a leaf, so that a
// "vetcd up" never starts replicas with a certificate about to expire.
const renewBefore = 30 * 24 * time.Hour

// Files names the PEM files of a PKI directory. It exists so that every
// part of vetcd (supervisor, replicas, CLI) agrees on the layout.
type Files struct {
	CA, CAKey, MemberCert, MemberKey, ClientCert, ClientKey string
}

// FilesIn returns the file names of the PKI directory dir: ca.crt, ca.key,
// member.crt, member.key, client.crt and client.key.
func FilesIn(dir string) Files {
	return Files{
		CA:         filepath.Join(dir, "ca.crt"),
		CAKey:      filepath.Join(dir, "ca.key"),
		MemberCert: filepath.Join(dir, "member.crt"),
		MemberKey:  filepath.Join(dir, "member.key"),
		ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey:  filepath.Join(dir, "client.key"),
	}
}

// Options selects the subject alternative names and lifetime of leaf
// certificates. Server certificates need SANs for every name and address
// clients dial, or hostname verification fails.
type Options struct {
	// DNSNames are DNS SANs, wildcards such as "*.vetcd.local" included.
	DNSNames []string
	// IPs are IP address SANs.
	IPs []net.IP
	// Validity is the lifetime of leaf certificates; zero means
	// DefaultLeafValidity. It is capped at the signing CA's expiry. The CA
	// lifetime is not taken from here: Ensure always uses
	// DefaultCAValidity.
	Validity time.Duration
}

// LocalReplicaNames is how many "vetcd-N" DNS names LocalOptions covers.
// It is the largest local cluster whose replicas can be addressed by name
// without reissuing the member certificate.
const LocalReplicaNames = 32

// LocalOptions returns the SANs "vetcd up" needs for a cluster on this
// host: localhost, 127.0.0.1, ::1, vetcd-0 … vetcd-31 and *.vetcd.local.
// The names are fixed rather than derived from the replica count so that
// scaling a local cluster never invalidates the member certificate.
func LocalOptions() Options {
	dns := []string{"localhost"}
	for i := range LocalReplicaNames {
		dns = append(dns, fmt.Sprintf("vetcd-%d", i))
	}
	dns = append(dns, "*.vetcd.local")
	return Options{
		DNSNames: dns,
		IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
}

// leafValidity returns the configured leaf lifetime or the default.
func (o Options) leafValidity() (time.Duration, error) {
	switch {
	case o.Validity < 0:
		return 0, fmt.Errorf("negative validity %v", o.Validity)
	case o.Validity == 0:
		return DefaultLeafValidity, nil
	default:
		return o.Validity, nil
	}
}
