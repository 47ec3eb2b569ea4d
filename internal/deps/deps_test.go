// Package deps pins the modules that the migration, storage, Kubernetes and
// chaos work depends on while that work lands in parallel, so go.mod is
// edited once. Delete this file once every module is imported for real.
package deps

import (
	_ "github.com/anishathalye/porcupine"
	_ "github.com/k3s-io/kine/pkg/endpoint"
	_ "github.com/minio/minio-go/v7"
	_ "k8s.io/client-go/kubernetes"
	_ "modernc.org/sqlite"
	_ "oras.land/oras-go/v2"
)
