package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// foreignSpellings are other proxies' identity headers as a client may
// spell them on the wire: every one must be removed by the default
// strip_headers.
var foreignSpellings = []string{
	"X-Auth-Request-User: evil", "x-auth-request-user: evil", "X_Auth_Request_User: evil", "X-AUTH-REQUEST-EMAIL: evil@example.test",
	"X-Auth-Request-Preferred-Username: evil", "X-Auth-Request-Groups: admin", "X-Auth-Request-Access-Token: evil",
	"X-Auth-Request-User: evil2", "X-Auth_Request-Anything: evil",
	"X-Forwarded-User: evil", "x_forwarded_user: evil", "X-Forwarded-Email: evil@example.test", "X-Forwarded-Groups: admin",
	"X-Forwarded-Preferred-Username: evil", "X-Forwarded-Access-Token: evil",
	"X-Remote-User: evil", "X_REMOTE_USER: evil", "X-Remote-Email: evil@example.test", "X-Remote-Groups: admin", "X-Remote-Name: evil",
	"Remote-User: evil", "remote_user: evil", "Remote-Email: evil@example.test", "Remote-Groups: admin", "Remote-Name: evil",
}

// isForeignIdentity reports whether the header name k is one of
// defaultStripHeaders in any spelling, by a reading independent of
// identityHeaders.
func isForeignIdentity(k string) bool {
	f := foldHeader(k)
	if strings.HasPrefix(f, "x-auth-request-") {
		return true
	}
	switch f {
	case "x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "x-forwarded-preferred-username", "x-forwarded-access-token",
		"x-remote-user", "x-remote-email", "x-remote-groups", "x-remote-name",
		"remote-user", "remote-email", "remote-groups", "remote-name":
		return true
	}
	return false
}

// foreignHeaders lists the headers of h that isForeignIdentity names.
func foreignHeaders(h http.Header) []string {
	var out []string
	for k, vs := range h {
		if isForeignIdentity(k) {
			out = append(out, k+": "+strings.Join(vs, ","))
		}
	}
	return out
}

func TestIdentityHeadersIsForeign(t *testing.T) {
	ih := newIdentityHeaders("X-User-", defaultStripHeaders)
	tests := []struct {
		give string
		want bool
	}{
		{give: "X-Auth-Request-User", want: true},
		{give: "x-auth-request-user", want: true},
		{give: "X_AUTH_REQUEST_USER", want: true},
		{give: "X-Auth-Request-Email", want: true},
		{give: "X-Auth-Request-Preferred-Username", want: true},
		{give: "X-Auth-Request-Groups", want: true},
		{give: "X-Auth-Request-Access-Token", want: true},
		{give: "X-Auth-Request-", want: true},
		{give: "X-Auth-Request", want: false},
		{give: "X-Auth-Requests", want: false},
		{give: "X-Forwarded-User", want: true},
		{give: "x_forwarded_user", want: true},
		{give: "X-Forwarded-Email", want: true},
		{give: "X-Forwarded-Groups", want: true},
		{give: "X-Forwarded-Preferred-Username", want: true},
		{give: "X-Forwarded-Access-Token", want: true},
		{give: "X-Forwarded-Users", want: false},
		{give: "X-Forwarded-Use", want: false},
		{give: "X-Remote-User", want: true},
		{give: "X-Remote-Email", want: true},
		{give: "X-Remote-Groups", want: true},
		{give: "X-Remote-Name", want: true},
		{give: "Remote-User", want: true},
		{give: "REMOTE_USER", want: true},
		{give: "Remote-Email", want: true},
		{give: "Remote-Groups", want: true},
		{give: "Remote-Name", want: true},
		// What forward-auth and the upstream need stays.
		{give: "X-Forwarded-For", want: false},
		{give: "X-Forwarded-Host", want: false},
		{give: "X-Forwarded-Proto", want: false},
		{give: "X-Forwarded-Uri", want: false},
		{give: "X-Forwarded-Method", want: false},
		{give: "X-Original-Uri", want: false},
		{give: "X-Remote-Addr", want: false},
		{give: "Remote-Addr", want: false},
		{give: "Authorization", want: false},
		{give: "X-Request-Id", want: false},
		{give: "X-User-Id", want: false}, // the prefix's own, removed by hasFoldedPrefix
		{give: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if got := ih.isForeign(tt.give); got != tt.want {
				t.Errorf("isForeign(%q) = %t, want %t", tt.give, got, tt.want)
			}
		})
	}
	if none := newIdentityHeaders("X-User-", nil); none.isForeign("X-Auth-Request-User") {
		t.Error("with strip_headers empty, isForeign(X-Auth-Request-User) = true, want false")
	}
}

