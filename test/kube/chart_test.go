package kube

import (
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/vetcd/vetcd/internal/config"
	"github.com/vetcd/vetcd/internal/testtools"
)

// chartDir is deploy/helm/vetcd, found from this file.
func chartDir(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "helm", "vetcd")
}

// helm is testtools.Helm.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return testtools.Helm(t, args...)
}

// rendered is the chart's output decoded into typed objects.
type rendered struct {
	sts       *appsv1.StatefulSet
	services  map[string]*corev1.Service
	pdb       *policyv1.PodDisruptionBudget
	role      *rbacv1.Role
	binding   *rbacv1.RoleBinding
	sa        *corev1.ServiceAccount
	configMap *corev1.ConfigMap
	kinds     []string
}

// render runs `helm template` for release "vetcd" in namespace "team-a"
// with the given --set flags and decodes every document.
func render(t *testing.T, sets ...string) rendered {
	t.Helper()
	args := []string{"template", "vetcd", chartDir(t), "--namespace", "team-a"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", sets, err, out)
	}
	r := rendered{services: map[string]*corev1.Service{}}
	decode := scheme.Codecs.UniversalDeserializer()
	for _, doc := range strings.Split(out, "\n---") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, gvk, err := decode.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("rendered document does not decode into a Kubernetes type: %v\n%s", err, doc)
		}
		r.kinds = append(r.kinds, gvk.Kind)
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			r.sts = o
		case *corev1.Service:
			r.services[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			r.pdb = o
		case *rbacv1.Role:
			r.role = o
		case *rbacv1.RoleBinding:
			r.binding = o
		case *corev1.ServiceAccount:
			r.sa = o
		case *corev1.ConfigMap:
			r.configMap = o
		default:
			t.Fatalf("unexpected kind %v", gvk)
		}
	}
	if r.sts == nil || r.configMap == nil {
		t.Fatalf("no StatefulSet or ConfigMap rendered; kinds %v", r.kinds)
	}
	return r
}

