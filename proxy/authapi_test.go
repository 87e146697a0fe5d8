package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// mountedAPI records what the mounted handler saw and answers 401, as the
// auth API does for a wrong password.
type mountedAPI struct {
	got      *http.Request
	clientIP netip.Addr
}

func (m *mountedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.got = r
	m.clientIP = ClientIP(r)
	ReportOutcome(r, "user-7", "invalid_credentials")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(`{"error":{"code":"invalid_credentials","message":"wrong email or password"}}`))
}

// The auth API gets the pipeline's edges (identity headers stripped,
// request id, access log, metrics) but no route rules.
func TestAuthAPIMounted(t *testing.T) {
	up := newUpstream(t, nil)
	cfg := testConfig(up.URL)
	cfg.Routes = []RouteConfig{{Name: "nothing", Path: "/", Access: AccessDeny}}
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	api := &mountedAPI{}
	h, err := New(cfg, newVerifier(t), zap.New(core), reg, WithAuthAPI("/v1/auth", api))
	if err != nil {
		t.Fatal(err)
	}

	r := httptest.NewRequest("POST", "http://svc/v1/auth/login", strings.NewReader(`{}`))
	r.Header.Set("X-User-Id", "admin")
	r.Header.Set("x_user_type", "admin")
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	w := serve(h, r, "127.0.0.1:5000") // a trusted proxy
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "invalid_credentials") {
		t.Fatalf("POST /v1/auth/login = %d %s, want the mounted handler's 401", w.Code, w.Body)
	}
	if api.got == nil {
		t.Fatal("the mounted handler was not called (a route rule applied?)")
	}
	if got := headersWithPrefix(api.got.Header); len(got) != 0 {
		t.Errorf("the mounted handler saw client identity headers %v", got)
	}
	if id := api.got.Header.Get("X-Request-Id"); id == "" || w.Header().Get("X-Request-Id") != id {
		t.Errorf("request id %q, answered %q, want one id on both", id, w.Header().Get("X-Request-Id"))
	}
	if api.clientIP.String() != "198.51.100.7" {
		t.Errorf("ClientIP behind a trusted proxy = %s, want 198.51.100.7", api.clientIP)
	}
	if up.count() != 0 {
		t.Error("the upstream received an auth API request")
	}

	// From an untrusted peer, X-Forwarded-For is not believed.
	r = httptest.NewRequest("GET", "http://svc/v1/auth/me", nil)
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	serve(h, r, "203.0.113.9:1")
	if api.clientIP.String() != "203.0.113.9" {
		t.Errorf("ClientIP from an untrusted peer = %s, want the peer 203.0.113.9", api.clientIP)
	}
	// Other paths are not the auth API's.
	serve(h, httptest.NewRequest("GET", "http://svc/v1/authx", nil), "203.0.113.9:1")
	if api.got.URL.Path != "/v1/auth/me" {
		t.Errorf("/v1/authx reached the auth API")
	}

	entries := logs.FilterMessage("request").All()
	if len(entries) != 3 {
		t.Fatalf("%d access log lines, want 3", len(entries))
	}
	first := entries[0].ContextMap()
	for k, want := range map[string]any{"mode": "auth_api", "status": int64(401), "user_id": "user-7", "reason": "invalid_credentials", "route": "none"} {
		if first[k] != want {
			t.Errorf("access log %s = %v, want %v", k, first[k], want)
		}
	}
	if got := testutil.ToFloat64(h.cur.Load().metrics.requests[modeIndex(modeAuthAPI)][0][classIndex(401)]); got != 2 {
		t.Errorf("requests_total{mode=auth_api,code=4xx} = %v, want 2", got)
	}
}

func TestAuthAPIPrefixChecked(t *testing.T) {
	api := &mountedAPI{}
	for _, prefix := range []string{"/v1/token", "/v1/token/x", "/auth", "/auth/v1", "/v1/auth/", "v1/auth", "/v1/../auth"} {
		if _, err := New(testConfig(""), newVerifier(t), zap.NewNop(), nil, WithAuthAPI(prefix, api)); err == nil {
			t.Errorf("New with auth API prefix %q = nil error, want a refusal", prefix)
		}
	}
	if _, err := New(testConfig(""), newVerifier(t), zap.NewNop(), nil, WithAuthAPI("/v1", api)); err == nil {
		t.Error("New with auth API prefix /v1 over /v1/token = nil error, want a refusal")
	}
}

func TestClientIPOutsideTheHandler(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "[::ffff:192.0.2.1]:80"
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	if got := ClientIP(r); got.String() != "192.0.2.1" {
		t.Errorf("ClientIP = %s, want the peer 192.0.2.1", got)
	}
	ReportOutcome(r, "u", "x") // no effect, no panic
}
