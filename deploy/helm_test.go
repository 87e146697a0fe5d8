package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// chartDir is the Helm chart; sidecarExample is an application's chart
// that includes authgate as its sidecar.
const (
	chartDir       = "helm/authgate"
	sidecarExample = "helm/examples/app-with-authgate"
)

// placeholder is the chart's default secret value, which authgate refuses.
const placeholder = "REPLACE-ME"

// renderChart renders the chart in dir (with the authgate chart as its
// dependency, unless it is the authgate chart) as "helm install" would,
// with the values files and then vals over its defaults, and decodes every
// rendered object strictly. Each object's file is name/TEMPLATE, so that
// the checks that pair objects "beside" each other see one render.
func renderChart(t *testing.T, name, dir string, vals map[string]any, valueFiles ...string) []manifest {
	t.Helper()
	ch, err := loader.LoadDir(dir)
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	if dir != chartDir {
		ag, err := loader.LoadDir(chartDir)
		if err != nil {
			t.Fatalf("load %s: %v", chartDir, err)
		}
		ch.SetDependencies(ag)
	}
	merged := map[string]any{}
	for _, f := range valueFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := loader.LoadValues(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		merged = loader.MergeMaps(merged, v)
	}
	merged = loader.MergeMaps(merged, vals)
	opts := common.ReleaseOptions{Name: "rel", Namespace: "authgate", IsInstall: true, Revision: 1}
	rv, err := util.ToRenderValues(ch, merged, opts, nil)
	if err != nil {
		t.Fatalf("values of %s: %v", dir, err)
	}
	out, err := engine.Engine{Strict: true}.Render(ch, rv)
	if err != nil {
		t.Fatalf("render %s: %v", dir, err)
	}
	var ms []manifest
	var errs []string
	for _, key := range slices.Sorted(maps.Keys(out)) {
		if ext := path.Ext(key); ext != ".yaml" && ext != ".yml" {
			continue // NOTES.txt, _helpers.tpl
		}
		if strings.TrimSpace(out[key]) == "" {
			continue // disabled by the values
		}
		m, e := decodeManifests(name+"/"+path.Base(key), []byte(out[key]))
		ms = append(ms, m...)
		errs = append(errs, e...)
	}
	if len(errs) > 0 {
		t.Fatalf("rendered %s:\n  %s", dir, strings.Join(errs, "\n  "))
	}
	return ms
}

