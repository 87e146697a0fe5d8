package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func TestProxyDecisions(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHandler(t, testConfig(up.URL))
	user := token(t, "u-1", nil)
	admin := token(t, "a-1", func(c map[string]any) { c["user_type"] = "admin" })
	unverified := token(t, "u-2", func(c map[string]any) { c["email_verified"] = false })
	stringVerified := token(t, "u-2", func(c map[string]any) { c["email_verified"] = "true" })
	beta := token(t, "u-3", func(c map[string]any) { c["plan"] = "beta" })
	expired := token(t, "u-4", func(c map[string]any) {
		c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		c["exp"] = time.Now().Add(-time.Hour).Unix()
	})

	tests := []struct {
		name       string
		giveMethod string
		givePath   string
		giveHost   string
		giveToken  string
		wantStatus int
		wantWWW    string
		wantUser   string // X-User-Id the upstream must see; "" = not forwarded or anonymous
		wantUp     bool
	}{
		{name: "valid token", givePath: "/x", giveToken: user, wantStatus: 200, wantUser: "u-1", wantUp: true},
		{name: "no token", givePath: "/x", wantStatus: 401, wantWWW: "Bearer"},
		{name: "forged token", givePath: "/x", giveToken: forgedToken(t, "u-1"), wantStatus: 401, wantWWW: `Bearer error="invalid_token"`},
		{name: "expired token", givePath: "/x", giveToken: expired, wantStatus: 401, wantWWW: `Bearer error="invalid_token"`},
		{name: "garbage token", givePath: "/x", giveToken: "not.a.jwt", wantStatus: 401, wantWWW: `Bearer error="invalid_token"`},
		{name: "public without token", givePath: "/public/a", wantStatus: 200, wantUp: true},
		{name: "public with valid token passes identity", givePath: "/public/a", giveToken: user, wantStatus: 200, wantUser: "u-1", wantUp: true},
		{name: "public with invalid token is refused", givePath: "/public/a", giveToken: forgedToken(t, "u-1"), wantStatus: 401, wantWWW: `Bearer error="invalid_token"`},
		{name: "role required, missing", givePath: "/admin/x", giveToken: user, wantStatus: 403},
		{name: "role required, present", givePath: "/admin/x", giveToken: admin, wantStatus: 200, wantUser: "a-1", wantUp: true},
		{name: "email_verified required, false", givePath: "/verified", giveToken: unverified, wantStatus: 403},
		{name: "email_verified required, the string true", givePath: "/verified", giveToken: stringVerified, wantStatus: 403},
		{name: "email_verified required, true", givePath: "/verified", giveToken: user, wantStatus: 200, wantUser: "u-1", wantUp: true},
		{name: "claim required, missing", givePath: "/beta", giveToken: user, wantStatus: 403},
		{name: "claim required, present", givePath: "/beta/x", giveToken: beta, wantStatus: 200, wantUser: "u-3", wantUp: true},
		{name: "deny route", givePath: "/blocked", giveToken: admin, wantStatus: 403},
		{name: "glob matches one segment", givePath: "/files/a/meta", giveToken: user, wantStatus: 200, wantUser: "u-1", wantUp: true},
		{name: "method rule applies to POST", giveMethod: "POST", givePath: "/api/x", giveToken: user, wantStatus: 403},
		{name: "method rule skipped for GET, host rule matches", giveMethod: "GET", givePath: "/api/x", giveHost: "api.example.test", giveToken: user, wantStatus: 200, wantUser: "u-1", wantUp: true},
		{name: "no route matches", givePath: "/api/x", giveHost: "other.example.org", giveToken: user, wantStatus: 403},
		{name: "prefix is segment-aware", givePath: "/publicity", wantStatus: 401, wantWWW: "Bearer"},
		{name: "dot-dot cannot reach a public rule", givePath: "/public/../admin", wantStatus: 401, wantWWW: "Bearer"},
		{name: "encoded dot-dot cannot reach a public rule", givePath: "/public/%2e%2e/admin", wantStatus: 401, wantWWW: "Bearer"},
		{name: "encoded slash refused", givePath: "/public%2f..%2fadmin", wantStatus: 400},
		{name: "encoded backslash refused", givePath: "/public/..%5cadmin", wantStatus: 400},
		{name: "NUL refused", givePath: "/public/a%00", wantStatus: 400},
		{name: "double encoding refused", givePath: "/public/%252e%252e/admin", wantStatus: 400},
		{name: "servlet dot-dot-semicolon refused", givePath: "/public/..;/admin", wantStatus: 400},
		// A case-insensitive backend reads /ADMIN as /admin; a case-sensitive
		// one does not. When that changes the route, the request is refused.
		{name: "upper case that changes the route", givePath: "/ADMIN/x", giveToken: user, wantStatus: 400},
		{name: "upper case that would make a path public", givePath: "/Public/a", wantStatus: 400},
		{name: "upper case that changes nothing", givePath: "/orders/ABC123", giveToken: user, wantStatus: 200, wantUser: "u-1", wantUp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.count()
			method := tt.giveMethod
			if method == "" {
				method = http.MethodGet
			}
			r := httptest.NewRequest(method, "http://svc.example.test"+tt.givePath, nil)
			if tt.giveHost != "" {
				r.Host = tt.giveHost
			}
			if tt.giveToken != "" {
				r.Header.Set("Authorization", "Bearer "+tt.giveToken)
			}
			r.Header.Set("X-User-Id", "spoofed")
			w := serve(h, r, "203.0.113.9:1234")

			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", w.Code, tt.wantStatus, w.Body.String())
			}
			if got := w.Header().Get("Www-Authenticate"); got != tt.wantWWW {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantWWW)
			}
			if got := up.count() > before; got != tt.wantUp {
				t.Fatalf("upstream reached = %v, want %v", got, tt.wantUp)
			}
			if !tt.wantUp {
				if strings.Contains(w.Body.String(), "upstream") {
					t.Errorf("refused request body %q came from upstream", w.Body.String())
				}
				return
			}
			got := up.last(t).Header.Values("X-User-Id")
			var want []string
			if tt.wantUser != "" {
				want = []string{tt.wantUser}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("upstream X-User-Id = %q, want %q", got, want)
			}
		})
	}
}

