package main

// Shared parts of the end-to-end tests that put a real gateway (Caddy,
// Traefik) in front of the built authgate: the authgate they ask, which is
// configs/forward-auth.yaml as the deploy/ examples say to run, the
// requests every gateway must handle alike, and finding the gateway's
// binary in .tools/bin or on PATH.

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.yaml.in/yaml/v3"

	"github.com/authgate/authgate/verify/verifytest"
)

// toolsBin is where scripts/install-caddy.sh and scripts/build-traefik.sh
// put their binaries.
const toolsBin = "../../.tools/bin"

// exampleHost is the application's host name in the gateway examples.
const exampleHost = "app.example.com"

// findGateway returns the path of the named gateway binary, looked up in
// .tools/bin first and then on PATH, or skips the test (fails it when the
// environment variable require is 1) when there is none.
func findGateway(t *testing.T, name, require, install string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binary; skipped with -short")
	}
	if p, err := filepath.Abs(filepath.Join(toolsBin, name)); err == nil {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv(require) == "1" {
		t.Fatalf("%s is neither in .tools/bin nor on PATH, and %s=1 requires it (%s)", name, require, install)
	}
	t.Skipf("%s is neither in .tools/bin nor on PATH; run %s, or set %s=1 to make this a failure", name, install, require)
	return ""
}

// startForwardAuthgate runs configs/forward-auth.yaml, the configuration
// the gateway examples name, with the test's addresses, the test secret
// and verifytest's issuer, trusting gateways on 127.0.0.1 only.
func startForwardAuthgate(t *testing.T) *e2eAuthgate {
	t.Helper()
	b, err := os.ReadFile(forwardAuthExample)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", forwardAuthExample, err)
	}
	set := func(value any, path ...string) {
		t.Helper()
		m := cfg
		for _, k := range path[:len(path)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				t.Fatalf("%s has no mapping at %q; update startForwardAuthgate", forwardAuthExample, k)
			}
			m = next
		}
		m[path[len(path)-1]] = value
	}
	set("127.0.0.1:0", "server", "public", "addr")
	// Port 0 again: each listener gets its own free port, and validation
	// lets two port-0 addresses share a host.
	set("127.0.0.1:0", "server", "admin", "addr")
	set("5s", "server", "shutdown_grace")
	set([]string{"127.0.0.1/32"}, "trusted_proxies")
	set("https://auth.example.test", "verify", "legacy", "issuer")
	set("platform", "verify", "legacy", "audience")
	set([]string{writeTestSecret(t)}, "verify", "legacy", "secret_files")
	set(map[string]any{"level": "info", "format": "json"}, "log")
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return startAuthgate(t, string(out))
}

// gatewayTest is one request through a gateway and what the application
// behind it must (or must not) receive.
type gatewayTest struct {
	name        string
	givePath    string
	giveHeaders [][2]string
	wantStatus  int
	// wantWWWAuth is the one WWW-Authenticate value of a 401.
	wantWWWAuth string
	// wantUser is the X-User-Id the application receives; "" means it is
	// never called, "-" that it is called without any identity.
	wantUser string
	wantType string
	// wantURI is the request URI the application receives, when it
	// differs from givePath.
	wantURI string
}

// gatewayTokens are the tokens the gateway tests send.
type gatewayTokens struct {
	user, admin, forged, expired, none string
}

func newGatewayTokens(t *testing.T) gatewayTokens {
	t.Helper()
	now := time.Now()
	sign := func(key string, claims map[string]any) string {
		return verifytest.HMAC(t, jose.HS256, []byte(key), claims, nil)
	}
	adminClaims := verifytest.Claims("bob", now)
	adminClaims["user_type"] = "admin"
	return gatewayTokens{
		user:    sign(verifytest.Secret, verifytest.Claims("alice", now)),
		admin:   sign(verifytest.Secret, adminClaims),
		forged:  sign("a-different-secret-of-at-least-32-bytes", adminClaims),
		expired: sign(verifytest.Secret, verifytest.Claims("alice", now.Add(-3*time.Hour))),
		none:    verifytest.Unsigned(t, map[string]any{"alg": "none", "typ": "JWT"}, adminClaims, ""),
	}
}

func bearer(tok string) [2]string { return [2]string{"Authorization", "Bearer " + tok} }

