package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	listersappsv1 "k8s.io/client-go/listers/apps/v1"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/vetcd/vetcd/internal/config"
)

// ClusterRecordKey is the ConfigMap data key holding the cluster record.
const ClusterRecordKey = "record"

// ClusterIDAnnotation is set on the record ConfigMap to the cluster ID
// alone (hex, as etcd prints it) once a cluster is founded, for people and
// tools that look with kubectl.
const ClusterIDAnnotation = "vetcd.io/cluster-id"

// maxKubernetesOrdinal bounds the ordinals Lookup derives: replicas of a
// StatefulSet are named by ordinal, so any ordinal has a name, but
// LookupAll walks until the first unknown one.
const maxKubernetesOrdinal = maxOrdinalScan

// ErrNotSynced means the Kubernetes caches have not listed the
// StatefulSet, its pods and the cluster record yet; nothing can be decided
// on them.
var ErrNotSynced = errors.New("topology: kubernetes caches are not synced yet")

// Kubernetes is the Source of a replica running as a pod of a StatefulSet.
//
// The desired count is the StatefulSet's spec.replicas; a replica is gone
// when its pod object no longer exists (a terminating pod, with a deletion
// timestamp, is still alive); the cluster record is a ConfigMap in the
// namespace. Reads come from informer caches (no API call per question),
// except that "gone" is confirmed with a live GET, since acting on a stale
// "gone" could start a rebuild beside a live member.
//
// Start must run before any other method answers; the methods are safe for
// concurrent use.
type Kubernetes struct {
	k      config.Kubernetes
	self   Replica
	client *kubeClient
	lg     *zap.Logger

	mu      sync.Mutex
	sets    listersappsv1.StatefulSetLister // nil until Start
	records listerscorev1.ConfigMapLister
	synced  []cache.InformerSynced
	pods    listerscorev1.PodLister // nil until the StatefulSet's selector is known
	// podsSynced reports the pod informer's sync; nil until it starts.
	podsSynced cache.InformerSynced
}

var _ Source = (*Kubernetes)(nil)

// RESTConfig returns the client config for k: the kubeconfig file if
// set, else the pod's in-cluster service account.
func RESTConfig(k config.Kubernetes) (*rest.Config, error) {
	if k.Kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("topology: kubernetes in-cluster config (set topology.kubernetes.kubeconfig outside a pod): %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("topology: kubeconfig %s: %w", k.Kubeconfig, err)
	}
	return rc, nil
}

// NewKubernetes returns the Source of the replica self, reading the
// objects named by k (defaults filled by config.Validate) through the API
// server rc points at. Nothing is contacted until Start.
func NewKubernetes(rc *rest.Config, k config.Kubernetes, self Replica, lg *zap.Logger) (*Kubernetes, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	client, err := newKubeClient(rc, k.Namespace)
	if err != nil {
		return nil, err
	}
	return &Kubernetes{k: k, self: self, client: client, lg: lg}, nil
}

// NewKubernetesFromConfig builds the client from cfg's kubeconfig (or the
// in-cluster config) and returns the Source of the replica cfg describes.
// cfg must be validated. Nothing is contacted until Start.
func NewKubernetesFromConfig(cfg config.Config, lg *zap.Logger) (*Kubernetes, error) {
	k := cfg.Topology.Kubernetes
	if k == nil {
		return nil, errors.New("topology: topology.kubernetes: missing; validate the config first")
	}
	rc, err := RESTConfig(*k)
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "vetcd/" + cfg.Name
	return NewKubernetes(rc, *k, ReplicaOf(k, cfg.OrdinalValue()), lg)
}

