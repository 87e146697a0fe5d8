package deploy_test

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// decodeEnvoy decodes an Envoy bootstrap file strictly into Envoy's own
// API types (an unknown field or type URL fails, as Envoy would refuse
// it), runs the API's validation rules, and returns it with its HTTP
// connection managers.
func decodeEnvoy(t *testing.T, file string) (*bootstrapv3.Bootstrap, []*hcmv3.HttpConnectionManager) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	boot, hcms, err := decodeEnvoyBytes(b)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return boot, hcms
}

func decodeEnvoyBytes(b []byte) (*bootstrapv3.Bootstrap, []*hcmv3.HttpConnectionManager, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, nil, err
	}
	var boot bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &boot); err != nil {
		return nil, nil, err
	}
	if err := boot.ValidateAll(); err != nil {
		return nil, nil, err
	}
	var hcms []*hcmv3.HttpConnectionManager
	for _, l := range boot.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if !f.GetTypedConfig().MessageIs(&hcm) {
					continue
				}
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					return nil, nil, err
				}
				if err := hcm.ValidateAll(); err != nil {
					return nil, nil, fmt.Errorf("%s: %w", f.GetName(), err)
				}
				for _, hf := range hcm.GetHttpFilters() {
					m, err := hf.GetTypedConfig().UnmarshalNew()
					if err != nil {
						return nil, nil, fmt.Errorf("http filter %s: %w", hf.GetName(), err)
					}
					if v, ok := m.(interface{ ValidateAll() error }); ok {
						if err := v.ValidateAll(); err != nil {
							return nil, nil, fmt.Errorf("http filter %s: %w", hf.GetName(), err)
						}
					}
				}
				hcms = append(hcms, &hcm)
			}
		}
	}
	if len(hcms) == 0 {
		return nil, nil, errors.New("no http_connection_manager")
	}
	return &boot, hcms, nil
}

func TestEnvoyDecodesStrictly(t *testing.T) {
	for _, f := range []string{"envoy/envoy.yaml", "envoy/envoy-grpc.yaml"} {
		t.Run(f, func(t *testing.T) { decodeEnvoy(t, f) })
	}
	// The decoding is strict: mistakes Envoy would refuse fail here too.
	b, err := os.ReadFile("envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ old, new string }{
		{"forward: true", "forwad: true"},                     // misspelt field in a typed_config
		{"cache_duration: 300s", "cache_duration: 5 minutes"}, // not a duration
		{"timeout: 1s", "timeout: -1s"},                       // refused by the API's validation rules
		{"jwt_authn.v3.JwtAuthentication", "jwt_authn.v3.JwtAuth"},
	} {
		if !bytes.Contains(b, []byte(r.old)) {
			t.Fatalf("envoy/envoy.yaml no longer contains %q; update the test", r.old)
		}
		if _, _, err := decodeEnvoyBytes(bytes.Replace(b, []byte(r.old), []byte(r.new), 1)); err == nil {
			t.Errorf("envoy.yaml with %q in place of %q decodes", r.new, r.old)
		}
	}
}

// forwardAuthAssertion is the assertion block of configs/forward-auth.yaml,
// the configuration the Envoy example names.
type forwardAuthAssertion struct {
	Assertion struct {
		Issuer   string   `json:"issuer"`
		Audience string   `json:"audience"`
		Header   string   `json:"header"`
		JWKSPath string   `json:"jwks_path"`
		KeyFiles []string `json:"key_files"`
	} `json:"assertion"`
	ForwardAuth struct {
		Path string `json:"path"`
	} `json:"forward_auth"`
	Routes []struct {
		Path   string `json:"path"`
		Access string `json:"access"`
	} `json:"routes"`
}

// TestEnvoyAssertion checks that both Envoy examples verify
// authgate's assertion as configs/forward-auth.yaml signs it: after
// ext_authz (which puts authgate's header in place of a client's) and
// before the router, from X-User-Assertion only, kept for the
// application, with the issuer and audience of the configuration, the
// keys from authgate's JWKS path on a cluster that exists, and every
// route but authgate's public ones requiring it.
func TestEnvoyAssertion(t *testing.T) {
	var ag forwardAuthAssertion
	b, err := os.ReadFile("../configs/forward-auth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ag); err != nil {
		t.Fatalf("configs/forward-auth.yaml: %v", err)
	}
	a := ag.Assertion
	if a.Issuer == "" || a.Audience == "" {
		t.Fatalf("configs/forward-auth.yaml: assertion.issuer %q, assertion.audience %q: want both, the Envoy example checks them", a.Issuer, a.Audience)
	}
	header, jwksPath := cmp.Or(a.Header, "X-User-Assertion"), cmp.Or(a.JWKSPath, "/.well-known/jwks.json")

	for _, file := range []string{"envoy/envoy.yaml", "envoy/envoy-grpc.yaml"} {
		t.Run(file, func(t *testing.T) { checkEnvoyAssertion(t, file, ag, header, jwksPath) })
	}
}