func TestProxyUpstreamSeesCanonicalPathAndQuery(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHandler(t, testConfig(up.URL+"/base"))
	r := httptest.NewRequest("GET", "http://svc/public//a/./b/../c%20d/?q=%2F1", nil)
	w := serve(h, r, "203.0.113.9:1")
	if w.Code != 200 {
		t.Fatalf("status = %d, want 200", w.Code)
	}
	got := up.last(t)
	if got.URL.Path != "/base/public/a/c d/" {
		t.Errorf("upstream path = %q, want %q", got.URL.Path, "/base/public/a/c d/")
	}
	if got.URL.RawQuery != "q=%2F1" {
		t.Errorf("upstream query = %q, want %q", got.URL.RawQuery, "q=%2F1")
	}
}

// TestProxyStripsEveryIdentitySpelling sends headers over the wire exactly
// as spelt, since Go's client would canonicalise them.
func TestProxyStripsEveryIdentitySpelling(t *testing.T) {
	spellings := []string{
		"X-User-Id: evil", "x-user-id: evil", "X-USER-ID: evil", "X_User_Id: evil", "x_user_id: evil",
		"X-User_Id: evil", "X-User-Id: evil2", "X-User-Email: evil@example.test", "X-User-Type: admin",
		"X-User-Firebase-Uid: evil", "X-User-Anything-Else: evil", "X-User-Federation: active",
	}
	up := newUpstream(t, nil)
	srv := httptest.NewServer(newHandler(t, testConfig(up.URL)))
	t.Cleanup(srv.Close)
	tok := token(t, "u-1", nil)
	tests := []struct {
		name      string
		givePath  string
		giveAuth  string
		wantUser  []string
		wantEmpty bool
	}{
		{name: "authenticated", givePath: "/x", giveAuth: "Authorization: Bearer " + tok + "\r\n", wantUser: []string{"u-1"}},
		{name: "public anonymous", givePath: "/public/x", wantEmpty: true},
		{name: "hop-by-hop trick", givePath: "/x", giveAuth: "Authorization: Bearer " + tok + "\r\nConnection: X-User-Id, X-User-Email\r\n", wantUser: []string{"u-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := "GET " + tt.givePath + " HTTP/1.1\r\nHost: svc\r\n" + tt.giveAuth +
				strings.Join(spellings, "\r\n") + "\r\n\r\n"
			resp := rawRequest(t, srv.Listener.Addr().String(), req)
			if resp.StatusCode != 200 {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}
			got := up.last(t).Header
			for _, line := range headersWithPrefix(got) {
				if strings.Contains(line, "evil") || strings.Contains(line, "admin") || strings.Contains(line, "active") {
					t.Errorf("client value reached upstream: %q", line)
				}
			}
			if tt.wantEmpty && len(headersWithPrefix(got)) != 0 {
				t.Errorf("anonymous request carried identity headers upstream: %q", headersWithPrefix(got))
			}
			if tt.wantUser != nil && strings.Join(got.Values("X-User-Id"), ",") != strings.Join(tt.wantUser, ",") {
				t.Errorf("upstream X-User-Id = %q, want %q", got.Values("X-User-Id"), tt.wantUser)
			}
		})
	}
}

