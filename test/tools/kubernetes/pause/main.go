// Command pause is the pod sandbox image's only process for the single-node
// Kubernetes of hack/kube: it sleeps until SIGTERM or SIGINT, as
// registry.k8s.io/pause does, so the node needs no registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