func stripComments(doc string) string {
	var keep []string
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// vetcdConfig parses and validates the rendered config as replica
// vetcd-1 would, with the downward API's environment.
func (r rendered) vetcdConfig(t *testing.T) config.Config {
	t.Helper()
	t.Setenv(config.EnvPodName, "vetcd-1")
	t.Setenv(config.EnvPodNamespace, "team-a")
	c, err := config.Parse([]byte(r.configMap.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, r.configMap.Data["config.yaml"])
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("rendered config is invalid: %v\n%s", err, r.configMap.Data["config.yaml"])
	}
	return c
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func TestChartDefaults(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", chartDir(t)); err != nil {
		t.Fatalf("helm lint --strict: %v\n%s", err, out)
	}
	r := render(t)
	s := r.sts
	if s.Name != "vetcd" || *s.Spec.Replicas != 3 {
		t.Errorf("StatefulSet %s with %d replicas; want vetcd with 3", s.Name, *s.Spec.Replicas)
	}
	if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q, want Parallel", s.Spec.PodManagementPolicy)
	}
	if p := s.Spec.PersistentVolumeClaimRetentionPolicy; p == nil ||
		p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType || p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("PVC retention %+v, want Retain/Retain", p)
	}
	if s.Spec.ServiceName != "vetcd-headless" {
		t.Errorf("serviceName %q", s.Spec.ServiceName)
	}
	if len(s.Spec.VolumeClaimTemplates) != 1 || s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "5Gi" {
		t.Errorf("volumeClaimTemplates %+v, want one of 5Gi", s.Spec.VolumeClaimTemplates)
	}

	// Services: headless publishes not-ready pods; the client one exists.
	h := r.services["vetcd-headless"]
	if h == nil || h.Spec.ClusterIP != corev1.ClusterIPNone || !h.Spec.PublishNotReadyAddresses {
		t.Errorf("headless service %+v: want clusterIP None and publishNotReadyAddresses", h)
	}
	if c := r.services["vetcd"]; c == nil || c.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("client service %+v", c)
	}
	if r.pdb == nil || r.pdb.Spec.MaxUnavailable == nil || r.pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget %+v: want maxUnavailable 1", r.pdb)
	}
	if r.pdb != nil && !labelsMatch(r.pdb.Spec.Selector.MatchLabels, s.Spec.Template.Labels) {
		t.Errorf("PDB selector %v does not select the pods %v", r.pdb.Spec.Selector.MatchLabels, s.Spec.Template.Labels)
	}

	// The pod: probes, security, identity from the downward API.
	pod := s.Spec.Template.Spec
	if len(pod.InitContainers) != 0 || len(pod.Containers) != 1 {
		t.Fatalf("containers %d, init %d; want vetcd alone", len(pod.Containers), len(pod.InitContainers))
	}
	c := container(t, pod, "vetcd")
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v: want /readyz", c.ReadinessProbe)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s probe %+v: want /healthz (never /readyz: it fails during quorum loss)", name, p)
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet.Port.String() != "metrics" {
		t.Errorf("liveness port %v", c.LivenessProbe.HTTPGet.Port)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want read-only root fs and no privilege escalation", sc)
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want non-root", psc)
	}
	if c.Resources.Requests.Memory().IsZero() {
		t.Errorf("no memory request")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("downward API env %v", env)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 45 {
		t.Errorf("terminationGracePeriodSeconds %v, want leaveTimeout 30s + 15", pod.TerminationGracePeriodSeconds)
	}
	if pod.ServiceAccountName != "vetcd" || r.sa == nil || r.sa.Name != "vetcd" {
		t.Errorf("service account %q / %+v", pod.ServiceAccountName, r.sa)
	}
	// Every writable path is a volume: the root fs is read-only.
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = !m.ReadOnly
	}
	for _, p := range []string{"/var/lib/vetcd", "/var/run/vetcd/tls", "/tmp"} {
		if !mounts[p] {
			t.Errorf("%s is not a writable mount (mounts %v)", p, mounts)
		}
	}

	// RBAC: exactly what the topology source and the TLS Secret need.
	if r.role == nil || r.binding == nil {
		t.Fatalf("no Role or RoleBinding")
	}
	want := []struct {
		group, resource, name, verb string
	}{
		{"apps", "statefulsets", "vetcd", "get"},
		{"apps", "statefulsets", "vetcd", "watch"},
		{"", "pods", "vetcd-2", "get"},
		{"", "pods", "", "list"},
		{"", "configmaps", "vetcd-cluster", "update"},
		{"", "configmaps", "", "create"},
		{"", "secrets", "vetcd-tls", "get"},
		{"", "secrets", "", "create"},
	}
	for _, w := range want {
		if !allows(r.role.Rules, w.group, w.resource, w.name, w.verb) {
			t.Errorf("role does not allow %s %s/%s %q", w.verb, w.group, w.resource, w.name)
		}
	}
	refused := []struct {
		group, resource, name, verb string
	}{
		{"apps", "statefulsets", "vetcd", "update"},
		{"apps", "statefulsets", "other", "get"},
		{"", "pods", "vetcd-0", "delete"},
		{"", "configmaps", "other", "update"},
		{"", "secrets", "other", "get"},
		{"", "secrets", "", "list"},
	}
	for _, w := range refused {
		if allows(r.role.Rules, w.group, w.resource, w.name, w.verb) {
			t.Errorf("role allows %s %s/%s %q: more than vetcd needs", w.verb, w.group, w.resource, w.name)
		}
	}
	if r.binding.RoleRef.Name != r.role.Name || len(r.binding.Subjects) != 1 || r.binding.Subjects[0].Name != pod.ServiceAccountName {
		t.Errorf("role binding %+v", r.binding)
	}

	// The rendered vetcd config parses, and its topology names the
	// objects the chart made.
	cfg := r.vetcdConfig(t)
	k := cfg.Topology.Kubernetes
	if k.StatefulSet != s.Name || k.Service != h.Name || k.ClusterRecord != "vetcd-cluster" || k.TLSSecret != "vetcd-tls" || k.Namespace != "team-a" {
		t.Errorf("topology.kubernetes %+v does not match the chart's objects", k)
	}
	if cfg.ClientURL != "https://vetcd-1.vetcd-headless.team-a.svc:2379" || cfg.ListenClientURL != "https://0.0.0.0:2379" {
		t.Errorf("derived client URL %s, listen %s", cfg.ClientURL, cfg.ListenClientURL)
	}
	if !cfg.IsEnabled() || cfg.MigrateFromDeployedEtcd || cfg.EffectiveSnapshotCount() != config.DefaultSnapshotCount {
		t.Errorf("seed keys: enabled %v migrate %v snapshotCount %d", cfg.IsEnabled(), cfg.MigrateFromDeployedEtcd, cfg.EffectiveSnapshotCount())
	}
	// The probes hit the metrics port the config serves on.
	if !strings.HasSuffix(cfg.ListenMetricsURL, ":2382") || !hasPort(c, "metrics", 2382) {
		t.Errorf("metrics listen %s vs container ports %v", cfg.ListenMetricsURL, c.Ports)
	}
	// The pod template changes when the config does (a rollout).
	if s.Spec.Template.Annotations["checksum/config"] == "" {
		t.Errorf("no config checksum annotation")
	}
}