// Start starts the informers, which run until ctx ends, and returns at
// once. Until they have listed, every method but Self and Lookup answers
// ErrNotSynced; WaitSynced waits for that. The pod informer starts as soon
// as the StatefulSet (and so its pod selector) is seen. Once ctx ends the
// caches keep their last content, so that a replica shutting down can
// still read the desired count.
func (s *Kubernetes) Start(ctx context.Context) error {
	byName := func(name string) func(*metav1.ListOptions) {
		return func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}
	}
	setInf := s.client.statefulSets().informer(&appsv1.StatefulSet{},
		func() runtime.Object { return &appsv1.StatefulSetList{} }, byName(s.k.StatefulSet))
	recInf := s.client.configMaps().informer(&corev1.ConfigMap{},
		func() runtime.Object { return &corev1.ConfigMapList{} }, byName(s.k.ClusterRecord))
	_, err := setInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.startPods(ctx, obj) },
		UpdateFunc: func(_, obj any) { s.startPods(ctx, obj) },
	})
	if err != nil {
		return fmt.Errorf("topology: watch statefulset: %w", err)
	}
	s.mu.Lock()
	s.sets = listersappsv1.NewStatefulSetLister(setInf.GetIndexer())
	s.records = listerscorev1.NewConfigMapLister(recInf.GetIndexer())
	s.synced = []cache.InformerSynced{setInf.HasSynced, recInf.HasSynced}
	s.mu.Unlock()
	go setInf.RunWithContext(ctx)
	go recInf.RunWithContext(ctx)
	s.lg.Info("kubernetes topology started", zap.String("namespace", s.k.Namespace),
		zap.String("statefulset", s.k.StatefulSet), zap.String("service", s.k.Service),
		zap.String("cluster-record", s.k.ClusterRecord))
	return nil
}

// WaitSynced waits until the StatefulSet, ConfigMap and pod caches have
// listed, or ctx ends.
func (s *Kubernetes) WaitSynced(ctx context.Context) error {
	for {
		if s.isSynced(true) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topology: wait for statefulset %s/%s, its pods and configmap %s: %w",
				s.k.Namespace, s.k.StatefulSet, s.k.ClusterRecord, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// isSynced reports whether the StatefulSet and record caches (and, with
// pods, the pod cache) have listed.
func (s *Kubernetes) isSynced(pods bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.synced == nil {
		return false
	}
	for _, f := range s.synced {
		if !f() {
			return false
		}
	}
	return !pods || (s.podsSynced != nil && s.podsSynced())
}

// startPods starts the pod informer, once, with the StatefulSet's own
// selector, so that a namespace full of other pods is never listed.
func (s *Kubernetes) startPods(ctx context.Context, obj any) {
	set, ok := obj.(*appsv1.StatefulSet)
	if !ok || set.Spec.Selector == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pods != nil {
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil {
		s.lg.Warn("statefulset has an invalid selector; pods cannot be watched", zap.Error(err))
		return
	}
	inf := s.client.pods().informer(&corev1.Pod{}, func() runtime.Object { return &corev1.PodList{} },
		func(o *metav1.ListOptions) { o.LabelSelector = sel.String() })
	s.pods = listerscorev1.NewPodLister(inf.GetIndexer())
	s.podsSynced = inf.HasSynced
	go inf.RunWithContext(ctx)
}

// statefulSet returns the StatefulSet from the cache.
func (s *Kubernetes) statefulSet() (*appsv1.StatefulSet, error) {
	if !s.isSynced(false) {
		return nil, ErrNotSynced
	}
	s.mu.Lock()
	sets := s.sets
	s.mu.Unlock()
	set, err := sets.StatefulSets(s.k.Namespace).Get(s.k.StatefulSet)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("topology: statefulset %s/%s not found: %w", s.k.Namespace, s.k.StatefulSet, ErrNoTopology)
	}
	if err != nil {
		return nil, fmt.Errorf("topology: statefulset %s/%s: %w", s.k.Namespace, s.k.StatefulSet, err)
	}
	return set, nil
}

// Self implements Source.
func (s *Kubernetes) Self() Replica { return s.self }

// Desired implements Source: the StatefulSet's spec.replicas (1 when
// unset, as Kubernetes defaults it).
func (s *Kubernetes) Desired(context.Context) (int, error) {
	set, err := s.statefulSet()
	if err != nil {
		return 0, err
	}
	if set.Spec.Replicas == nil {
		return 1, nil
	}
	return int(*set.Spec.Replicas), nil
}

// Lookup implements Source. Every ordinal below 64 has a name and URLs
// derived from the StatefulSet, the headless Service and the namespace,
// whether or not its pod exists.
func (s *Kubernetes) Lookup(_ context.Context, ordinal int) (Replica, bool, error) {
	if ordinal == s.self.Ordinal {
		return s.self, true, nil
	}
	if ordinal < 0 || ordinal >= maxKubernetesOrdinal {
		return Replica{}, false, nil
	}
	return ReplicaOf(&s.k, ordinal), true, nil
}

// ReplicaOf derives the replica with this ordinal from topology.kubernetes.
func ReplicaOf(k *config.Kubernetes, ordinal int) Replica {
	r := k.Replica(ordinal)
	return Replica{
		Name:       r.Name,
		Ordinal:    ordinal,
		ClientURL:  r.ClientURL,
		PeerURL:    r.PeerURL,
		AgentURL:   r.AgentURL,
		MetricsURL: r.MetricsURL,
	}
}

// Gone implements Source: the pod with this ordinal does not exist. The
// cache answers "alive" at once; a "gone" from the cache is confirmed by a
// GET, so a pod created a moment ago is never taken for gone.
func (s *Kubernetes) Gone(ctx context.Context, ordinal int) (bool, error) {
	s.mu.Lock()
	pods, synced := s.pods, s.podsSynced
	s.mu.Unlock()
	if pods == nil || !synced() {
		return false, ErrNotSynced
	}
	name := s.k.PodNameOf(ordinal)
	if _, err := pods.Pods(s.k.Namespace).Get(name); err == nil {
		return false, nil
	} else if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("topology: pod %s: %w", name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := s.client.pods().get(cctx, name, &corev1.Pod{})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("topology: get pod %s: %w", name, err)
	}
	return false, nil
}

// ClusterRecord implements Source: the record ConfigMap's data, or "" when
// it does not exist.
func (s *Kubernetes) ClusterRecord(context.Context) (string, error) {
	if !s.isSynced(false) {
		return "", ErrNotSynced
	}
	s.mu.Lock()
	records := s.records
	s.mu.Unlock()
	cm, err := records.ConfigMaps(s.k.Namespace).Get(s.k.ClusterRecord)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("topology: configmap %s: %w", s.k.ClusterRecord, err)
	}
	return cm.Data[ClusterRecordKey], nil
}

// SwapClusterRecord replaces the record only if the API server still holds
// old ("" for no ConfigMap), and reports whether it did. The read is live
// and the write is conditional on the resourceVersion read, so of two
// replicas swapping at once exactly one wins.
func (s *Kubernetes) SwapClusterRecord(ctx context.Context, old, record string) (bool, error) {
	cms := configMapClient{s.client.configMaps()}
	cm, err := cms.Get(ctx, s.k.ClusterRecord, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if old != "" {
			return false, nil
		}
		_, err := cms.Create(ctx, s.recordConfigMap(record), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("topology: create cluster record configmap %s/%s: %w", s.k.Namespace, s.k.ClusterRecord, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("topology: read cluster record configmap %s/%s: %w", s.k.Namespace, s.k.ClusterRecord, err)
	}
	if cm.Data[ClusterRecordKey] != old {
		return false, nil
	}
	setRecord(cm, record)
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("topology: write cluster record configmap %s/%s: %w", s.k.Namespace, s.k.ClusterRecord, err)
	}
	return true, nil
}

// recordConfigMap is a new record ConfigMap holding record.
func (s *Kubernetes) recordConfigMap(record string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name:      s.k.ClusterRecord,
		Namespace: s.k.Namespace,
		Labels:    map[string]string{"app.kubernetes.io/managed-by": "vetcd"},
	}}
	setRecord(cm, record)
	return cm
}

