// Package deploy_test keeps the files in deploy/ honest: every Kubernetes
// manifest decodes strictly into the Kubernetes API types (so a misspelt
// field fails the build, as it would fail kubectl apply), the manifests
// agree with each other and with the authgate configuration they carry,
// every embedded configuration passes "authgate check-config", and the
// compose stack refers only to files and services that exist.
package deploy_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// notKubernetes are the YAML files under deploy/ that are no Kubernetes
// manifest, each checked by its own test here or end to end elsewhere.
var notKubernetes = map[string]string{
	"envoy/envoy.yaml":      "Envoy bootstrap (TestEnvoyDecodesStrictly, TestEnvoyAssertion)",
	"envoy/envoy-grpc.yaml": "Envoy bootstrap (TestEnvoyDecodesStrictly, TestEnvoyGRPC)",
	"traefik/dynamic.yaml":  "Traefik file provider (TestTraefikDynamic, cmd/authgate e2e)",
	"compose/compose.yaml":  "Compose file (TestCompose)",
	"compose/authgate.yaml": "authgate configuration (TestCompose)",
}

// kinds maps apiVersion and kind to the Go type a document decodes into.
var kinds = map[string]func() any{
	"v1/ConfigMap":                             func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                                func() any { return new(corev1.Secret) },
	"v1/Service":                               func() any { return new(corev1.Service) },
	"v1/Namespace":                             func() any { return new(corev1.Namespace) },
	"apps/v1/Deployment":                       func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":            func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler":   func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"networking.k8s.io/v1/Ingress":             func() any { return new(networkingv1.Ingress) },
	"networking.k8s.io/v1/NetworkPolicy":       func() any { return new(networkingv1.NetworkPolicy) },
	"traefik.io/v1alpha1/Middleware":           func() any { return new(traefikMiddleware) },
	"traefik.io/v1alpha1/IngressRoute":         func() any { return new(traefikIngressRoute) },
	"install.istio.io/v1alpha1/IstioOperator":  func() any { return new(istioOperator) },
	"security.istio.io/v1/AuthorizationPolicy": func() any { return new(istioAuthorizationPolicy) },
	"monitoring.coreos.com/v1/ServiceMonitor":  func() any { return new(serviceMonitor) },
}

// Istio's types are not in k8s.io/api either; these mirror the fields the
// examples in deploy/istio use.
type istioOperator struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   traefikObjectMeta `json:"metadata"`
	Spec       struct {
		MeshConfig struct {
			ExtensionProviders []struct {
				Name              string `json:"name"`
				EnvoyExtAuthzGrpc *struct {
					Service       string `json:"service"`
					Port          int    `json:"port"`
					Timeout       string `json:"timeout,omitempty"`
					FailOpen      bool   `json:"failOpen"`
					StatusOnError string `json:"statusOnError,omitempty"`
				} `json:"envoyExtAuthzGrpc,omitempty"`
			} `json:"extensionProviders"`
		} `json:"meshConfig"`
	} `json:"spec"`
}

type istioAuthorizationPolicy struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   traefikObjectMeta `json:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Action   string `json:"action"`
		Provider struct {
			Name string `json:"name"`
		} `json:"provider"`
		Rules []struct {
			To []struct {
				Operation struct {
					Paths    []string `json:"paths,omitempty"`
					NotPaths []string `json:"notPaths,omitempty"`
				} `json:"operation"`
			} `json:"to,omitempty"`
		} `json:"rules"`
	} `json:"spec"`
}

// serviceMonitor mirrors the fields of the Prometheus Operator's CRD that
// the Helm chart uses.
type serviceMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path,omitempty"`
			Interval string `json:"interval,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// Traefik's CRDs are not in k8s.io/api; these mirror the fields the
// examples use, so that anything else (a misspelt field) fails to decode.
type traefikObjectMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

type traefikMiddleware struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   traefikObjectMeta `json:"metadata"`
	Spec       struct {
		ForwardAuth *traefikForwardAuth `json:"forwardAuth,omitempty"`
	} `json:"spec"`
}

// traefikForwardAuth is ForwardAuth in the Middleware CRD and in the file
// provider's dynamic configuration alike.
type traefikForwardAuth struct {
	Address                  string   `json:"address"`
	TrustForwardHeader       bool     `json:"trustForwardHeader"`
	AuthRequestHeaders       []string `json:"authRequestHeaders,omitempty"`
	AuthResponseHeaders      []string `json:"authResponseHeaders,omitempty"`
	AuthResponseHeadersRegex string   `json:"authResponseHeadersRegex,omitempty"`
}

type traefikIngressRoute struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   traefikObjectMeta `json:"metadata"`
	Spec       struct {
		EntryPoints []string `json:"entryPoints,omitempty"`
		Routes      []struct {
			Kind        string `json:"kind"`
			Match       string `json:"match"`
			Middlewares []struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace,omitempty"`
			} `json:"middlewares,omitempty"`
			Services []struct {
				Name string `json:"name"`
				Port int    `json:"port"`
			} `json:"services"`
		} `json:"routes"`
		TLS *struct{} `json:"tls,omitempty"`
	} `json:"spec"`
}

// manifest is one decoded Kubernetes document.
type manifest struct {
	file  string // relative to deploy/, slash-separated
	index int    // document index in the file
	gvk   string // apiVersion/kind
	obj   any
}

func (m manifest) String() string { return fmt.Sprintf("%s#%d (%s)", m.file, m.index, m.gvk) }

// namespace of a manifest; "" stands for the namespace kubectl applies to.
func (m manifest) namespace() string {
	switch o := m.obj.(type) {
	case *corev1.ConfigMap:
		return o.Namespace
	case *corev1.Secret:
		return o.Namespace
	case *corev1.Service:
		return o.Namespace
	case *appsv1.Deployment:
		return o.Namespace
	case *policyv1.PodDisruptionBudget:
		return o.Namespace
	case *autoscalingv2.HorizontalPodAutoscaler:
		return o.Namespace
	case *networkingv1.Ingress:
		return o.Namespace
	case *networkingv1.NetworkPolicy:
		return o.Namespace
	case *traefikMiddleware:
		return o.Metadata.Namespace
	case *traefikIngressRoute:
		return o.Metadata.Namespace
	case *serviceMonitor:
		return o.Metadata.Namespace
	}
	return ""
}

