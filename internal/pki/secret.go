package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Keys of the TLS Secret: the kubernetes.io/tls pair plus the CA, as
// cert-manager writes them, so that a user-supplied Secret from
// cert-manager fits the same mounts.
const (
	SecretCAKey   = "ca.crt"
	SecretCertKey = corev1.TLSCertKey       // tls.crt
	SecretKeyKey  = corev1.TLSPrivateKeyKey // tls.key
)

// ErrBadSecret means an existing TLS Secret is incomplete or does not fit;
// retrying does not help.
var ErrBadSecret = errors.New("pki: unusable tls secret")

// SecretClient is what EnsureSecret needs of a Kubernetes Secrets client;
// client-go's SecretInterface for one namespace is one.
type SecretClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error)
	Create(ctx context.Context, secret *corev1.Secret, opts metav1.CreateOptions) (*corev1.Secret, error)
}

// Bundle is the PEM data of one TLS Secret: the CA certificate and the
// member certificate and key that every replica shares (server and client
// auth). The CA key is not kept: nothing in a pod needs to sign again, and
// a new CA is made only by deleting the Secret.
type Bundle struct {
	CA, Cert, Key []byte
}

// EnsureSecret returns the TLS Secret name, creating it at first start
// with a new CA and a member certificate covering opts' SANs. Replicas of
// a StatefulSet start in parallel and race to create it: the loser of the
// race reads the winner's Secret, so every replica ends up with the same
// certificate.
//
// An existing Secret is used only if it is complete and valid: the
// certificate matches its key, is signed by the CA for both server and
// client auth, and covers every requested SAN. Otherwise it is an error
// that names the Secret and the problem, and nothing is changed: the
// Secret may be the user's, and replacing a CA would cut the replicas off
// from each other.
func EnsureSecret(ctx context.Context, secrets SecretClient, namespace, name string, opts Options) (Bundle, error) {
	return ensureSecret(ctx, secrets, namespace, name, opts, time.Now())
}

func ensureSecret(ctx context.Context, secrets SecretClient, namespace, name string, opts Options, now time.Time) (Bundle, error) {
	if _, _, err := normalizeSANs(opts); err != nil {
		return Bundle{}, fmt.Errorf("tls secret %s: %w", name, err)
	}
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		b, genErr := newBundle(opts, now)
		if genErr != nil {
			return Bundle{}, fmt.Errorf("tls secret %s: %w", name, genErr)
		}
		created, err := secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:      name,
				Namespace: namespace,
				Labels:    map[string]string{"app.kubernetes.io/managed-by": "vetcd"},
			},
			Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{SecretCAKey: b.CA, SecretCertKey: b.Cert, SecretKeyKey: b.Key},
		}, metav1.CreateOptions{})
		switch {
		case err == nil:
			s = created
		case apierrors.IsAlreadyExists(err):
			// Another replica created it first: use theirs.
			s, err = secrets.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return Bundle{}, fmt.Errorf("tls secret %s: read after a concurrent create: %w", name, err)
			}
		default:
			return Bundle{}, fmt.Errorf("tls secret %s: create: %w", name, err)
		}
	} else if err != nil {
		return Bundle{}, fmt.Errorf("tls secret %s: get: %w", name, err)
	}
	b := Bundle{CA: s.Data[SecretCAKey], Cert: s.Data[SecretCertKey], Key: s.Data[SecretKeyKey]}
	if err := b.check(opts, now); err != nil {
		return Bundle{}, fmt.Errorf("tls secret %s/%s: %w: %w (delete the Secret to have vetcd generate a new one, or fix it)", namespace, name, ErrBadSecret, err)
	}
	return b, nil
}

// newBundle makes a CA and a member certificate for opts.
func newBundle(opts Options, now time.Time) (Bundle, error) {
	caCert, caKey, err := NewCA(CACommonName, DefaultCAValidity, now)
	if err != nil {
		return Bundle{}, err
	}
	cert, key, err := NewLeaf(caCert, caKey, MemberCommonName, true, true, opts, now)
	if err != nil {
		return Bundle{}, err
	}
	return Bundle{CA: caCert, Cert: cert, Key: key}, nil
}

// check verifies that b is complete and usable for opts at now.
func (b Bundle) check(opts Options, now time.Time) error {
	for _, f := range []struct {
		key  string
		data []byte
	}{{SecretCAKey, b.CA}, {SecretCertKey, b.Cert}, {SecretKeyKey, b.Key}} {
		if len(f.data) == 0 {
			return fmt.Errorf("key %s: missing", f.key)
		}
	}
	ca, err := parseCert(b.CA)
	if err != nil {
		return fmt.Errorf("key %s: %w", SecretCAKey, err)
	}
	cert, err := parseCert(b.Cert)
	if err != nil {
		return fmt.Errorf("key %s: %w", SecretCertKey, err)
	}
	key, err := parseKey(b.Key)
	if err != nil {
		return fmt.Errorf("key %s: %w", SecretKeyKey, err)
	}
	if !keyMatches(cert, key) {
		return fmt.Errorf("key %s does not match %s", SecretKeyKey, SecretCertKey)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return fmt.Errorf("%s: not valid for server and client auth under %s: %w", SecretCertKey, SecretCAKey, err)
		}
	}
	if !coversSANs(cert, opts) {
		return fmt.Errorf("%s: does not cover the names %v (it has %v)", SecretCertKey, opts.DNSNames, cert.DNSNames)
	}
	return nil
}

// WriteFiles writes the bundle to the three files (mode 0600, each
// atomically), creating their directories (0700). Files that already hold
// the same bytes are left alone.
func (b Bundle) WriteFiles(caFile, certFile, keyFile string) error {
	for _, f := range []struct {
		name string
		data []byte
	}{{caFile, b.CA}, {certFile, b.Cert}, {keyFile, b.Key}} {
		if f.name == "" {
			return errors.New("write tls files: empty file name")
		}
		if have, err := os.ReadFile(f.name); err == nil && string(have) == string(f.data) {
			continue
		}
		dir := filepath.Dir(f.name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("write tls files: %w", err)
		}
		if err := writeAtomic(f.name, f.data); err != nil {
			return fmt.Errorf("write tls files: %w", err)
		}
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("write tls files: %w", err)
		}
	}
	return nil
}
