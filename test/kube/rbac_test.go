package kube

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/topology"
)

// The chart's Role is enough for everything a replica does, and no more:
// a kube-apiserver with the RBAC authorizer holds the chart's own
// ServiceAccount, Role, RoleBinding and StatefulSet, and the topology
// source runs as that service account with the chart's own config.
func TestChartRoleSufficesAndIsMinimal(t *testing.T) {
	const ns, saToken = "team-a", "vetcd-sa-token"
	api := Start(t, Options{RBAC: true, Users: map[string]string{saToken: "system:serviceaccount:team-a:vetcd"}})
	admin := api.Client
	ctx := context.Background()
	r := render(t)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, r.sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, r.role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, r.binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AppsV1().StatefulSets(ns).Create(ctx, r.sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The chart's config, as pod vetcd-0 reads it, with the service
	// account's credentials and TLS files in a temporary dir.
	r.vetcdConfig(t) // sets the downward API's environment
	t.Setenv(config.EnvPodName, "vetcd-0")
	cfg, err := config.Parse([]byte(r.configMap.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.TLS = config.TLS{CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	cfg.Topology.Kubernetes.Kubeconfig = api.KubeconfigFor(t, saToken)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	src, err := topology.NewKubernetesFromConfig(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := src.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := src.WaitSynced(wctx); err != nil {
		t.Fatalf("the service account cannot list and watch what the source needs: %v", err)
	}
	if n, err := src.Desired(ctx); err != nil || n != 3 {
		t.Fatalf("Desired = %d, %v; want 3", n, err)
	}
	if gone, err := src.Gone(ctx, 2); err != nil || !gone {
		t.Fatalf("Gone(2) = %v, %v; want true (needs get pods)", gone, err)
	}
	for _, rec := range []string{"founding vetcd-0 at t", "cluster ab founded by vetcd-0 at t"} {
		if err := src.SetClusterRecord(ctx, rec); err != nil {
			t.Fatalf("SetClusterRecord: %v", err)
		}
	}
	if ok, err := src.SwapClusterRecord(ctx, "cluster ab founded by vetcd-0 at t", "cluster ab founded by vetcd-0 at t2"); err != nil || !ok {
		t.Fatalf("SwapClusterRecord = %v, %v", ok, err)
	}
	if err := topology.PrepareTLS(wctx, cfg, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("PrepareTLS as the service account: %v", err)
	}
	// A second replica reads the Secret it did not create.
	if err := topology.PrepareTLS(wctx, cfg, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("PrepareTLS with an existing Secret: %v", err)
	}

	// And nothing more: what a replica never needs is refused.
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Topology.Kubernetes.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	forbidden := map[string]error{}
	_, forbidden["patch its StatefulSet"] = sa.AppsV1().StatefulSets(ns).Patch(ctx, "vetcd", types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{})
	forbidden["delete a pod"] = sa.CoreV1().Pods(ns).Delete(ctx, "vetcd-1", metav1.DeleteOptions{})
	_, forbidden["list secrets"] = sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	_, forbidden["get another secret"] = sa.CoreV1().Secrets(ns).Get(ctx, "other", metav1.GetOptions{})
	_, forbidden["update another configmap"] = sa.CoreV1().ConfigMaps(ns).Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "vetcd-config"}}, metav1.UpdateOptions{})
	_, forbidden["read another namespace"] = sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v; want Forbidden", what, err)
		}
	}
}