// splitDocuments splits a YAML stream at "---" lines, as kubectl does, and
// drops documents that hold only comments.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`).Split(string(b), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// decodeStrict decodes a YAML document into obj, failing on unknown and
// duplicate fields. encoding/json matches field names without regard to
// case, which the API server does not, so every key of the document must
// also come back when obj is encoded again.
func decodeStrict(doc []byte, obj any) error {
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return err
	}
	var orig, again any
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(j, &orig); err != nil {
		return err
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &again); err != nil {
		return err
	}
	return sameKeys("", orig, again)
}

// sameKeys reports a key of orig that is missing from again; keys whose
// value is empty (false, 0, "", null, {} or []) may be dropped by
// omitempty.
func sameKeys(at string, orig, again any) error {
	switch o := orig.(type) {
	case map[string]any:
		a, _ := again.(map[string]any)
		for k, v := range o {
			av, ok := a[k]
			if !ok {
				if isEmpty(v) {
					continue
				}
				return fmt.Errorf("unknown field %q (wrong case?)", strings.TrimPrefix(at+"."+k, "."))
			}
			if err := sameKeys(at+"."+k, v, av); err != nil {
				return err
			}
		}
	case []any:
		a, _ := again.([]any)
		for i, v := range o {
			if i >= len(a) {
				return fmt.Errorf("%s[%d] lost in decoding", at, i)
			}
			if err := sameKeys(fmt.Sprintf("%s[%d]", at, i), v, a[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Map, reflect.Slice, reflect.String:
		return rv.Len() == 0
	}
	return rv.IsZero()
}

var loaded struct {
	once      sync.Once
	manifests []manifest
	errs      []string
}

// loadManifests decodes every Kubernetes document under deploy/ (the
// directory go test runs in) once.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	loaded.once.Do(func() {
		err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p == "helm" {
					return fs.SkipDir // templates, not manifests: TestHelmChart renders them
				}
				return nil
			}
			if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
				return nil
			}
			rel := filepath.ToSlash(p)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if _, ok := notKubernetes[rel]; ok {
				return nil
			}
			ms, errs := decodeManifests(rel, b)
			loaded.manifests = append(loaded.manifests, ms...)
			loaded.errs = append(loaded.errs, errs...)
			return nil
		})
		if err != nil {
			loaded.errs = append(loaded.errs, err.Error())
		}
	})
	if len(loaded.errs) > 0 {
		t.Fatalf("manifests under deploy/:\n  %s", strings.Join(loaded.errs, "\n  "))
	}
	return loaded.manifests
}

// decodeManifests decodes every document of the YAML stream b, read from
// rel, strictly into its Kubernetes API type.
func decodeManifests(rel string, b []byte) ([]manifest, []string) {
	var ms []manifest
	var errs []string
	docs := splitDocuments(b)
	if len(docs) == 0 {
		errs = append(errs, rel+": no document")
	}
	for i, doc := range docs {
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			errs = append(errs, fmt.Sprintf("%s#%d: %v", rel, i, err))
			continue
		}
		if tm.APIVersion == "" || tm.Kind == "" {
			errs = append(errs, fmt.Sprintf("%s#%d: no apiVersion or kind; a YAML file that is no Kubernetes manifest belongs in notKubernetes", rel, i))
			continue
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		newObj, ok := kinds[gvk]
		if !ok {
			errs = append(errs, fmt.Sprintf("%s#%d: %s is not in kinds; add its Go type", rel, i, gvk))
			continue
		}
		obj := newObj()
		if err := decodeStrict(doc, obj); err != nil {
			errs = append(errs, fmt.Sprintf("%s#%d (%s): %v", rel, i, gvk, err))
			continue
		}
		ms = append(ms, manifest{file: rel, index: i, gvk: gvk, obj: obj})
	}
	return ms, errs
}

// TestManifestsDecodeStrictly decodes every Kubernetes manifest under
// deploy/ into its API type with unknown fields refused, and checks that
// the examples the README promises are all there.
func TestManifestsDecodeStrictly(t *testing.T) {
	ms := loadManifests(t)
	count := map[string]int{}
	for _, m := range ms {
		count[m.gvk]++
	}
	want := map[string]int{
		"apps/v1/Deployment":                       2, // sidecar, shared forward auth
		"v1/Service":                               2,
		"v1/ConfigMap":                             3, // two authgate configurations, ingress-nginx's auth headers
		"v1/Secret":                                2,
		"policy/v1/PodDisruptionBudget":            2,
		"autoscaling/v2/HorizontalPodAutoscaler":   1,
		"networking.k8s.io/v1/Ingress":             1,
		"traefik.io/v1alpha1/Middleware":           1,
		"traefik.io/v1alpha1/IngressRoute":         1,
		"install.istio.io/v1alpha1/IstioOperator":  1,
		"security.istio.io/v1/AuthorizationPolicy": 1,
	}
	for gvk, n := range want {
		if count[gvk] < n {
			t.Errorf("%d %s manifest(s) under deploy/, want at least %d", count[gvk], gvk, n)
		}
	}
	t.Logf("%d manifests decoded: %v", len(ms), count)
}

// TestDecodeStrictRefusesMistakes makes sure the decoding above would catch
// what it is there to catch.
func TestDecodeStrictRefusesMistakes(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr string
	}{
		{
			name:    "unknown field",
			give:    "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selectr: {a: b}\n",
			wantErr: "selectr",
		},
		{
			name:    "wrong case",
			give:    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      securityContext:\n        runAsNonroot: true\n",
			wantErr: "runAsNonroot",
		},
		{
			name:    "duplicate field",
			give:    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
			wantErr: "data",
		},
		{
			name:    "field at the wrong level",
			give:    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  terminationGracePeriodSeconds: 30\n",
			wantErr: "terminationGracePeriodSeconds",
		},
		{
			name:    "wrong type",
			give:    "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec:\n  maxUnavailable: [1]\n",
			wantErr: "maxUnavailable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tm struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(tt.give), &tm); err != nil {
				t.Fatal(err)
			}
			err := decodeStrict([]byte(tt.give), kinds[tm.APIVersion+"/"+tm.Kind]())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("decodeStrict(%q) = %v, want an error naming %q", tt.give, err, tt.wantErr)
			}
		})
	}
}