// spoofedHeaders are the identity headers a hostile client sends, in every
// spelling a backend might fold into one.
var spoofedHeaders = [][2]string{
	{"X-User-Id", spoofedValue}, {"X-User-Id", spoofedValue + "-2"}, {"x-user-id", spoofedValue},
	{"X-USER-ID", spoofedValue}, {"X_User_Id", spoofedValue}, {"x_user_id", spoofedValue},
	{"X-User-Type", spoofedValue}, {"X_User_Type", spoofedValue}, {"X-User-Firebase-Uid", spoofedValue},
	{"X-User-Email", spoofedValue}, {"X-User-Email-Verified", spoofedValue}, {"X-User-Name", spoofedValue},
	{"X-User-Token-Balance", spoofedValue}, {"X-User-Provider", spoofedValue}, {"X-User-Federation", spoofedValue},
	{"X-User-Role", spoofedValue},
	// Other proxies' identity headers (authgate's default strip_headers),
	// which the gateway examples clear: in forward-auth mode authgate never
	// sees the request the application gets.
	{"X-Auth-Request-User", spoofedValue}, {"x-auth-request-user", spoofedValue}, {"X_Auth_Request_User", spoofedValue},
	{"X-Auth-Request-Email", spoofedValue}, {"X-Auth-Request-Preferred-Username", spoofedValue},
	{"X-Auth-Request-Groups", spoofedValue}, {"X-Auth-Request-Access-Token", spoofedValue},
	{"X-Forwarded-User", spoofedValue}, {"X_Forwarded_User", spoofedValue}, {"X-Forwarded-Email", spoofedValue},
	{"X-Forwarded-Groups", spoofedValue}, {"X-Forwarded-Preferred-Username", spoofedValue}, {"X-Forwarded-Access-Token", spoofedValue},
	{"X-Remote-User", spoofedValue}, {"X-Remote-Email", spoofedValue}, {"X-Remote-Groups", spoofedValue}, {"X-Remote-Name", spoofedValue},
	{"Remote-User", spoofedValue}, {"REMOTE-USER", spoofedValue}, {"Remote_User", spoofedValue},
	{"Remote-Email", spoofedValue}, {"Remote-Groups", spoofedValue}, {"Remote-Name", spoofedValue},
}

// foreignIdentity is a valid token with only other proxies' identity
// headers, the migration case: a service that still reads
// X-Auth-Request-User must never get the client's.
func foreignIdentity(tok string) [][2]string {
	return [][2]string{
		bearer(tok),
		{"X-Auth-Request-User", spoofedValue}, {"X-Auth-Request-Email", spoofedValue},
		{"X-Forwarded-User", spoofedValue}, {"Remote-User", spoofedValue},
	}
}

// spoofed returns the spoofed headers followed by hs.
func spoofed(hs ...[2]string) [][2]string {
	return append(append([][2]string(nil), spoofedHeaders...), hs...)
}