func TestProxyIdentityHeaders(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHandler(t, testConfig(up.URL))
	r := httptest.NewRequest("GET", "http://svc/x", nil)
	r.Header.Set("Authorization", "bearer "+token(t, "u-7", nil)) // scheme is case-insensitive
	if w := serve(h, r, "203.0.113.9:1"); w.Code != 200 {
		t.Fatalf("status = %d, want 200", w.Code)
	}
	got := up.last(t).Header
	want := map[string]string{
		HeaderUserID: "u-7", HeaderEmail: "u-7@example.test", HeaderEmailVerified: "true",
		HeaderName: "u-7", HeaderType: "user", HeaderProvider: "legacy", HeaderFederation: "disabled",
		HeaderFirebaseUID: "", HeaderTokenBalance: "",
	}
	for k, v := range want {
		if g := got.Get(k); g != v {
			t.Errorf("upstream %s = %q, want %q", k, g, v)
		}
	}
	if got.Get("Authorization") == "" {
		t.Error("Authorization was not passed to the upstream")
	}
}

func TestProxyCustomHeaderPrefix(t *testing.T) {
	up := newUpstream(t, nil)
	cfg := testConfig(up.URL)
	cfg.HeaderPrefix = "X-Auth-"
	h := newHandler(t, cfg)
	r := httptest.NewRequest("GET", "http://svc/x", nil)
	r.Header.Set("Authorization", "Bearer "+token(t, "u-1", nil))
	r.Header.Set("X-Auth-Id", "evil")
	r.Header.Set("X_auth_type", "admin")
	serve(h, r, "203.0.113.9:1")
	got := up.last(t).Header
	if g := got.Get("X-Auth-Id"); g != "u-1" {
		t.Errorf("X-Auth-Id = %q, want u-1", g)
	}
	if g := got.Get("X_auth_type"); g != "" {
		t.Errorf("client X_auth_type reached upstream: %q", g)
	}
}

func TestProxyTokenSources(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHandler(t, testConfig(up.URL))
	tok, other := token(t, "u-1", nil), token(t, "u-2", nil)
	tests := []struct {
		name       string
		giveAuth   []string
		giveCookie string
		wantStatus int
		wantUser   string
	}{
		{name: "cookie", giveCookie: "theme=dark; __session=" + tok, wantStatus: 200, wantUser: "u-1"},
		{name: "header and same cookie", giveAuth: []string{"Bearer " + tok}, giveCookie: "__session=" + tok, wantStatus: 200, wantUser: "u-1"},
		{name: "header and different cookie", giveAuth: []string{"Bearer " + tok}, giveCookie: "__session=" + other, wantStatus: 400},
		{name: "two cookies", giveCookie: "__session=" + tok + "; __session=" + other, wantStatus: 400},
		{name: "two Authorization headers", giveAuth: []string{"Bearer " + tok, "Bearer " + tok}, wantStatus: 400},
		{name: "Basic scheme is no token", giveAuth: []string{"Basic dXNlcjpwYXNz"}, wantStatus: 401},
		{name: "empty bearer is an invalid token", giveAuth: []string{"Bearer "}, wantStatus: 401},
		{name: "other cookie only", giveCookie: "session=" + tok, wantStatus: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.count()
			r := httptest.NewRequest("GET", "http://svc/x", nil)
			for _, a := range tt.giveAuth {
				r.Header.Add("Authorization", a)
			}
			if tt.giveCookie != "" {
				r.Header.Set("Cookie", tt.giveCookie)
			}
			w := serve(h, r, "203.0.113.9:1")
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				if up.count() != before {
					t.Fatal("refused request reached the upstream")
				}
				return
			}
			if g := up.last(t).Header.Get("X-User-Id"); g != tt.wantUser {
				t.Errorf("X-User-Id = %q, want %q", g, tt.wantUser)
			}
		})
	}
}