// authgateConfig is the part of an authgate configuration the manifests
// must agree with.
type authgateConfig struct {
	Server struct {
		Public struct {
			Addr string `json:"addr"`
		} `json:"public"`
		Admin struct {
			Addr string `json:"addr"`
		} `json:"admin"`
		ShutdownGrace string `json:"shutdown_grace"`
		ShutdownDelay string `json:"shutdown_delay"`
	} `json:"server"`
	Upstream    string `json:"upstream"`
	ForwardAuth struct {
		Enabled *bool  `json:"enabled"`
		Path    string `json:"path"`
	} `json:"forward_auth"`
	TrustedProxies []string `json:"trusted_proxies"`
	Verify         struct {
		Legacy struct {
			SecretFiles []string `json:"secret_files"`
		} `json:"legacy"`
	} `json:"verify"`
}

// configKey is the ConfigMap key that holds an authgate configuration.
const configKey = "authgate.yaml"

// authgateContainer reports whether c runs authgate.
func authgateContainer(c corev1.Container) bool {
	return strings.Contains(c.Image, "/authgate:")
}

// TestDeployments checks each Deployment the way a reviewer would: pod and
// container security, resources, probes on authgate's admin port, the
// configuration and secret files it reads mounted from objects that exist,
// and a termination grace period that covers authgate's shutdown.
func TestDeployments(t *testing.T) {
	ms := loadManifests(t)
	eachDeployment(t, ms, func(t *testing.T, m manifest, d *appsv1.Deployment) {
		checkDeployment(t, ms, m, d)
	})
}

// eachDeployment runs f on every Deployment in ms, each in a subtest.
func eachDeployment(t *testing.T, ms []manifest, f func(t *testing.T, m manifest, d *appsv1.Deployment)) {
	t.Helper()
	for _, m := range ms {
		if d, ok := m.obj.(*appsv1.Deployment); ok {
			t.Run(m.file, func(t *testing.T) { f(t, m, d) })
		}
	}
}

