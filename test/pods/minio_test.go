package pods

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vetcd/vetcd/internal/testtools"
)

// The MinIO pod's credentials; the chart passes them to vetcd as extraEnv.
const (
	minioUser     = "vetcd-pods"
	minioPassword = "vetcd-pods-secret"
)

type minioPod struct{ bucket string }

// startMinIO runs MinIO as a Deployment with a Service in ns (its image
// built like vetcd's, from the binary the other tests use) and makes a bucket.
func startMinIO(t *testing.T, n *node, ns string) minioPod {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "minio"}
	one := int32(1)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "minio", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "minio", Image: "vetcd.local/minio:dev", ImagePullPolicy: corev1.PullNever,
						Args: []string{"server", "/data", "--address", ":9000"},
						Env: []corev1.EnvVar{{Name: "MINIO_ROOT_USER", Value: minioUser}, {Name: "MINIO_ROOT_PASSWORD", Value: minioPassword},
							{Name: "HOME", Value: "/data"}},
						Ports:          []corev1.ContainerPort{{ContainerPort: 9000}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/minio/health/ready", Port: intstr.FromInt32(9000)}}, PeriodSeconds: 1},
						VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
	if _, err := n.cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "minio", Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 9000, TargetPort: intstr.FromInt32(9000)}}},
	}
	created, err := n.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := minio.New(created.Spec.ClusterIP+":9000", &minio.Options{Creds: credentials.NewStaticV4(minioUser, minioPassword, "")})
	if err != nil {
		t.Fatal(err)
	}
	m := minioPod{bucket: "backups"}
	// Ready first: a bucket made while MinIO still formats its drive is not
	// reliably there afterwards.
	testtools.WaitFor(t, 2*time.Minute, "the MinIO pod Ready", func(ctx context.Context) error {
		d, err := n.cs.AppsV1().Deployments(ns).Get(ctx, "minio", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != 1 {
			out, _ := runErr(10*time.Second, "/", []string{"KUBECONFIG=" + n.kubeconfig}, filepath.Join(n.bin, "kubectl"), "-n", ns, "logs", "deploy/minio", "--tail=5")
			return fmt.Errorf("%d ready; its log: %s", d.Status.ReadyReplicas, out)
		}
		return nil
	})
	testtools.WaitFor(t, 2*time.Minute, "MinIO in a pod makes a bucket", func(ctx context.Context) error {
		if err := cli.MakeBucket(ctx, m.bucket, minio.MakeBucketOptions{}); err != nil {
			if ok, _ := cli.BucketExists(ctx, m.bucket); ok {
				return nil
			}
			return err
		}
		return nil
	})
	return m
}

// restart restarts the node as a reboot would (hack/kube/restart-node.sh).
func (n *node) restart(t *testing.T) {
	t.Helper()
	env := []string{"KUBE_DIR=" + n.dir, "KUBE_BIN=" + n.bin}
	if out, err := runErr(5*time.Minute, n.root, env, filepath.Join("hack", "kube", "restart-node.sh")); err != nil {
		t.Fatalf("hack/kube/restart-node.sh: %v\n%s\n%s", err, out, n.logs())
	}
}

// waitInner waits for the pods' kube-apiserver to answer through the Service.
func (r *release) waitInner(t *testing.T) {
	t.Helper()
	testtools.WaitFor(t, 3*time.Minute, "the pods' kube-apiserver answers through the Service", func(ctx context.Context) error {
		_, err := r.inner.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get namespace default: %w", err)
		}
		return nil
	})
}