// commonGatewayTests are the requests every gateway must handle the same
// way, with configs/forward-auth.yaml's routes: /public/ public, /admin for
// user_type admin, everything else for any authenticated user.
func commonGatewayTests(tok gatewayTokens) []gatewayTest {
	return []gatewayTest{
		{
			name:        "valid token",
			givePath:    "/api/hello",
			giveHeaders: [][2]string{bearer(tok.user)},
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "valid token with spoofed identity headers",
			givePath:    "/api/hello",
			giveHeaders: spoofed(bearer(tok.user)),
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "valid token with another proxy's identity headers",
			givePath:    "/api/hello",
			giveHeaders: foreignIdentity(tok.user),
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "valid token in the session cookie",
			givePath:    "/api/hello",
			giveHeaders: spoofed([2]string{"Cookie", "theme=dark; __session=" + tok.user}),
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "query string passed on",
			givePath:    "/api/hello?q=%2F1&x=y",
			giveHeaders: [][2]string{bearer(tok.user)},
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "no token",
			givePath:    "/api/hello",
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		{
			name:        "spoofed spellings without token",
			givePath:    "/api/hello",
			giveHeaders: spoofed(),
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		{
			name:        "spoofed spellings on admin without token",
			givePath:    "/admin/users",
			giveHeaders: spoofed(),
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		{
			name:        "token signed with another secret",
			givePath:    "/api/hello",
			giveHeaders: spoofed(bearer(tok.forged)),
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:        "alg none token",
			givePath:    "/admin",
			giveHeaders: [][2]string{bearer(tok.none)},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:        "expired token",
			givePath:    "/api/hello",
			giveHeaders: [][2]string{bearer(tok.expired)},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:        "garbage token",
			givePath:    "/api/hello",
			giveHeaders: [][2]string{bearer("not-a-jwt")},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:       "public route without token",
			givePath:   "/public/x",
			wantStatus: http.StatusOK,
			wantUser:   "-",
		},
		{
			name:        "public route without token, spoofed headers",
			givePath:    "/public/x",
			giveHeaders: spoofed(),
			wantStatus:  http.StatusOK,
			wantUser:    "-",
		},
		{
			name:        "public route with valid token",
			givePath:    "/public/x",
			giveHeaders: spoofed(bearer(tok.user)),
			wantStatus:  http.StatusOK,
			wantUser:    "alice",
			wantType:    "user",
		},
		{
			name:        "public route with invalid token",
			givePath:    "/public/x",
			giveHeaders: [][2]string{bearer(tok.forged)},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: `Bearer error="invalid_token"`,
		},
		{
			name:        "admin with a user token",
			givePath:    "/admin",
			giveHeaders: spoofed(bearer(tok.user)),
			wantStatus:  http.StatusForbidden,
		},
		{
			name:        "admin with an admin token",
			givePath:    "/admin/users",
			giveHeaders: spoofed(bearer(tok.admin)),
			wantStatus:  http.StatusOK,
			wantUser:    "bob",
			wantType:    "admin",
		},
		{
			// The gateway, not the client, says which request authgate
			// judges.
			name:        "client X-Forwarded-Uri names a public path",
			givePath:    "/admin",
			giveHeaders: [][2]string{{"X-Forwarded-Uri", "/public/x"}, {"X-Forwarded-Method", "GET"}},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
		{
			name:        "client X-Original-URI names a public path",
			givePath:    "/admin",
			giveHeaders: [][2]string{{"X-Original-URI", "/public/x"}, {"X-Original-Method", "GET"}},
			wantStatus:  http.StatusUnauthorized,
			wantWWWAuth: "Bearer",
		},
	}
}

// runGatewayTests sends each test's request to baseURL with Host
// app.example.com and checks the answer and what app received. Headers
// with an empty value count as absent: authgate answers empty values for
// unknown fields, and some gateways (Traefik, Caddy before 2.11) pass them
// on as empty headers while others send none.
func runGatewayTests(t *testing.T, client *http.Client, baseURL string, app *upstreamRecorder, tests []gatewayTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app.take()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+tt.givePath, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = exampleHost
			for _, h := range tt.giveHeaders {
				// Set the map directly so that the name goes out exactly
				// as written (lower case, underscores).
				req.Header[h[0]] = append(req.Header[h[0]], h[1])
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()

			if resp.StatusCode != tt.wantStatus {
				t.Errorf("GET %s: status %d, want %d", tt.givePath, resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Values("Www-Authenticate"); tt.wantWWWAuth != "" && (len(got) != 1 || got[0] != tt.wantWWWAuth) {
				t.Errorf("GET %s: WWW-Authenticate %q, want [%q]", tt.givePath, got, tt.wantWWWAuth)
			}
			got := app.take()
			for _, r := range got {
				for k, vs := range r.header {
					if len(vs) == 1 && vs[0] == "" {
						delete(r.header, k)
					}
				}
			}
			checkUpstream(t, got, cmp.Or(tt.wantURI, tt.givePath), tt.wantUser, tt.wantType)
		})
	}
}

// gatewayClient is an HTTP client for a gateway on 127.0.0.1 that serves
// app.example.com, over TLS with the gateway's own certificate if need be.
func gatewayClient(t *testing.T) *http.Client {
	t.Helper()
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			// The gateways serve self-signed certificates in the tests.
			TLSClientConfig: &tls.Config{ServerName: exampleHost, InsecureSkipVerify: true}, //nolint:gosec // test gateway on loopback
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(client.CloseIdleConnections)
	return client
}

// waitGateway polls url (with Host app.example.com) until the gateway
// answers it with want, failing the test, with the gateway's output, after
// d.
func waitGateway(t *testing.T, client *http.Client, p *e2eProcess, url string, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for {
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.out)
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = exampleHost
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = fmt.Sprintf("status %d", resp.StatusCode)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET %s not %d after %s (last: %s)\n%s", p.name, url, want, d, last, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