func checkDeployment(t *testing.T, ms []manifest, m manifest, d *appsv1.Deployment) {
	pod := d.Spec.Template.Spec
	if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the pod template's labels %v", d.Spec.Selector, d.Spec.Template.Labels)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext must set runAsNonRoot: true and seccompProfile RuntimeDefault")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken must be false: nothing here talks to the API server")
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}

	var ag *corev1.Container
	for i, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s: securityContext must set allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities.drop: [ALL]", c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: resources must request cpu and memory and limit memory", c.Name)
		}
		if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
			t.Errorf("container %s: image %q is not pinned to a version", c.Name, c.Image)
		}
		if authgateContainer(c) {
			if ag != nil {
				t.Fatalf("two authgate containers")
			}
			ag = &pod.Containers[i]
		}
	}
	if ag == nil {
		t.Fatalf("no authgate container (image .../authgate:VERSION)")
	}

	cfgPath := flagValue(ag.Args, "--config")
	if cfgPath == "" {
		t.Fatalf("container %s: args %q name no --config", ag.Name, ag.Args)
	}
	cm := mountedConfigMap(t, ms, m, pod, *ag, cfgPath)
	var cfg authgateConfig
	if err := yaml.Unmarshal([]byte(cm.Data[configKey]), &cfg); err != nil {
		t.Fatalf("ConfigMap %s: %s: %v", cm.Name, configKey, err)
	}

	// Ports and probes: the admin listener serves /healthz and /readyz.
	httpPort := containerPort(t, *ag, "http")
	adminPort := containerPort(t, *ag, "admin")
	if p := addrPort(t, cfg.Server.Public.Addr, 8080); p != httpPort {
		t.Errorf("server.public.addr %q, but the container's http port is %d", cfg.Server.Public.Addr, httpPort)
	}
	if p := addrPort(t, cfg.Server.Admin.Addr, 9090); p != adminPort {
		t.Errorf("server.admin.addr %q, but the container's admin port is %d", cfg.Server.Admin.Addr, adminPort)
	}
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{
		{"livenessProbe", ag.LivenessProbe, "/healthz"},
		{"readinessProbe", ag.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("container %s: no HTTP %s", ag.Name, p.what)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || resolvePort(t, *ag, g.Port) != adminPort {
			t.Errorf("container %s: %s GET %s on port %s, want %s on the admin port (%d)", ag.Name, p.what, g.Path, g.Port.String(), p.path, adminPort)
		}
	}

	// Every secret file the configuration names is mounted from a Secret
	// that has the key.
	if len(cfg.Verify.Legacy.SecretFiles) == 0 {
		t.Errorf("ConfigMap %s: verify.legacy.secret_files is empty; the Secret is not used", cm.Name)
	}
	for _, f := range cfg.Verify.Legacy.SecretFiles {
		mountedSecretKey(t, ms, m, pod, *ag, f)
	}

	// Shutdown: authgate keeps serving for shutdown_delay, then drains for
	// up to shutdown_grace, after any preStop hook of its own; the pod's
	// grace period must cover it with room to spare.
	delay := duration(t, cfg.Server.ShutdownDelay, 0)
	drain := duration(t, cfg.Server.ShutdownGrace, 25*time.Second)
	if delay == 0 {
		t.Errorf("server.shutdown_delay is 0: requests sent while endpoints are being updated would meet a closed port")
	}
	agStops := preStopSleep(*ag) + delay + drain
	if need := agStops + 5*time.Second; time.Duration(grace)*time.Second < need {
		t.Errorf("terminationGracePeriodSeconds %d; authgate needs preStop %s + shutdown_delay %s + shutdown_grace %s and some room: at least %s",
			grace, preStopSleep(*ag), delay, drain, need)
	}

	// The sidecar pattern: authgate proxies to an application in the same
	// pod, which listens on loopback only and outlives authgate's drain.
	if cfg.Upstream == "" {
		if len(pod.Containers) != 1 {
			t.Errorf("forward-auth Deployment (upstream \"\") has %d containers, want authgate alone", len(pod.Containers))
		}
		return
	}
	u, err := url.Parse(cfg.Upstream)
	if err != nil {
		t.Fatalf("upstream %q: %v", cfg.Upstream, err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		t.Errorf("upstream %q is not a loopback address: the application must be reachable through authgate only", cfg.Upstream)
	}
	for _, c := range pod.Containers {
		if authgateContainer(c) {
			continue
		}
		if len(c.Ports) != 0 {
			t.Errorf("container %s declares ports %v; the application listens on 127.0.0.1 only", c.Name, c.Ports)
		}
		for _, e := range c.Env {
			if e.Name == "HOST" && e.Value != "127.0.0.1" {
				t.Errorf("container %s: HOST=%q, want 127.0.0.1", c.Name, e.Value)
			}
		}
		if s := preStopSleep(c); s < agStops {
			t.Errorf("container %s: preStop sleep %s, shorter than authgate's shutdown (%s): requests authgate accepted would meet a closed application", c.Name, s, agStops)
		}
		if time.Duration(grace)*time.Second <= preStopSleep(c) {
			t.Errorf("container %s: preStop sleep %s leaves no time within terminationGracePeriodSeconds %d", c.Name, preStopSleep(c), grace)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Port.IntValue() != int(httpPort) {
			t.Errorf("container %s: readiness must be probed through authgate's port %d (the application is not reachable on the pod address)", c.Name, httpPort)
		}
	}
}

// flagValue returns the value of flag in args ("--flag v" or "--flag=v").
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// mountedVolume returns the volume mounted in c at the directory holding
// file, and the name of the file in it.
func mountedVolume(t *testing.T, pod corev1.PodSpec, c corev1.Container, file string) (corev1.Volume, string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok || vm.SubPath != "" {
			continue
		}
		if !vm.ReadOnly {
			t.Errorf("container %s: volume %s at %s is not mounted readOnly", c.Name, vm.Name, vm.MountPath)
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name {
				return v, rel
			}
		}
		t.Fatalf("container %s mounts volume %q, which the pod does not define", c.Name, vm.Name)
	}
	t.Fatalf("container %s: %s is not in any mounted volume", c.Name, file)
	return corev1.Volume{}, ""
}

// itemKey maps a file name in a configMap or secret volume to the key it
// comes from.
func itemKey(items []corev1.KeyToPath, file string) (string, bool) {
	if len(items) == 0 {
		return file, true
	}
	for _, it := range items {
		if it.Path == file {
			return it.Key, true
		}
	}
	return "", false
}

func mountedConfigMap(t *testing.T, ms []manifest, m manifest, pod corev1.PodSpec, c corev1.Container, file string) *corev1.ConfigMap {
	t.Helper()
	v, rel := mountedVolume(t, pod, c, file)
	if v.ConfigMap == nil {
		t.Fatalf("%s is on volume %s, which is not a ConfigMap", file, v.Name)
	}
	key, ok := itemKey(v.ConfigMap.Items, rel)
	if !ok || key != configKey {
		t.Fatalf("%s comes from key %q of ConfigMap %s, want %q", file, key, v.ConfigMap.Name, configKey)
	}
	for _, cm := range ms {
		if o, ok := cm.obj.(*corev1.ConfigMap); ok && o.Name == v.ConfigMap.Name && cm.namespace() == m.namespace() && path.Dir(cm.file) == path.Dir(m.file) {
			if o.Data[key] == "" {
				t.Fatalf("ConfigMap %s (%s) has no key %q", o.Name, cm.file, key)
			}
			return o
		}
	}
	t.Fatalf("ConfigMap %q (namespace %q) is not in %s", v.ConfigMap.Name, m.namespace(), path.Dir(m.file))
	return nil
}

func mountedSecretKey(t *testing.T, ms []manifest, m manifest, pod corev1.PodSpec, c corev1.Container, file string) {
	t.Helper()
	v, rel := mountedVolume(t, pod, c, file)
	if v.Secret == nil {
		t.Errorf("%s is on volume %s, which is not a Secret", file, v.Name)
		return
	}
	key, ok := itemKey(v.Secret.Items, rel)
	if !ok {
		t.Errorf("%s: volume %s maps no key to %q", file, v.Name, rel)
		return
	}
	for _, sm := range ms {
		if o, ok := sm.obj.(*corev1.Secret); ok && o.Name == v.Secret.SecretName && sm.namespace() == m.namespace() && path.Dir(sm.file) == path.Dir(m.file) {
			if _, ok := o.StringData[key]; !ok {
				if _, ok := o.Data[key]; !ok {
					t.Errorf("Secret %s (%s) has no key %q for %s", o.Name, sm.file, key, file)
				}
			}
			return
		}
	}
	t.Errorf("Secret %q (namespace %q) for %s is not in %s", v.Secret.SecretName, m.namespace(), file, path.Dir(m.file))
}

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, name)
	return 0
}

func resolvePort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if n := p.IntValue(); n != 0 {
		return int32(n)
	}
	return containerPort(t, c, p.String())
}

// addrPort returns the port of a listen address such as ":8080".
func addrPort(t *testing.T, addr string, def int32) int32 {
	t.Helper()
	if addr == "" {
		return def
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return int32(n)
}

func duration(t *testing.T, s string, def time.Duration) time.Duration {
	t.Helper()
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

// preStopSleep is how long c's preStop hook waits (sleep action only).
func preStopSleep(c corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// selects reports whether every label in selector is in labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// selectedDeployment returns the Deployment in m's namespace and directory
// whose pods selector selects.
func selectedDeployment(ms []manifest, m manifest, selector map[string]string) *appsv1.Deployment {
	for _, dm := range ms {
		if d, ok := dm.obj.(*appsv1.Deployment); ok && dm.namespace() == m.namespace() && path.Dir(dm.file) == path.Dir(m.file) &&
			selects(selector, d.Spec.Template.Labels) {
			return d
		}
	}
	return nil
}

// podPort resolves a Service or NetworkPolicy port of d's pods, by name or
// number.
func podPort(d *appsv1.Deployment, name string, number int) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if (name != "" && p.Name == name) || (name == "" && int(p.ContainerPort) == number) {
				return true
			}
		}
	}
	return false
}