func TestChartValuesReachTheConfig(t *testing.T) {
	r := render(t,
		"replicas=5",
		"persistence.size=20Gi",
		"persistence.storageClass=fast",
		"controlPlane.backingStore.etcd.embedded.snapshotCount=5000",
		"controlPlane.backingStore.etcd.embedded.migrateFromDeployedEtcd=true",
		"controlPlane.backingStore.etcd.embedded.extraArgs={--quota-backend-bytes=4294967296,--auto-compaction-retention=1h}",
		"snapshots.schedule=@every 6h",
		"snapshots.target=s3://backups/vetcd/",
		"snapshots.retention=7",
		"recovery.unresponsiveAfter=45s",
		"recovery.learnerStuckAfter=3m",
		"shutdown.leaveTimeout=1m",
		"podDisruptionBudget.enabled=false",
	)
	if *r.sts.Spec.Replicas != 5 {
		t.Errorf("replicas %d", *r.sts.Spec.Replicas)
	}
	pvc := r.sts.Spec.VolumeClaimTemplates[0].Spec
	if pvc.Resources.Requests.Storage().String() != "20Gi" || pvc.StorageClassName == nil || *pvc.StorageClassName != "fast" {
		t.Errorf("PVC %+v", pvc)
	}
	if r.pdb != nil {
		t.Errorf("PDB rendered although disabled")
	}
	if g := r.sts.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 75 {
		t.Errorf("terminationGracePeriodSeconds %v, want 60+15", g)
	}
	cfg := r.vetcdConfig(t)
	if cfg.SnapshotCount != 5000 || !cfg.MigrateFromDeployedEtcd ||
		!slices.Equal(cfg.ExtraArgs, []string{"--quota-backend-bytes=4294967296", "--auto-compaction-retention=1h"}) {
		t.Errorf("seed keys did not reach the config: snapshotCount %d migrate %v extraArgs %v", cfg.SnapshotCount, cfg.MigrateFromDeployedEtcd, cfg.ExtraArgs)
	}
	if cfg.Snapshots.Schedule != "@every 6h" || cfg.Snapshots.Target != "s3://backups/vetcd/" || cfg.Snapshots.Retention != 7 {
		t.Errorf("snapshots %+v", cfg.Snapshots)
	}
	if cfg.Recovery.UnresponsiveAfter.String() != "45s" || cfg.Recovery.LearnerStuckAfter.String() != "3m0s" || cfg.Shutdown.LeaveTimeout.String() != "1m0s" {
		t.Errorf("recovery %+v shutdown %+v", cfg.Recovery, cfg.Shutdown)
	}
	// The vCluster section is kept as is in the file.
	if e := cfg.ControlPlane.BackingStore.Etcd.Embedded; e == nil || e.SnapshotCount == nil || *e.SnapshotCount != 5000 {
		t.Errorf("controlPlane.backingStore.etcd.embedded %+v", e)
	}
}