// checkEnvoyAssertion is TestEnvoyAssertion for one Envoy bootstrap. Over
// HTTP, ext_authz must copy authgate's header and the JWKS come from the
// same cluster; over gRPC authgate sets the header itself and the JWKS
// comes from a cluster on authgate's public port.
func checkEnvoyAssertion(t *testing.T, file string, ag forwardAuthAssertion, header, jwksPath string) {
	a := ag.Assertion
	boot, hcms := decodeEnvoy(t, file)
	clusterPort := map[string]uint32{}
	for _, c := range boot.GetStaticResources().GetClusters() {
		for _, e := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range e.GetLbEndpoints() {
				clusterPort[c.GetName()] = lb.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
			}
		}
	}
	var names []string
	var authz extauthzv3.ExtAuthz
	var jwt jwtauthnv3.JwtAuthentication
	for _, hf := range hcms[0].GetHttpFilters() {
		names = append(names, hf.GetName())
		switch hf.GetName() {
		case "envoy.filters.http.ext_authz":
			if err := hf.GetTypedConfig().UnmarshalTo(&authz); err != nil {
				t.Fatal(err)
			}
		case "envoy.filters.http.jwt_authn":
			if err := hf.GetTypedConfig().UnmarshalTo(&jwt); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := []string{"envoy.filters.http.ext_authz", "envoy.filters.http.jwt_authn", "envoy.filters.http.router"}; !slices.Equal(names, want) {
		t.Fatalf("http filters %v, want %v: jwt_authn must see the header ext_authz set", names, want)
	}
	overHTTP := authz.GetHttpService() != nil
	copied := false
	for _, m := range authz.GetHttpService().GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns() {
		copied = copied || m.GetExact() == "x-user-assertion"
	}
	if overHTTP && !copied {
		t.Error("ext_authz does not copy x-user-assertion from authgate's answer")
	}
	if len(jwt.GetProviders()) != 1 {
		t.Fatalf("jwt_authn providers %v, want authgate's only", jwt.GetProviders())
	}
	var provider string
	for name, p := range jwt.GetProviders() {
		provider = name
		if p.GetIssuer() != a.Issuer {
			t.Errorf("provider %s: issuer %q, want assertion.issuer %q", name, p.GetIssuer(), a.Issuer)
		}
		if !slices.Equal(p.GetAudiences(), []string{a.Audience}) {
			t.Errorf("provider %s: audiences %v, want [%s] (assertion.audience)", name, p.GetAudiences(), a.Audience)
		}
		fh := p.GetFromHeaders()
		if len(fh) != 1 || !strings.EqualFold(fh[0].GetName(), header) || fh[0].GetValuePrefix() != "" {
			t.Errorf("provider %s: from_headers %v, want %s alone", name, fh, header)
		}
		if len(p.GetFromParams()) > 0 || len(p.GetFromCookies()) > 0 {
			t.Errorf("provider %s reads more than %s", name, header)
		}
		if !p.GetForward() {
			t.Errorf("provider %s: forward is false: Envoy would remove the assertion before the application", name)
		}
		hu := p.GetRemoteJwks().GetHttpUri()
		u, err := url.Parse(hu.GetUri())
		if err != nil || u.Path != jwksPath || u.Port() != "8080" {
			t.Errorf("provider %s: remote_jwks %q, want authgate's public port 8080 and path %s", name, hu.GetUri(), jwksPath)
		}
		if clusterPort[hu.GetCluster()] != 8080 {
			t.Errorf("provider %s: JWKS cluster %q does not reach authgate's public port 8080", name, hu.GetCluster())
		}
		if overHTTP && hu.GetCluster() != authz.GetHttpService().GetServerUri().GetCluster() {
			t.Errorf("provider %s: JWKS cluster %q, want ext_authz's authgate cluster", name, hu.GetCluster())
		}
	}
	// Each route of authgate's is either public (no assertion needed) or
	// needs the provider; the catch-all needs it.
	public := map[string]bool{}
	for _, r := range ag.Routes {
		if r.Access == "public" {
			public[r.Path] = true
		}
	}
	rules := jwt.GetRules()
	for i, r := range rules {
		prefix := r.GetMatch().GetPrefix()
		req := r.GetRequires()
		switch {
		case i == len(rules)-1:
			// The first matching rule applies: the catch-all comes last.
			if prefix != "/" || req.GetProviderName() != provider {
				t.Errorf(`last rule: prefix %q requires %v, want prefix "/" requiring provider %s`, prefix, req, provider)
			}
		case public[prefix]:
			if req.GetAllowMissingOrFailed() == nil && req.GetAllowMissing() == nil {
				t.Errorf("rule %s: a public route of authgate's, but it requires an assertion anonymous requests do not have", prefix)
			}
		case req.GetProviderName() != provider:
			t.Errorf("rule %s: neither a public route of authgate's nor requiring provider %s", prefix, provider)
		}
	}
}