// TestSelectorsAndReferences checks that every Service, PodDisruptionBudget,
// NetworkPolicy and HorizontalPodAutoscaler points at a Deployment next to
// it, and that the gateway examples ask a Service that exists.
func TestSelectorsAndReferences(t *testing.T) {
	ms := loadManifests(t)
	checkReferences(t, ms)
	services := map[string]*corev1.Service{} // name.namespace
	for _, m := range ms {
		if o, ok := m.obj.(*corev1.Service); ok {
			services[o.Name+"."+cmp.Or(o.Namespace, "default")] = o
		}
	}

	// The Kubernetes gateway examples ask the shared forward-auth Service.
	var addrs []string
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *traefikMiddleware:
			if o.Spec.ForwardAuth == nil {
				t.Errorf("%s: Middleware %s has no forwardAuth", m, o.Metadata.Name)
				continue
			}
			addrs = append(addrs, o.Spec.ForwardAuth.Address)
			checkForwardAuthHeaders(t, m.String(), *o.Spec.ForwardAuth)
		case *networkingv1.Ingress:
			if a := o.Annotations["nginx.ingress.kubernetes.io/auth-url"]; a != "" {
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) < 2 {
		t.Errorf("found %d forward-auth addresses in the Traefik and ingress-nginx examples, want 2", len(addrs))
	}
	for _, a := range addrs {
		u, err := url.Parse(a)
		if err != nil {
			t.Errorf("forward-auth address %q: %v", a, err)
			continue
		}
		host, suffix, _ := strings.Cut(u.Hostname(), ".svc.")
		svc := services[host]
		if suffix != "cluster.local" || svc == nil {
			t.Errorf("forward-auth address %q names no Service under deploy/ (want NAME.NAMESPACE.svc.cluster.local)", a)
			continue
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == u.Port() }) {
			t.Errorf("forward-auth address %q: Service %s has no port %s", a, host, u.Port())
		}
		if u.Path != "/auth" {
			t.Errorf("forward-auth address %q: path %q, want forward_auth.path /auth", a, u.Path)
		}
	}
}

// checkReferences checks that every Service, PodDisruptionBudget,
// NetworkPolicy, HorizontalPodAutoscaler and ServiceMonitor in ms points
// at a Deployment (or Service) beside it.
func checkReferences(t *testing.T, ms []manifest) {
	t.Helper()
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *corev1.Service:
			d := selectedDeployment(ms, m, o.Spec.Selector)
			if d == nil {
				t.Errorf("%s: Service %s selects no Deployment beside it", m, o.Name)
				continue
			}
			for _, p := range o.Spec.Ports {
				if !podPort(d, p.TargetPort.StrVal, p.TargetPort.IntValue()) {
					t.Errorf("%s: Service port %s targets %s, which Deployment %s does not declare", m, p.Name, p.TargetPort.String(), d.Name)
				}
				// A headless Service adds no address: Prometheus reaches
				// the pods' admin port directly, as the NetworkPolicy allows.
				if (p.Name == "admin" || p.TargetPort.StrVal == "admin") && o.Spec.ClusterIP != corev1.ClusterIPNone {
					t.Errorf("%s: Service exposes the admin port; /metrics and probes stay inside the pod network", m)
				}
			}
		case *policyv1.PodDisruptionBudget:
			if o.Spec.Selector == nil || selectedDeployment(ms, m, o.Spec.Selector.MatchLabels) == nil {
				t.Errorf("%s: PodDisruptionBudget %s selects no Deployment beside it", m, o.Name)
			}
			if o.Spec.MinAvailable == nil && o.Spec.MaxUnavailable == nil {
				t.Errorf("%s: PodDisruptionBudget %s sets neither minAvailable nor maxUnavailable", m, o.Name)
			}
		case *networkingv1.NetworkPolicy:
			d := selectedDeployment(ms, m, o.Spec.PodSelector.MatchLabels)
			if d == nil {
				t.Errorf("%s: NetworkPolicy %s selects no Deployment beside it", m, o.Name)
				continue
			}
			for _, r := range o.Spec.Ingress {
				for _, p := range r.Ports {
					if p.Port != nil && !podPort(d, p.Port.StrVal, p.Port.IntValue()) {
						t.Errorf("%s: NetworkPolicy port %s is not a port of Deployment %s", m, p.Port.String(), d.Name)
					}
				}
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			checkHPA(t, ms, m, o)
		case *serviceMonitor:
			checkServiceMonitor(t, ms, m, o)
		}
	}
}

// checkServiceMonitor checks that sm selects a Service beside it whose
// port named by each endpoint targets the admin port, where /metrics is.
func checkServiceMonitor(t *testing.T, ms []manifest, m manifest, sm *serviceMonitor) {
	t.Helper()
	var svc *corev1.Service
	for _, sm2 := range ms {
		if o, ok := sm2.obj.(*corev1.Service); ok && sm2.namespace() == m.namespace() && path.Dir(sm2.file) == path.Dir(m.file) &&
			selects(sm.Spec.Selector.MatchLabels, o.Labels) {
			if svc != nil {
				t.Errorf("%s: ServiceMonitor %s selects Services %s and %s", m, sm.Metadata.Name, svc.Name, o.Name)
			}
			svc = o
		}
	}
	if svc == nil {
		t.Errorf("%s: ServiceMonitor %s selects no Service beside it", m, sm.Metadata.Name)
		return
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Errorf("%s: ServiceMonitor %s has no endpoints", m, sm.Metadata.Name)
	}
	for _, e := range sm.Spec.Endpoints {
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port && p.TargetPort.String() == "admin" }) {
			t.Errorf("%s: ServiceMonitor endpoint port %q is no port of Service %s targeting admin", m, e.Port, svc.Name)
		}
		if e.Path != "/metrics" {
			t.Errorf("%s: ServiceMonitor endpoint path %q, want /metrics", m, e.Path)
		}
	}
}

func checkHPA(t *testing.T, ms []manifest, m manifest, h *autoscalingv2.HorizontalPodAutoscaler) {
	t.Helper()
	ref := h.Spec.ScaleTargetRef
	var d *appsv1.Deployment
	for _, dm := range ms {
		if o, ok := dm.obj.(*appsv1.Deployment); ok && o.Name == ref.Name && dm.namespace() == m.namespace() && path.Dir(dm.file) == path.Dir(m.file) {
			d = o
		}
	}
	if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || d == nil {
		t.Errorf("%s: scaleTargetRef %s/%s %s is no Deployment beside it", m, ref.APIVersion, ref.Kind, ref.Name)
		return
	}
	if d.Spec.Replicas != nil {
		t.Errorf("%s: Deployment %s sets replicas, which resets the autoscaler's count on every apply", m, d.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
		t.Errorf("%s: minReplicas must be at least 2, so that a rollout or a lost node keeps one replica", m)
	}
	cpu := false
	for _, mt := range h.Spec.Metrics {
		if mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU &&
			mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType && mt.Resource.Target.AverageUtilization != nil {
			cpu = true
		}
	}
	if !cpu {
		t.Errorf("%s: no CPU utilisation metric", m)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("%s: container %s requests no CPU; utilisation is measured against the request", m, c.Name)
		}
	}
}