func TestChartUserTLSSecret(t *testing.T) {
	r := render(t, "tls.generate=false", "tls.existingSecret=my-certs")
	cfg := r.vetcdConfig(t)
	if cfg.Topology.Kubernetes.TLSSecret != "" {
		t.Errorf("tlsSecret %q: vetcd must not generate when the user supplies one", cfg.Topology.Kubernetes.TLSSecret)
	}
	var found bool
	for _, v := range r.sts.Spec.Template.Spec.Volumes {
		if v.Name == "tls" {
			found = v.Secret != nil && v.Secret.SecretName == "my-certs"
		}
	}
	if !found {
		t.Errorf("tls volume is not Secret my-certs: %+v", r.sts.Spec.Template.Spec.Volumes)
	}
	if allows(r.role.Rules, "", "secrets", "my-certs", "get") || allows(r.role.Rules, "", "secrets", "", "create") {
		t.Errorf("role grants Secret access that a supplied Secret does not need")
	}
}

func TestChartKubeAPIServerInThePod(t *testing.T) {
	r := render(t, "kubeApiserver.enabled=true", "kubeApiserver.extraArgs={--service-cluster-ip-range=10.96.0.0/12}")
	pod := r.sts.Spec.Template.Spec
	v := container(t, pod, "vetcd")
	if len(pod.InitContainers) != 1 || v.RestartPolicy == nil || *v.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("vetcd is not a native sidecar: init %d, restartPolicy %v", len(pod.InitContainers), v.RestartPolicy)
	}
	if v.StartupProbe == nil {
		t.Errorf("the sidecar needs a startup probe so kube-apiserver waits for it")
	}
	a := container(t, pod, "kube-apiserver")
	args := strings.Join(a.Args, " ")
	for _, want := range []string{"--etcd-servers=https://127.0.0.1:2379", "--etcd-cafile=/var/run/vetcd/tls/ca.crt",
		"--etcd-certfile=/var/run/vetcd/tls/tls.crt", "--etcd-keyfile=/var/run/vetcd/tls/tls.key", "--service-cluster-ip-range=10.96.0.0/12"} {
		if !strings.Contains(args, want) {
			t.Errorf("kube-apiserver args %q lack %q", args, want)
		}
	}
	if !hasPort(a, "kube-apiserver", 6443) {
		t.Errorf("kube-apiserver ports %v", a.Ports)
	}
}

// Invalid values fail `helm template` with a message naming the key.
func TestChartRejectsInvalidValues(t *testing.T) {
	tests := []struct {
		name string
		sets []string
		want string
	}{
		{"a typo in a key", []string{"replicaz=3"}, "replicaz"},
		{"negative replicas", []string{"replicas=-1"}, "replicas"},
		{"a seed key of the wrong type", []string{"controlPlane.backingStore.etcd.embedded.snapshotCount=many"}, "snapshotCount"},
		{"an unknown seed key", []string{"controlPlane.backingStore.etcd.embedded.snapshotCnt=5"}, "snapshotCnt"},
		{"an extraArg that is not a flag", []string{"controlPlane.backingStore.etcd.embedded.extraArgs={quota=1}"}, "extraArgs"},
		{"a bad PVC size", []string{"persistence.size=lots"}, "size"},
		{"a bad duration", []string{"recovery.unresponsiveAfter=soon"}, "unresponsiveAfter"},
		{"a bad snapshot target", []string{"snapshots.target=ftp://x/"}, "target"},
		{"no TLS at all", []string{"tls.generate=false"}, "existingSecret"},
		{"a schedule without a target", []string{"snapshots.schedule=@hourly"}, "snapshots.target is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "vetcd", chartDir(t)}
			for _, s := range tc.sets {
				args = append(args, "--set", s)
			}
			out, err := helm(t, args...)
			if err == nil {
				t.Fatalf("helm template %v succeeded; want an error naming %q", tc.sets, tc.want)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("error does not name %q:\n%s", tc.want, out)
			}
		})
	}
}