// checkRenderedConfig runs "authgate check-config" on the configuration
// in cm with the secret files it names taken from the rendered Secret (or
// a test secret in place of the placeholder), written to a directory that
// stands in for the secret mount.
func checkRenderedConfig(t *testing.T, ms []manifest, cm *corev1.ConfigMap, mountPath string) {
	t.Helper()
	dir := t.TempDir()
	for _, m := range ms {
		s, ok := m.obj.(*corev1.Secret)
		if !ok {
			continue
		}
		for k, v := range s.StringData {
			switch {
			case v == placeholder && strings.HasSuffix(k, ".pem"):
				v = testAssertionKey(t)
			case v == placeholder:
				v = "deploy-test-secret-0123456789abcdef\n"
			}
			if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := strings.ReplaceAll(cm.Data[configKey], strings.TrimSuffix(mountPath, "/")+"/", dir+"/")
	checkConfig(t, cm.Name, cfg)
}

// testAssertionKey returns a new P-256 key in PEM, as
// openssl genpkey writes it.
func testAssertionKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestHelmChart renders the chart with its default values, with every
// example values file under ci/, and as the sidecar in the example
// application's chart, and checks each render as the manifests under
// deploy/kubernetes are checked: strict decoding, the Deployments,
// selectors and references, and check-config on the configuration.
func TestHelmChart(t *testing.T) {
	examples, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no example values under %s/ci: %v", chartDir, err)
	}
	type render struct {
		name, dir  string
		valueFiles []string
		want       []string // kinds that must be rendered
	}
	forwardAuth := []string{"v1/ConfigMap", "v1/Secret", "apps/v1/Deployment", "v1/Service", "policy/v1/PodDisruptionBudget", "networking.k8s.io/v1/NetworkPolicy"}
	renders := []render{{name: "defaults", dir: chartDir, want: append(forwardAuth, "autoscaling/v2/HorizontalPodAutoscaler")}}
	for _, f := range examples {
		renders = append(renders, render{name: "ci-" + strings.TrimSuffix(filepath.Base(f), ".yaml"), dir: chartDir, valueFiles: []string{f}, want: forwardAuth})
	}
	renders = append(renders, render{name: "sidecar-example", dir: sidecarExample, want: []string{"v1/ConfigMap", "v1/Secret", "apps/v1/Deployment", "v1/Service"}})

	for _, r := range renders {
		t.Run(r.name, func(t *testing.T) {
			ms := renderChart(t, r.name, r.dir, nil, r.valueFiles...)
			count := map[string]int{}
			for _, m := range ms {
				count[m.gvk]++
			}
			for _, gvk := range r.want {
				if count[gvk] == 0 {
					t.Errorf("no %s rendered (rendered %v)", gvk, count)
				}
			}
			checkReferences(t, ms)
			n := 0
			eachDeployment(t, ms, func(t *testing.T, m manifest, d *appsv1.Deployment) {
				checkDeployment(t, ms, m, d)
				for _, c := range d.Spec.Template.Spec.Containers {
					if !authgateContainer(c) {
						continue
					}
					n++
					cm := mountedConfigMap(t, ms, m, d.Spec.Template.Spec, c, flagValue(c.Args, "--config"))
					mount := ""
					for _, vm := range c.VolumeMounts {
						if vm.Name == "authgate-secrets" {
							mount = vm.MountPath
						}
					}
					for _, k := range []string{"checksum/config", "checksum/secret"} {
						if d.Spec.Template.Annotations[k] == "" {
							t.Errorf("pod template has no %s annotation: a change would not roll the pods", k)
						}
					}
					checkRenderedConfig(t, ms, cm, mount)
				}
			})
			if n != 1 {
				t.Errorf("%d authgate containers rendered, want 1", n)
			}
		})
	}
}

// podAnnotations renders the chart and returns the pod template's
// annotations and the name of the Secret the authgate container's
// secret volume comes from.
func podAnnotations(t *testing.T, vals map[string]any) (map[string]string, string, bool) {
	t.Helper()
	ms := renderChart(t, "checksums", chartDir, vals)
	var ann map[string]string
	secretVol, created := "", false
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			ann = o.Spec.Template.Annotations
			for _, v := range o.Spec.Template.Spec.Volumes {
				if v.Secret != nil {
					secretVol = v.Secret.SecretName
				}
			}
		case *corev1.Secret:
			created = true
		}
	}
	return ann, secretVol, created
}