func TestConfigStripHeaders(t *testing.T) {
	tests := []struct {
		name    string
		give    []string
		wantErr string // "" = valid
	}{
		{name: "default", give: defaultStripHeaders},
		{name: "empty", give: []string{}},
		{name: "custom name and pattern", give: []string{"X-Legacy-User", "X-Legacy-Auth-*", "X_Old_*"}},
		{name: "empty entry", give: []string{""}, wantErr: "strip_headers[0]:"},
		{name: "star alone", give: []string{"*"}, wantErr: "strip_headers[0]:"},
		{name: "star in the middle", give: []string{"X-*-User"}, wantErr: "strip_headers[0]:"},
		{name: "pattern without dash", give: []string{"X-Forwarded*"}, wantErr: "strip_headers[0]:"},
		{name: "space", give: []string{"X User"}, wantErr: "strip_headers[0]:"},
		{name: "colon", give: []string{"X-User:"}, wantErr: "strip_headers[0]:"},
		{name: "X-Forwarded family", give: []string{"X-Auth-Request-*", "X-Forwarded-*"}, wantErr: "strip_headers[1]: \"X-Forwarded-*\" would remove X-Forwarded-For"},
		{name: "X-Original family", give: []string{"X_Original_*"}, wantErr: "would remove X-Original-Uri"},
		{name: "Authorization", give: []string{"authorization"}, wantErr: "would remove Authorization"},
		{name: "Cookie", give: []string{"Cookie"}, wantErr: "would remove Cookie"},
		{name: "X-Forwarded-Uri", give: []string{"x_forwarded_uri"}, wantErr: "would remove X-Forwarded-Uri"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("http://127.0.0.1:1")
			cfg.StripHeaders = tt.give
			err := cfg.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestProxyStripsForeignIdentityHeaders sends other proxies' identity
// headers over the wire in every spelling, on every path: none reaches the
// upstream, the auth API, or any handler after the entry.
func TestProxyStripsForeignIdentityHeaders(t *testing.T) {
	up := newUpstream(t, nil)
	var (
		mu      sync.Mutex
		authAPI http.Header
	)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		authAPI = r.Header.Clone()
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(newHandler(t, testConfig(up.URL), WithAuthAPI("/v1/auth", api)))
	t.Cleanup(srv.Close)
	tok := token(t, "u-1", nil)
	auth := "Authorization: Bearer " + tok + "\r\n"

	tests := []struct {
		name       string
		giveTarget string
		giveExtra  string
		wantStatus int
		// wantSeen reads the headers the request's handler saw.
		wantSeen func(t *testing.T) http.Header
	}{
		{name: "proxy, authenticated", giveTarget: "/x", giveExtra: auth, wantStatus: 200, wantSeen: func(t *testing.T) http.Header { return up.last(t).Header }},
		{name: "proxy, public anonymous", giveTarget: "/public/x", wantStatus: 200, wantSeen: func(t *testing.T) http.Header { return up.last(t).Header }},
		{name: "proxy, hop-by-hop trick", giveTarget: "/x", giveExtra: auth + "Connection: X-Forwarded-User\r\n", wantStatus: 200, wantSeen: func(t *testing.T) http.Header { return up.last(t).Header }},
		{name: "auth API", giveTarget: "/v1/auth/login", giveExtra: auth, wantStatus: 204, wantSeen: func(*testing.T) http.Header {
			mu.Lock()
			defer mu.Unlock()
			return authAPI
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// X-Forwarded-Host, from a trusted peer, must survive the
			// stripping of its X-Forwarded-User neighbours.
			req := "GET " + tt.giveTarget + " HTTP/1.1\r\nHost: svc\r\nX-Forwarded-Host: gw.example.test\r\n" + tt.giveExtra +
				strings.Join(foreignSpellings, "\r\n") + "\r\n\r\n"
			resp := rawRequest(t, srv.Listener.Addr().String(), req)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			seen := tt.wantSeen(t)
			if got := foreignHeaders(seen); len(got) != 0 {
				t.Errorf("client's foreign identity headers passed: %q", got)
			}
			if got := seen.Get("X-Forwarded-Host"); got != "gw.example.test" {
				t.Errorf("X-Forwarded-Host = %q, want it kept", got)
			}
		})
	}

	// Forward-auth and the token API have no upstream: no handler after
	// the entry sees the headers, and the answer carries none of them.
	h := newHandler(t, testConfig(""))
	for _, target := range []string{"/auth", "/v1/token/verify-header"} {
		t.Run(target, func(t *testing.T) {
			method := http.MethodGet
			if strings.HasPrefix(target, "/v1/token") {
				method = http.MethodPost
			}
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: svc\r\n" + auth +
				"X-Forwarded-Uri: /x\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: svc\r\nContent-Length: 0\r\n" +
				strings.Join(foreignSpellings, "\r\n") + "\r\n\r\n")))
			if err != nil {
				t.Fatal(err)
			}
			r.RemoteAddr = "127.0.0.1:1234"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %q)", w.Code, w.Body.String())
			}
			if got := foreignHeaders(r.Header); len(got) != 0 {
				t.Errorf("headers left for the handlers: %q", got)
			}
			if got := foreignHeaders(w.Header()); len(got) != 0 {
				t.Errorf("answer carries: %q", got)
			}
		})
	}
}

// TestProxyWebSocketStripsForeignIdentityHeaders: an upgrade goes through
// the same entry, so the upstream's handshake sees no foreign identity.
func TestProxyWebSocketStripsForeignIdentityHeaders(t *testing.T) {
	seen := make(chan http.Header, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	})
	// The tunnel outlives the test's reading of it, and the handler logs
	// when it ends: not to t, which may be done by then.
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
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer "+token(t, "u-1", nil)+"\r\n"+
		strings.Join(foreignSpellings, "\r\n")+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", resp.StatusCode)
	}
	hdr := <-seen
	if got := foreignHeaders(hdr); len(got) != 0 {
		t.Errorf("upstream handshake saw: %q", got)
	}
	if hdr.Get("X-User-Id") != "u-1" {
		t.Errorf("upstream X-User-Id = %q, want u-1", hdr.Get("X-User-Id"))
	}
}
