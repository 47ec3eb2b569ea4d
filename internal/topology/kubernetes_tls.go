package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/pki"
)

// PrepareTLS makes the TLS files of a Kubernetes replica exist before it
// starts: when topology.kubernetes.tlsSecret is set, it ensures that Secret
// (pki.EnsureSecret: created at first start with SANs covering every
// replica of the StatefulSet, whatever the count) and writes it to
// tls.caFile, tls.certFile and tls.keyFile. Without tlsSecret, or with
// another topology source, it does nothing: the files are the user's.
//
// Transient API errors are retried until ctx ends; an unusable Secret is
// returned at once.
func PrepareTLS(ctx context.Context, cfg config.Config, lg *zap.Logger) error {
	k := cfg.Topology.Kubernetes
	if cfg.Topology.Source != config.TopologyKubernetes || k == nil || k.TLSSecret == "" {
		return nil
	}
	if lg == nil {
		lg = zap.NewNop()
	}
	rc, err := RESTConfig(*k)
	if err != nil {
		return err
	}
	client, err := newKubeClient(rc, k.Namespace)
	if err != nil {
		return err
	}
	opts := pki.Options{DNSNames: k.DNSNames(), IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
	if k.AdvertiseHost != "" {
		if ip := net.ParseIP(k.AdvertiseHost); ip != nil {
			opts.IPs = append(opts.IPs, ip)
		} else {
			opts.DNSNames = append(opts.DNSNames, k.AdvertiseHost)
		}
	}
	wait := 500 * time.Millisecond
	for {
		b, err := pki.EnsureSecret(ctx, secretClient{client.secrets()}, k.Namespace, k.TLSSecret, opts)
		if err == nil {
			if err := b.WriteFiles(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
				return fmt.Errorf("topology: tls secret %s: %w", k.TLSSecret, err)
			}
			lg.Info("tls files written from secret", zap.String("secret", k.TLSSecret), zap.String("cert-file", cfg.TLS.CertFile))
			return nil
		}
		if errors.Is(err, pki.ErrBadSecret) {
			return err
		}
		lg.Warn("tls secret not ready; retrying", zap.Error(err), zap.Duration("retry-in", wait))
		select {
		case <-ctx.Done():
			return fmt.Errorf("topology: %w (gave up: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}