// setRecord puts record in cm's data and, when it names a cluster, the
// cluster ID in its annotation.
func setRecord(cm *corev1.ConfigMap, record string) {
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[ClusterRecordKey] = record
	// plan's typed record (plan imports this package, so its one field
	// needed here is read with a struct of our own).
	var typed struct {
		ClusterID string `json:"clusterID"`
	}
	if json.Unmarshal([]byte(record), &typed) == nil && typed.ClusterID != "" {
		if id, err := strconv.ParseUint(typed.ClusterID, 16, 64); err == nil && id != 0 {
			if cm.Annotations == nil {
				cm.Annotations = map[string]string{}
			}
			cm.Annotations[ClusterIDAnnotation] = typed.ClusterID
		}
	}
}

// SetClusterRecord creates or updates the record ConfigMap unconditionally
// with a live API call (retrying on conflicts). Replicas never use it (they
// swap); it is for tests and tools that set a record up.
func (s *Kubernetes) SetClusterRecord(ctx context.Context, record string) error {
	cms := configMapClient{s.client.configMaps()}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cms.Get(ctx, s.k.ClusterRecord, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = cms.Create(ctx, s.recordConfigMap(record), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// Created by someone else meanwhile: read and update it.
				return apierrors.NewConflict(corev1.Resource("configmaps"), s.k.ClusterRecord, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		setRecord(cm, record)
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("topology: write cluster record configmap %s/%s: %w", s.k.Namespace, s.k.ClusterRecord, err)
	}
	return nil
}
