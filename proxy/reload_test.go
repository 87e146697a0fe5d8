package proxy

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// TestReload serves a request on a route, reloads with the route made
// public, and serves it again: through the same Handler, whose metrics
// carry on.
func TestReload(t *testing.T) {
	h := newHandler(t, testConfig(upstreamEcho))
	get := func() int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "http://svc/reports", nil))
		return w.Code
	}
	if got := get(); got != http.StatusUnauthorized {
		t.Fatalf("GET /reports without a token before the reload = %d, want 401", got)
	}

	cfg := testConfig(upstreamEcho)
	cfg.Routes = append([]RouteConfig{{Name: "reports", Path: "/reports", Access: AccessPublic}}, slices.Clone(testRoutes)...)
	if err := h.Reload(cfg); err != nil {
		t.Fatalf("Reload() error = %v", err)
	}
	if got := get(); got != http.StatusOK {
		t.Errorf("GET /reports without a token after the reload = %d, want 200", got)
	}

	bad := testConfig(upstreamEcho)
	bad.Routes = append(slices.Clone(testRoutes), RouteConfig{Name: "broken", Path: "no-slash"})
	if err := h.Reload(bad); err == nil {
		t.Fatal("Reload(invalid route) error = nil")
	}
	if got := get(); got != http.StatusOK {
		t.Errorf("GET /reports after a failed reload = %d, want 200 (the previous configuration)", got)
	}
}

// TestReloadInFlight checks that a request in flight when the
// configuration changes finishes under the one it started with: the
// upstream blocks it while the route is turned to deny.
func TestReloadInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.Header().Set("X-Seen-User", r.Header.Get(HeaderUserID))
	}))
	defer up.Close()
	h := newHandler(t, testConfig(up.URL))
	done := make(chan *httptest.ResponseRecorder)
	go func() {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "http://svc/x", nil)
		r.Header.Set("Authorization", "Bearer "+token(t, "alice", nil))
		h.ServeHTTP(w, r)
		done <- w
	}()
	<-entered
	cfg := testConfig(up.URL)
	cfg.Routes = []RouteConfig{{Name: "all", Path: "/", Access: AccessDeny}}
	if err := h.Reload(cfg); err != nil {
		t.Fatalf("Reload() error = %v", err)
	}
	close(release)
	w := <-done
	if w.Code != http.StatusOK || w.Header().Get("X-Seen-User") != "alice" {
		t.Errorf("request in flight = %d with user %q, want 200 with alice", w.Code, w.Header().Get("X-Seen-User"))
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "http://svc/x", nil))
	if w.Code != http.StatusForbidden {
		t.Errorf("request after the reload = %d, want 403", w.Code)
	}
}

// TestReloadExtAuthz checks that the ext_authz gRPC server decides with
// the configuration of the moment: a route made public admits an
// anonymous Check after the reload.
func TestReloadExtAuthz(t *testing.T) {
	h := newHandler(t, testConfig(""))
	_, conn := startExtAuthz(t, h)
	check := func() int32 {
		resp, err := authv3.NewAuthorizationClient(conn).Check(t.Context(), checkRequest("GET", "svc", "/reports", nil))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if resp.GetOkResponse() != nil {
			return 200
		}
		return int32(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	if got := check(); got != http.StatusUnauthorized {
		t.Fatalf("anonymous Check of /reports before the reload = %d, want 401", got)
	}
	cfg := testConfig("")
	cfg.Routes = append([]RouteConfig{{Name: "reports", Path: "/reports", Access: AccessPublic}}, slices.Clone(testRoutes)...)
	if err := h.Reload(cfg); err != nil {
		t.Fatalf("Reload() error = %v", err)
	}
	if got := check(); got != http.StatusOK {
		t.Errorf("anonymous Check of /reports after the reload = %d, want 200", got)
	}
}
