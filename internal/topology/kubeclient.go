package topology

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// kubeClient is the part of the Kubernetes API a replica uses: StatefulSets
// (apps/v1), pods, ConfigMaps and Secrets (core/v1), in one namespace.
//
// It is two REST clients over a scheme that knows only those two API
// groups, instead of client-go's clientset: the clientset, its informer
// factory and its scheme link every API group Kubernetes has (its typed
// clients, listers, informers and apply configurations), about 20 MB of a
// 79 MB binary, for four resources (BENCHMARKS.md, Footprint). The requests
// are the ones the typed clients send, so RBAC needs the same verbs.
type kubeClient struct {
	core, apps rest.Interface
	params     runtime.ParameterCodec
	ns         string
}

// newKubeClient returns the client of namespace ns. Both API groups share
// one HTTP client, so one connection (and one TLS session) to the API
// server serves every request and watch.
func newKubeClient(rc *rest.Config, ns string) (*kubeClient, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("topology: kubernetes scheme: %w", err)
		}
	}
	codecs := serializer.NewCodecFactory(scheme)
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("topology: kubernetes http client: %w", err)
	}
	group := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		c := rest.CopyConfig(rc)
		c.GroupVersion = &gv
		c.APIPath = apiPath
		c.NegotiatedSerializer = codecs.WithoutConversion()
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		rcl, err := rest.RESTClientForConfigAndClient(c, hc)
		if err != nil {
			return nil, fmt.Errorf("topology: kubernetes client for %s: %w", gv, err)
		}
		return rcl, nil
	}
	core, err := group(corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	apps, err := group(appsv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	return &kubeClient{core: core, apps: apps, params: runtime.NewParameterCodec(scheme), ns: ns}, nil
}

// resource is one namespaced resource of the client's namespace.
type resource struct {
	c        rest.Interface
	params   runtime.ParameterCodec
	ns, name string
}

func (k *kubeClient) statefulSets() resource { return resource{k.apps, k.params, k.ns, "statefulsets"} }
func (k *kubeClient) pods() resource         { return resource{k.core, k.params, k.ns, "pods"} }
func (k *kubeClient) configMaps() resource   { return resource{k.core, k.params, k.ns, "configmaps"} }
func (k *kubeClient) secrets() resource      { return resource{k.core, k.params, k.ns, "secrets"} }

func (r resource) get(ctx context.Context, name string, into runtime.Object) error {
	return r.c.Get().UseProtobufAsDefaultIfPreferred(true).Namespace(r.ns).Resource(r.name).Name(name).Do(ctx).Into(into)
}

func (r resource) create(ctx context.Context, obj, into runtime.Object) error {
	return r.c.Post().UseProtobufAsDefaultIfPreferred(true).Namespace(r.ns).Resource(r.name).Body(obj).Do(ctx).Into(into)
}

func (r resource) update(ctx context.Context, name string, obj, into runtime.Object) error {
	return r.c.Put().UseProtobufAsDefaultIfPreferred(true).Namespace(r.ns).Resource(r.name).Name(name).Body(obj).Do(ctx).Into(into)
}

// timeout is the client-side deadline of a list or watch that asks the
// server for one, as the typed clients set it.
func timeout(o metav1.ListOptions) time.Duration {
	if o.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*o.TimeoutSeconds) * time.Second
}

// listWatch is the informer's source for this resource, with tweak
// applied to every list and watch (the selectors).
func (r resource) listWatch(newList func() runtime.Object, tweak func(*metav1.ListOptions)) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			into := newList()
			err := r.c.Get().UseProtobufAsDefaultIfPreferred(true).Namespace(r.ns).Resource(r.name).VersionedParams(&o, r.params).
				Timeout(timeout(o)).Do(ctx).Into(into)
			return into, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			o.Watch = true
			return r.c.Get().UseProtobufAsDefaultIfPreferred(true).Namespace(r.ns).Resource(r.name).VersionedParams(&o, r.params).
				Timeout(timeout(o)).Watch(ctx)
		},
	}
}

// informer is a cache of the resource's objects (of type example) that
// tweak selects, indexed by namespace as the listers expect.
func (r resource) informer(example runtime.Object, newList func() runtime.Object, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(r.listWatch(newList, tweak), example, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// secretClient is pki.SecretClient over the client's namespace.
type secretClient struct{ r resource }

func (s secretClient) Get(ctx context.Context, name string, _ metav1.GetOptions) (*corev1.Secret, error) {
	out := &corev1.Secret{}
	if err := s.r.get(ctx, name, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (s secretClient) Create(ctx context.Context, secret *corev1.Secret, _ metav1.CreateOptions) (*corev1.Secret, error) {
	out := &corev1.Secret{}
	if err := s.r.create(ctx, secret, out); err != nil {
		return nil, err
	}
	return out, nil
}

// configMapClient reads and writes ConfigMaps of the client's namespace
// with live API calls (the record swap must not read a cache).
type configMapClient struct{ r resource }

func (c configMapClient) Get(ctx context.Context, name string, _ metav1.GetOptions) (*corev1.ConfigMap, error) {
	out := &corev1.ConfigMap{}
	if err := c.r.get(ctx, name, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (c configMapClient) Create(ctx context.Context, cm *corev1.ConfigMap, _ metav1.CreateOptions) (*corev1.ConfigMap, error) {
	out := &corev1.ConfigMap{}
	if err := c.r.create(ctx, cm, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Update writes cm, conditional on its resourceVersion (a conflict if
// the object changed since it was read).
func (c configMapClient) Update(ctx context.Context, cm *corev1.ConfigMap, _ metav1.UpdateOptions) (*corev1.ConfigMap, error) {
	out := &corev1.ConfigMap{}
	if err := c.r.update(ctx, cm.Name, cm, out); err != nil {
		return nil, err
	}
	return out, nil
}
