// Command writer is the steady write load of bench/membership.sh: one
// client, puts back to back to one key through all the given endpoints,
// each put with a short timeout. It prints the wall-clock time of every
// successful put (Unix seconds, microseconds), one per line, so that the
// script can find the longest gap between successful writes around a fault.
// Times are printed when the put returns, so a gap includes the time the
// first put after the fault waited.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		endpoints = flag.String("endpoints", "", "comma-separated client URLs (required)")
		cacert    = flag.String("cacert", "", "CA certificate file")
		cert      = flag.String("cert", "", "client certificate file")
		key       = flag.String("key", "", "client key file")
		timeout   = flag.Duration("timeout", 500*time.Millisecond, "deadline of one put")
		pause     = flag.Duration("pause", 0, "pause after a failed put (a failed put that returns at once would spin)")
		name      = flag.String("key-name", "bench-writer", "the key written")
	)
	flag.Parse()
	if *endpoints == "" {
		return errors.New("-endpoints is required")
	}
	if *timeout <= 0 {
		return fmt.Errorf("-timeout %v: must be positive", *timeout)
	}
	var tlsConfig *tls.Config
	if *cacert != "" || *cert != "" {
		info := transport.TLSInfo{TrustedCAFile: *cacert, CertFile: *cert, KeyFile: *key}
		c, err := info.ClientConfig()
		if err != nil {
			return fmt.Errorf("client TLS: %w", err)
		}
		tlsConfig = c
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: *timeout,
		TLS:         tlsConfig,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer cli.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	last := time.Now()
	for i := 0; ctx.Err() == nil; i++ {
		pctx, cancel := context.WithTimeout(ctx, *timeout)
		_, err := cli.Put(pctx, *name, fmt.Sprint(i))
		cancel()
		if err != nil {
			if *pause > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(*pause):
				}
			}
			continue
		}
		now := time.Now()
		fmt.Fprintf(out, "%d.%06d\n", now.Unix(), now.Nanosecond()/1000)
		// Flush at least every 100 ms, so that the script can see that
		// writes succeed again while the writer runs.
		if now.Sub(last) > 100*time.Millisecond {
			if err := out.Flush(); err != nil {
				return fmt.Errorf("stdout: %w", err)
			}
			last = now
		}
	}
	return nil
}