// identityHeaders is authgate's header set with the default prefix.
var identityHeaders = []string{
	"X-User-Id", "X-User-Firebase-Uid", "X-User-Email", "X-User-Email-Verified", "X-User-Name",
	"X-User-Type", "X-User-Token-Balance", "X-User-Provider", "X-User-Federation",
	"X-User-Assertion",
}

// checkForwardAuthHeaders checks a Traefik ForwardAuth: forwarding headers
// from Traefik, never the client; every identity header copied; every other
// spelling stripped.
func checkForwardAuthHeaders(t *testing.T, where string, fa traefikForwardAuth) {
	t.Helper()
	if fa.TrustForwardHeader {
		t.Errorf("%s: trustForwardHeader: true lets a client's X-Forwarded-Uri choose the path authgate judges", where)
	}
	if !slices.Equal(fa.AuthResponseHeaders, identityHeaders) {
		t.Errorf("%s: authResponseHeaders %q, want %q", where, fa.AuthResponseHeaders, identityHeaders)
	}
	re, err := regexp.Compile(fa.AuthResponseHeadersRegex)
	if err != nil {
		t.Errorf("%s: authResponseHeadersRegex: %v", where, err)
		return
	}
	for _, h := range []string{
		"X-User-Id", "X_User_Id", "x_user_id", "X-User-Role", "x-user-type",
		// Other proxies' identity headers: authgate's default strip_headers.
		"X-Auth-Request-User", "x_auth_request_email", "X-Auth-Request-Preferred-Username", "X-Auth-Request-Groups",
		"X-Auth-Request-Access-Token", "X-Auth-Request-Anything",
		"X-Forwarded-User", "X_Forwarded_Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username", "X-Forwarded-Access-Token",
		"X-Remote-User", "X-Remote-Email", "X-Remote-Groups", "X-Remote-Name",
		"Remote-User", "REMOTE_USER", "Remote-Email", "Remote-Groups", "Remote-Name",
	} {
		if !re.MatchString(h) {
			t.Errorf("%s: authResponseHeadersRegex %q does not strip a client's %s", where, fa.AuthResponseHeadersRegex, h)
		}
	}
	// Traefik reads the forwarding headers it sets itself after this
	// middleware, and the application may too.
	for _, h := range []string{
		"Authorization", "X-Username", "X-Request-Id",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Uri", "X-Forwarded-Method",
		"X-Forwarded-Users", "X-Remote-Addr", "Remote-Addr", "X-Auth-Request",
	} {
		if re.MatchString(h) {
			t.Errorf("%s: authResponseHeadersRegex %q strips %s", where, fa.AuthResponseHeadersRegex, h)
		}
	}
}

// TestTraefikDynamic decodes deploy/traefik/dynamic.yaml strictly (for the
// fields it uses) and checks its ForwardAuth like the Middleware CRD's.
func TestTraefikDynamic(t *testing.T) {
	b, err := os.ReadFile("traefik/dynamic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dyn struct {
		HTTP struct {
			Middlewares map[string]struct {
				ForwardAuth *traefikForwardAuth `json:"forwardAuth"`
			} `json:"middlewares"`
			Routers map[string]struct {
				Rule        string    `json:"rule"`
				EntryPoints []string  `json:"entryPoints"`
				Middlewares []string  `json:"middlewares"`
				Service     string    `json:"service"`
				TLS         *struct{} `json:"tls,omitempty"`
			} `json:"routers"`
			Services map[string]struct {
				LoadBalancer struct {
					Servers []struct {
						URL string `json:"url"`
					} `json:"servers"`
				} `json:"loadBalancer"`
			} `json:"services"`
		} `json:"http"`
	}
	if err := decodeStrict(b, &dyn); err != nil {
		t.Fatalf("traefik/dynamic.yaml: %v", err)
	}
	for name, mw := range dyn.HTTP.Middlewares {
		if mw.ForwardAuth == nil {
			t.Errorf("middleware %s has no forwardAuth", name)
			continue
		}
		checkForwardAuthHeaders(t, "traefik/dynamic.yaml middleware "+name, *mw.ForwardAuth)
	}
	for name, r := range dyn.HTTP.Routers {
		for _, mw := range r.Middlewares {
			if _, ok := dyn.HTTP.Middlewares[mw]; !ok {
				t.Errorf("router %s uses middleware %q, which is not defined", name, mw)
			}
		}
		if _, ok := dyn.HTTP.Services[r.Service]; !ok {
			t.Errorf("router %s uses service %q, which is not defined", name, r.Service)
		}
		if len(r.Middlewares) == 0 {
			t.Errorf("router %s has no middleware: nothing asks authgate", name)
		}
	}
}

var built struct {
	once sync.Once
	path string
	err  error
}

// authgateBinary builds cmd/authgate once into a temporary directory.
func authgateBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the authgate binary; skipped with -short")
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "authgate-deploy-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "authgate")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", built.path, "../cmd/authgate").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// TestMain removes the binary authgateBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		_ = os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

// checkConfig runs "authgate check-config" on the configuration text cfg
// with env added to a clean environment (no AUTHGATE_* or
// FIREBASE_AUTH_EMULATOR_HOST from the test's own).
func checkConfig(t *testing.T, name, cfg string, env ...string) {
	t.Helper()
	bin := authgateBinary(t)
	p := filepath.Join(t.TempDir(), "authgate.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "check-config", "--config", p)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUTHGATE_") && !strings.HasPrefix(kv, "FIREBASE_AUTH_EMULATOR_HOST=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Errorf("authgate check-config on %s: exit %d\n%s%s", name, ee.ExitCode(), &stdout, &stderr)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), ": ok") {
		t.Errorf("authgate check-config on %s printed %q, want \": ok\"", name, &stdout)
	}
}