// allows reports whether rules grant verb on group/resource (named name;
// "" for a request without a name, such as list or create).
func allows(rules []rbacv1.PolicyRule, group, resource, name, verb string) bool {
	for _, r := range rules {
		if !slices.Contains(r.APIGroups, group) || !slices.Contains(r.Resources, resource) || !slices.Contains(r.Verbs, verb) {
			continue
		}
		if len(r.ResourceNames) == 0 || (name != "" && slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

func hasPort(c corev1.Container, name string, port int32) bool {
	for _, p := range c.Ports {
		if p.Name == name && p.ContainerPort == port {
			return true
		}
	}
	return false
}

// The pod's grace period is shutdown.leaveTimeout plus 15s, whatever the
// duration's form.
func TestChartGracePeriod(t *testing.T) {
	for _, tc := range []struct {
		leave string
		want  int64
	}{{"30s", 45}, {"1m", 75}, {"1m30s", 105}, {"2h", 7215}} {
		r := render(t, "shutdown.leaveTimeout="+tc.leave)
		if g := r.sts.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != tc.want {
			t.Errorf("leaveTimeout %s: terminationGracePeriodSeconds %v, want %d", tc.leave, g, tc.want)
		}
		if got := r.vetcdConfig(t).Shutdown.LeaveTimeout.Seconds(); int64(got)+15 != tc.want {
			t.Errorf("leaveTimeout %s: the config says %vs", tc.leave, got)
		}
	}
}

// restore.from, snapshot encryption and the credentials' environment and
// volumes reach the config and the container.
func TestChartRestoreAndSecrets(t *testing.T) {
	r := render(t,
		"restore.from=s3://backups/vetcd/vetcd-9f3c-20261124T010000Z",
		"restore.decryption.identityFile=/keys/age.txt",
		"snapshots.schedule=@hourly",
		"snapshots.target=s3://backups/vetcd/",
		"snapshots.encryption.recipientsFile=/keys/recipients.txt",
		"extraEnv[0].name=AWS_ACCESS_KEY_ID",
		"extraEnv[0].valueFrom.secretKeyRef.name=s3",
		"extraEnv[0].valueFrom.secretKeyRef.key=id",
		"extraVolumes[0].name=keys",
		"extraVolumes[0].secret.secretName=age",
		"extraVolumeMounts[0].name=keys",
		"extraVolumeMounts[0].mountPath=/keys",
	)
	cfg := r.vetcdConfig(t)
	if cfg.Restore.From != "s3://backups/vetcd/vetcd-9f3c-20261124T010000Z" || cfg.Restore.Decryption.IdentityFile != "/keys/age.txt" {
		t.Errorf("restore %+v", cfg.Restore)
	}
	if cfg.Snapshots.Encryption.RecipientsFile != "/keys/recipients.txt" {
		t.Errorf("snapshots.encryption %+v", cfg.Snapshots.Encryption)
	}
	c := container(t, r.sts.Spec.Template.Spec, "vetcd")
	var env, mount bool
	for _, e := range c.Env {
		env = env || (e.Name == "AWS_ACCESS_KEY_ID" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef.Name == "s3")
	}
	for _, m := range c.VolumeMounts {
		mount = mount || (m.Name == "keys" && m.MountPath == "/keys")
	}
	var vol bool
	for _, v := range r.sts.Spec.Template.Spec.Volumes {
		vol = vol || (v.Name == "keys" && v.Secret != nil && v.Secret.SecretName == "age")
	}
	if !env || !mount || !vol {
		t.Errorf("extraEnv %v, extraVolumeMounts %v, extraVolumes %v", env, mount, vol)
	}
	// Two key sources at once are refused by the schema.
	if out, err := helm(t, "template", "vetcd", chartDir(t), "--set", "restore.from=file:///b/s", "--set", "restore.decryption.identityFile=/a",
		"--set", "restore.decryption.passphraseFile=/b"); err == nil || !strings.Contains(out, "decryption") {
		t.Errorf("two decryption keys accepted: %v\n%s", err, out)
	}
}