// TestHelmChecksums checks that a change of a configuration key that
// authgate reads only at start, or of a Secret the chart creates, changes
// the pod template (so "helm upgrade" rolls the pods); that a change
// authgate reloads by itself (routes, issuers, log level, ...) and
// nothing else does; and that an existing Secret is mounted and not
// created.
func TestHelmChecksums(t *testing.T) {
	base, _, _ := podAnnotations(t, nil)
	tests := []struct {
		name          string
		give          map[string]any
		wantChanged   []string
		wantSecret    string
		wantCreated   bool
		wantNoSecretA bool
	}{
		{
			name:        "restart key: shutdown grace",
			give:        map[string]any{"config": map[string]any{"server": map[string]any{"shutdown_grace": "30s"}}},
			wantChanged: []string{"checksum/config"},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "restart key: log format",
			give:        map[string]any{"config": map[string]any{"log": map[string]any{"format": "console"}}},
			wantChanged: []string{"checksum/config"},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "restart key: federation pool",
			give:        map[string]any{"config": map[string]any{"federation": map[string]any{"max_conns": 20}}},
			wantChanged: []string{"checksum/config"},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "restart key: cache budget",
			give:        map[string]any{"config": map[string]any{"cache": map[string]any{"local_max_bytes": 1048576}}},
			wantChanged: []string{"checksum/config"},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "restart key: token cache",
			give:        map[string]any{"config": map[string]any{"verify": map[string]any{"cache": map[string]any{"ttl": "1m"}}}},
			wantChanged: []string{"checksum/config"},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "restart key: firebase project",
			give:        map[string]any{"config": map[string]any{"verify": map[string]any{"firebase": map[string]any{"project_id": "other"}}}},
			wantChanged: []string{"checksum/config"},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "restart key: assertion on",
			give:        map[string]any{"config": map[string]any{"assertion": map[string]any{"enabled": true}}},
			wantChanged: []string{"checksum/config"},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "restart key: grpc listener",
			give:        map[string]any{"config": map[string]any{"ext_authz_grpc": map[string]any{"addr": ":9191"}}},
			wantChanged: []string{"checksum/config"},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "reloaded key: log level",
			give:        map[string]any{"config": map[string]any{"log": map[string]any{"level": "debug"}}},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "reloaded key: routes",
			give:        map[string]any{"config": map[string]any{"routes": []any{map[string]any{"name": "default", "path": "/"}}}},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "reloaded key: trusted proxies",
			give:        map[string]any{"config": map[string]any{"trusted_proxies": []any{"10.0.0.0/8"}}},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "reloaded key: legacy issuer",
			give:        map[string]any{"config": map[string]any{"verify": map[string]any{"legacy": map[string]any{"issuer": "https://other.example.com"}}}},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "reloaded key: assertion issuer",
			give:        map[string]any{"config": map[string]any{"assertion": map[string]any{"issuer": "https://other.example.com"}}},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "secret change",
			give:        map[string]any{"secret": map[string]any{"data": map[string]any{"legacy-hs256": "another-secret-0123456789abcdef0123"}}},
			wantChanged: []string{"checksum/secret"},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:        "replicas only",
			give:        map[string]any{"autoscaling": map[string]any{"enabled": false}, "replicaCount": 4},
			wantSecret:  "rel-authgate",
			wantCreated: true,
		},
		{
			name:          "existing secret",
			give:          map[string]any{"secret": map[string]any{"existingSecret": "platform-legacy"}},
			wantChanged:   []string{"checksum/secret"},
			wantSecret:    "platform-legacy",
			wantNoSecretA: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, secretVol, created := podAnnotations(t, tt.give)
			var changed []string
			for _, k := range slices.Sorted(maps.Keys(base)) {
				if got[k] != base[k] {
					changed = append(changed, k)
				}
			}
			if !slices.Equal(changed, tt.wantChanged) {
				t.Errorf("changed annotations %q, want %q", changed, tt.wantChanged)
			}
			if _, ok := got["checksum/secret"]; ok == tt.wantNoSecretA {
				t.Errorf("checksum/secret present %v, want %v", ok, !tt.wantNoSecretA)
			}
			if secretVol != tt.wantSecret || created != tt.wantCreated {
				t.Errorf("secret volume from %q (Secret rendered: %v), want %q (%v)", secretVol, created, tt.wantSecret, tt.wantCreated)
			}
		})
	}
}

// TestHelmChartMetadata checks that the image the chart runs is the
// release it describes, and that the sidecar example depends on it.
func TestHelmChartMetadata(t *testing.T) {
	ch, err := loader.LoadDir(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := ch.Values["image"].(map[string]any)["tag"].(string)
	if tag == "" || tag != ch.Metadata.AppVersion {
		t.Errorf("values image.tag %q, want the chart's appVersion %q", tag, ch.Metadata.AppVersion)
	}
	b, err := os.ReadFile(filepath.Join(sidecarExample, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var app chartv2.Metadata
	if err := yaml.UnmarshalStrict(b, &app); err != nil {
		t.Fatal(err)
	}
	if len(app.Dependencies) != 1 || app.Dependencies[0].Name != ch.Metadata.Name || app.Dependencies[0].Version != ch.Metadata.Version ||
		app.Dependencies[0].Repository != "file://../../authgate" {
		t.Errorf("sidecar example's dependencies %+v, want authgate %s from file://../../authgate", app.Dependencies, ch.Metadata.Version)
	}
}
