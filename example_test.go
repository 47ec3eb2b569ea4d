package vetcd_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vetcd/vetcd"
	"github.com/vetcd/vetcd/internal/pki"
	"github.com/vetcd/vetcd/internal/topology"
)

// A control-plane binary embeds one replica. Here the topology is a local
// file naming this replica alone; in a pod it is the StatefulSet
// (topology.source: kubernetes) and the same code runs in every replica.
func ExampleStart() {
	dir, err := os.MkdirTemp("", "vetcd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// Certificates: mTLS on every port.
	files, err := pki.Ensure(filepath.Join(dir, "pki"), pki.LocalOptions())
	if err != nil {
		log.Fatal(err)
	}
	self := topology.Replica{Name: "vetcd-0", Ordinal: 0, ClientURL: localURL(), PeerURL: localURL(), AgentURL: localURL()}
	topo := filepath.Join(dir, "topology.json")
	if err := topology.UpdateFile(topo, func(f *topology.File) error {
		f.Desired, f.Replicas = 1, []topology.Replica{self}
		return nil
	}); err != nil {
		log.Fatal(err)
	}

	cfg := vetcd.DefaultConfig()
	cfg.Name = self.Name
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.ClientURL, cfg.PeerURL, cfg.AgentURL = self.ClientURL, self.PeerURL, self.AgentURL
	cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile = files.CA, files.MemberCert, files.MemberKey
	cfg.Topology.File = topo

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := vetcd.Start(ctx, cfg) // no logger option: the replica logs nothing
	if err != nil {
		log.Fatal(err)
	}
	defer r.Shutdown(context.Background()) //nolint:errcheck // the example ends either way
	select {
	case <-r.Ready():
	case <-ctx.Done():
		log.Fatal("not ready within a minute")
	}

	// The API server talks to the member as to any etcd.
	tlsConfig, err := pki.ClientConfig(files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		log.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{r.ClientURL()}, TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/registry/example", "hello"); err != nil {
		log.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/registry/example")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s\n", resp.Kvs[0].Key, resp.Kvs[0].Value)
	// Output: /registry/example = hello
}

// localURL returns an https URL on a free loopback port.
func localURL() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprintf("https://%s", ln.Addr())
}