// testSecretFile writes a secret as a Kubernetes Secret mount would.
func testSecretFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "legacy-hs256")
	if err := os.WriteFile(p, []byte("deploy-test-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigMapsPassCheckConfig runs "authgate check-config" on every
// authgate configuration embedded in a ConfigMap. The secret files the
// configuration names exist only in a pod, so a test file stands in.
func TestConfigMapsPassCheckConfig(t *testing.T) {
	ms := loadManifests(t)
	n := 0
	for _, m := range ms {
		cm, ok := m.obj.(*corev1.ConfigMap)
		if !ok || cm.Data[configKey] == "" {
			continue
		}
		n++
		t.Run(m.file, func(t *testing.T) {
			checkConfig(t, m.String(), cm.Data[configKey], "AUTHGATE_VERIFY_LEGACY_SECRET_FILES="+testSecretFile(t))
		})
	}
	if n < 2 {
		t.Errorf("%d ConfigMaps with %s under deploy/, want the sidecar's and the shared forward-auth one", n, configKey)
	}
}

// composeFile mirrors the parts of the Compose specification that
// compose.yaml uses; anything else fails to decode.
type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]struct{}       `json:"volumes"`
}

type composeService struct {
	Build *struct {
		Context    string            `json:"context"`
		Dockerfile string            `json:"dockerfile"`
		Args       map[string]string `json:"args,omitempty"`
	} `json:"build,omitempty"`
	Image       string            `json:"image"`
	Command     []string          `json:"command,omitempty"`
	WorkingDir  string            `json:"working_dir,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Volumes     []string          `json:"volumes,omitempty"`
	Ports       []string          `json:"ports,omitempty"`
	ReadOnly    bool              `json:"read_only,omitempty"`
	CapDrop     []string          `json:"cap_drop,omitempty"`
	SecurityOpt []string          `json:"security_opt,omitempty"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on,omitempty"`
	Healthcheck *struct {
		Test        []string `json:"test"`
		Interval    string   `json:"interval,omitempty"`
		Timeout     string   `json:"timeout,omitempty"`
		Retries     int      `json:"retries,omitempty"`
		StartPeriod string   `json:"start_period,omitempty"`
	} `json:"healthcheck,omitempty"`
}