func TestProxyForwardedHeadersTrust(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHandler(t, testConfig(up.URL))
	tok := token(t, "u-1", nil)
	tests := []struct {
		name      string
		givePeer  string
		wantXFF   string
		wantProto string
		wantHost  string
		wantFwd   string
		wantOrig  string
	}{
		{name: "untrusted peer", givePeer: "203.0.113.9:1", wantXFF: "203.0.113.9", wantProto: "http", wantHost: "svc"},
		{name: "trusted peer", givePeer: "192.0.2.1:1", wantXFF: "198.51.100.1, 192.0.2.1", wantProto: "https", wantHost: "public.example.test", wantFwd: "for=198.51.100.1", wantOrig: "/orig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://svc/x", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			r.Header.Set("X-Forwarded-For", "198.51.100.1")
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "public.example.test")
			r.Header.Set("Forwarded", "for=198.51.100.1")
			r.Header.Set("X-Original-URI", "/orig")
			if w := serve(h, r, tt.givePeer); w.Code != 200 {
				t.Fatalf("status = %d, want 200", w.Code)
			}
			got := up.last(t).Header
			for _, c := range []struct{ k, want string }{
				{"X-Forwarded-For", tt.wantXFF}, {"X-Forwarded-Proto", tt.wantProto},
				{"X-Forwarded-Host", tt.wantHost}, {"Forwarded", tt.wantFwd}, {"X-Original-Uri", tt.wantOrig},
			} {
				if g := strings.Join(got.Values(c.k), ", "); g != c.want {
					t.Errorf("upstream %s = %q, want %q", c.k, g, c.want)
				}
			}
		})
	}
}

func TestProxyUpstreamFailures(t *testing.T) {
	// A listener that accepts and never answers gives a response-header
	// timeout; a closed port gives a connection error.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hang.Close() })
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name       string
		giveURL    string
		wantStatus int
	}{
		{name: "connection refused", giveURL: "http://" + closedAddr, wantStatus: 502},
		{name: "no response headers in time", giveURL: "http://" + hang.Addr().String(), wantStatus: 504},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(tt.giveURL)
			cfg.Transport.ResponseHeaderTimeout = 200 * time.Millisecond
			h := newHandler(t, cfg)
			r := httptest.NewRequest("GET", "http://svc/x", nil)
			r.Header.Set("Authorization", "Bearer "+token(t, "u-1", nil))
			w := serve(h, r, "203.0.113.9:1")
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			body := w.Body.String()
			if strings.Contains(body, "127.0.0.1") || strings.Contains(body, "dial") || strings.Contains(body, "timeout awaiting") {
				t.Errorf("body leaks internal detail: %q", body)
			}
		})
	}
}

func TestProxyStreamsResponses(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "data: second\n\n")
	})
	srv := httptest.NewServer(newHandler(t, testConfig(up.URL)))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
	req.Host = "svc"
	req.Header.Set("Authorization", "Bearer "+token(t, "u-1", nil))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event = %q, %v; want it before the stream ends", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("rest of stream = %q, want second event", rest)
	}
}

func TestProxyWebSocketUpgrade(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-User-Id") != "u-1" {
			http.Error(w, "no identity", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		line, _ := brw.ReadString('\n')
		_, _ = io.WriteString(conn, "echo: "+line)
	})
	// The hijacked connection's access line may be written after the test
	// ends, when a zaptest logger would race with t; log nowhere.
	h, err := New(testConfig(up.URL), newVerifier(t), zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer "+token(t, "u-1", nil)+"\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", resp.StatusCode)
	}
	_, _ = io.WriteString(conn, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo: hello\n" {
		t.Fatalf("tunnel read = %q, %v; want echo", line, err)
	}
}

func TestProxyWithoutUpstreamIsNotFound(t *testing.T) {
	h := newHandler(t, testConfig(""))
	r := httptest.NewRequest("GET", "http://svc/x", nil)
	r.Header.Set("Authorization", "Bearer "+token(t, "u-1", nil))
	if w := serve(h, r, "203.0.113.9:1"); w.Code != 404 {
		t.Fatalf("status = %d, want 404", w.Code)
	}
}

// Route policy is evaluated on every request, never cached with the token:
// a token verified (and cached) on a lenient route is still refused on a
// stricter one.
func TestCachedTokenStillMeetsEachRoute(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHandler(t, testConfig(up.URL))
	tok := token(t, "u-1", func(c map[string]any) { c["email_verified"] = false })
	for _, c := range []struct {
		path string
		want int
	}{{"/x", 200}, {"/admin", 403}, {"/verified", 403}, {"/x", 200}, {"/admin", 403}} {
		r := httptest.NewRequest("GET", "http://svc"+c.path, nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if w := serve(h, r, "203.0.113.9:1"); w.Code != c.want {
			t.Errorf("GET %s = %d, want %d", c.path, w.Code, c.want)
		}
	}
}