// TestCompose checks deploy/compose/compose.yaml without a Docker engine:
// it decodes strictly, has the services of the local stack, refers only to
// files, services and volumes that exist, its authgate configuration
// passes check-config with the service's environment, and the addresses
// authgate is given match the services they name.
func TestCompose(t *testing.T) {
	const dir = "compose"
	b, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := decodeStrict(b, &cf); err != nil {
		t.Fatalf("compose/compose.yaml: %v", err)
	}
	for _, s := range []string{"authgate", "postgres", "redis", "firebase-auth", "echo"} {
		if _, ok := cf.Services[s]; !ok {
			t.Errorf("no service %q", s)
		}
	}
	for name, s := range cf.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		if s.Image != "" && s.Build == nil && (!strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest")) {
			t.Errorf("service %s: image %q is not pinned to a version", name, s.Image)
		}
		for dep, d := range s.DependsOn {
			ds, ok := cf.Services[dep]
			if !ok {
				t.Errorf("service %s depends on %q, which is not defined", name, dep)
				continue
			}
			if d.Condition == "service_healthy" && ds.Healthcheck == nil {
				t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src, _, ok := strings.Cut(v, ":")
			if !ok {
				t.Errorf("service %s: volume %q has no target", name, v)
				continue
			}
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			} else if _, ok := cf.Volumes[src]; !ok {
				t.Errorf("service %s mounts named volume %q, which is not defined", name, src)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q on every interface; bind it to 127.0.0.1", name, p)
			}
		}
	}

	ag := cf.Services["authgate"]
	if ag.Build == nil {
		t.Fatal("service authgate is not built from the repository")
	}
	if _, err := os.Stat(filepath.Join(dir, ag.Build.Context, ag.Build.Dockerfile, "")); err != nil {
		t.Errorf("authgate build: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ag.Build.Context, "go.mod")); err != nil {
		t.Errorf("authgate build context %s is not the module root: %v", ag.Build.Context, err)
	}
	cfgPath := flagValue(ag.Command, "--config")
	var cfgFile string
	for _, v := range ag.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == cfgPath {
			cfgFile = filepath.Join(dir, parts[0])
		}
	}
	if cfgFile == "" {
		t.Fatalf("service authgate: --config %q is not mounted from a file", cfgPath)
	}
	cfgText, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for k, v := range ag.Environment {
		env = append(env, k+"="+v)
	}
	t.Run("check-config", func(t *testing.T) {
		checkConfig(t, cfgFile, string(cfgText), env...)
	})

	var cfg struct {
		authgateConfig
		Verify struct {
			Firebase struct {
				ProjectID string `json:"project_id"`
				Emulator  bool   `json:"emulator"`
			} `json:"firebase"`
		} `json:"verify"`
		Cache struct {
			Redis struct {
				Addrs []string `json:"addrs"`
			} `json:"redis"`
		} `json:"cache"`
	}
	if err := yaml.Unmarshal(cfgText, &cfg); err != nil {
		t.Fatal(err)
	}
	// Every address authgate is given names a service, and the port that
	// service listens on.
	checkServiceAddr := func(what, hostport, service, port string) {
		t.Helper()
		h, p, err := net.SplitHostPort(hostport)
		if err != nil || h != service || p != port {
			t.Errorf("%s %q, want %s:%s (service %s)", what, hostport, service, port, service)
		}
	}
	up, err := url.Parse(cfg.Upstream)
	if err != nil {
		t.Fatal(err)
	}
	checkServiceAddr("upstream", up.Host, "echo", cf.Services["echo"].Environment["PORT"])
	if len(cfg.Cache.Redis.Addrs) != 1 {
		t.Errorf("cache.redis.addrs %q, want the redis service", cfg.Cache.Redis.Addrs)
	} else {
		checkServiceAddr("cache.redis.addrs[0]", cfg.Cache.Redis.Addrs[0], "redis", "6379")
	}
	db, err := url.Parse(ag.Environment["AUTHGATE_FEDERATION_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	pg := cf.Services["postgres"].Environment
	checkServiceAddr("AUTHGATE_FEDERATION_DATABASE_URL host", db.Host, "postgres", "5432")
	if pw, _ := db.User.Password(); db.User.Username() != pg["POSTGRES_USER"] || pw != pg["POSTGRES_PASSWORD"] || db.Path != "/"+pg["POSTGRES_DB"] {
		t.Errorf("AUTHGATE_FEDERATION_DATABASE_URL does not match the postgres service's user, password and database")
	}

	// The emulator: the same settings as deploy/firebase/firebase.json (CI's),
	// listening on every container address, on the port, and for the
	// project, that authgate is given.
	var ours, ci map[string]any
	for p, v := range map[string]*map[string]any{filepath.Join(dir, "firebase.json"): &ours, "firebase/firebase.json": &ci} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	auth, _ := ours["emulators"].(map[string]any)["auth"].(map[string]any)
	if auth["host"] != "0.0.0.0" {
		t.Errorf("compose/firebase.json: auth emulator host %v, want 0.0.0.0 (127.0.0.1 is unreachable from other containers)", auth["host"])
	}
	auth["host"] = ci["emulators"].(map[string]any)["auth"].(map[string]any)["host"]
	if !reflect.DeepEqual(ours, ci) {
		t.Errorf("compose/firebase.json differs from firebase/firebase.json in more than the host:\n%v\n%v", ours, ci)
	}
	port := fmt.Sprint(auth["port"])
	checkServiceAddr("FIREBASE_AUTH_EMULATOR_HOST", ag.Environment["FIREBASE_AUTH_EMULATOR_HOST"], "firebase-auth", port)
	fb := cf.Services["firebase-auth"]
	if project := flagValue(fb.Command, "--project"); project != cfg.Verify.Firebase.ProjectID || !strings.HasPrefix(project, "demo-") {
		t.Errorf("emulator project %q, authgate's verify.firebase.project_id %q: want the same demo- project", project, cfg.Verify.Firebase.ProjectID)
	}
	if !cfg.Verify.Firebase.Emulator {
		t.Errorf("verify.firebase.emulator is off: authgate refuses FIREBASE_AUTH_EMULATOR_HOST without it")
	}
	if c := flagValue(fb.Command, "--config"); !slices.ContainsFunc(fb.Volumes, func(v string) bool { return strings.HasPrefix(v, "./firebase.json:"+c) }) {
		t.Errorf("firebase-auth --config %q is not ./firebase.json", c)
	}
}

// TestEnvoyGRPC checks the gRPC ext_authz examples agree with each other
// and with authgate: Envoy's ext_authz filter talks gRPC over HTTP/2 to a
// cluster that exists, health-checks the Authorization service, and the
// Istio policy names the provider the mesh config registers, at the same
// port. No Envoy or Istio runs here; authgate's side is driven by a real
// gRPC client in proxy and cmd/authgate.
func TestEnvoyGRPC(t *testing.T) {
	var boot struct {
		StaticResources struct {
			Listeners []struct {
				FilterChains []struct {
					Filters []struct {
						TypedConfig struct {
							HTTPFilters []struct {
								Name        string `json:"name"`
								TypedConfig struct {
									FailureModeAllow *bool `json:"failure_mode_allow"`
									GRPCService      *struct {
										EnvoyGRPC struct {
											ClusterName string `json:"cluster_name"`
										} `json:"envoy_grpc"`
									} `json:"grpc_service"`
								} `json:"typed_config"`
							} `json:"http_filters"`
						} `json:"typed_config"`
					} `json:"filters"`
				} `json:"filter_chains"`
			} `json:"listeners"`
			Clusters []map[string]any `json:"clusters"`
		} `json:"static_resources"`
	}
	b, err := os.ReadFile("envoy/envoy-grpc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &boot); err != nil {
		t.Fatalf("envoy/envoy-grpc.yaml: %v", err)
	}
	var cluster string
	for _, l := range boot.StaticResources.Listeners {
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				for _, hf := range f.TypedConfig.HTTPFilters {
					if hf.Name != "envoy.filters.http.ext_authz" {
						continue
					}
					if hf.TypedConfig.GRPCService == nil {
						t.Fatal("ext_authz filter has no grpc_service")
					}
					if fa := hf.TypedConfig.FailureModeAllow; fa == nil || *fa {
						t.Error("ext_authz filter must say failure_mode_allow: false")
					}
					cluster = hf.TypedConfig.GRPCService.EnvoyGRPC.ClusterName
				}
			}
		}
	}
	if cluster == "" {
		t.Fatal("no ext_authz filter with an envoy_grpc cluster")
	}
	var found map[string]any
	for _, c := range boot.StaticResources.Clusters {
		if c["name"] == cluster {
			found = c
		}
	}
	if found == nil {
		t.Fatalf("ext_authz cluster %q is not defined", cluster)
	}
	raw, _ := json.Marshal(found)
	for _, want := range []string{`"http2_protocol_options"`, `"service_name":"envoy.service.auth.v3.Authorization"`, `"port_value":9191`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("cluster %s lacks %s", cluster, want)
		}
	}

	ms := loadManifests(t)
	providers := map[string]int{}
	var policies []*istioAuthorizationPolicy
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *istioOperator:
			for _, p := range o.Spec.MeshConfig.ExtensionProviders {
				if p.EnvoyExtAuthzGrpc != nil {
					providers[p.Name] = p.EnvoyExtAuthzGrpc.Port
					if p.EnvoyExtAuthzGrpc.FailOpen {
						t.Errorf("extension provider %s fails open", p.Name)
					}
				}
			}
		case *istioAuthorizationPolicy:
			policies = append(policies, o)
		}
	}
	if len(policies) == 0 {
		t.Fatal("no AuthorizationPolicy under deploy/istio")
	}
	for _, p := range policies {
		if p.Spec.Action != "CUSTOM" {
			t.Errorf("AuthorizationPolicy %s: action %q, want CUSTOM", p.Metadata.Name, p.Spec.Action)
		}
		if port, ok := providers[p.Spec.Provider.Name]; !ok || port != 9191 {
			t.Errorf("AuthorizationPolicy %s: provider %q is no envoyExtAuthzGrpc provider at port 9191 (%v)", p.Metadata.Name, p.Spec.Provider.Name, providers)
		}
	}
}
