package proxy

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/authgate/authgate/internal/ratelimit"
)

func TestTokenAPIRateLimitPerIP(t *testing.T) {
	cfg := testConfig("")
	cfg.TokenAPI.RateLimit.PerIP = ratelimit.Config{Rate: 0.01, Burst: 3}
	cfg.TokenAPI.RateLimit.PerIdentity = ratelimit.Config{}
	h := newHandler(t, cfg)
	verifyFrom := func(peer, xff, tok string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "http://svc/v1/token/verify-header", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return serve(h, r, peer)
	}
	tok := token(t, "u-1", nil)
	// Forged tokens count too: the limit is taken before any token is
	// read, so a client cannot make authgate verify at will.
	for i, tk := range []string{tok, forgedToken(t, "u-1"), "x.y.z"} {
		if w := verifyFrom("203.0.113.9:1", "", tk); w.Code == http.StatusTooManyRequests {
			t.Fatalf("request %d within the burst limited", i+1)
		}
	}
	w := verifyFrom("203.0.113.9:2", "", tok)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("fourth request: status %d, want 429", w.Code)
	}
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want a positive number of seconds", w.Header().Get("Retry-After"))
	}
	if !strings.Contains(w.Body.String(), `"code":"rate_limited"`) || strings.Contains(w.Body.String(), `"valid":true`) {
		t.Errorf("body = %s, want the token API error shape with code rate_limited", w.Body)
	}
	// An untrusted peer cannot escape its limit by naming another client.
	if w := verifyFrom("203.0.113.9:3", "198.51.100.1", tok); w.Code != http.StatusTooManyRequests {
		t.Errorf("X-Forwarded-For from an untrusted peer changed the client: status %d", w.Code)
	}
	// Another client is not limited by the first one.
	if w := verifyFrom("203.0.113.10:1", "", tok); w.Code != http.StatusOK {
		t.Errorf("other client: status %d, want 200", w.Code)
	}
	// Behind a trusted proxy, each client named by it has its own limit.
	for i := range 3 {
		if w := verifyFrom("127.0.0.1:9", "198.51.100.7", tok); w.Code != http.StatusOK {
			t.Fatalf("client behind the proxy, request %d: status %d", i+1, w.Code)
		}
	}
	if w := verifyFrom("127.0.0.1:9", "198.51.100.7", tok); w.Code != http.StatusTooManyRequests {
		t.Errorf("client behind the proxy over its limit: status %d, want 429", w.Code)
	}
	if w := verifyFrom("127.0.0.1:9", "198.51.100.8", tok); w.Code != http.StatusOK {
		t.Errorf("second client behind the same proxy: status %d, want 200", w.Code)
	}
	// Health checks are never limited.
	for range 5 {
		r := httptest.NewRequest("GET", "http://svc/v1/token/health", nil)
		if w := serve(h, r, "203.0.113.9:4"); w.Code != http.StatusOK {
			t.Fatalf("health: status %d", w.Code)
		}
	}
}

func TestTokenAPIRateLimitPerIdentity(t *testing.T) {
	cfg := testConfig("")
	cfg.TokenAPI.RateLimit.PerIP = ratelimit.Config{}
	cfg.TokenAPI.RateLimit.PerIdentity = ratelimit.Config{Rate: 0.01, Burst: 2}
	h := newHandler(t, cfg)
	post := func(tok, peer string) int {
		r := httptest.NewRequest("POST", "http://svc/v1/token/verify", strings.NewReader(`{"token":"`+tok+`"}`))
		return serve(h, r, peer).Code
	}
	// Two tokens of one user, from two addresses: one budget.
	a, b := token(t, "u-7", nil), token(t, "u-7", func(c map[string]any) { c["jti"] = "other" })
	if c := post(a, "203.0.113.1:1"); c != 200 {
		t.Fatalf("first: %d", c)
	}
	if c := post(b, "203.0.113.2:1"); c != 200 {
		t.Fatalf("second: %d", c)
	}
	if c := post(a, "203.0.113.3:1"); c != http.StatusTooManyRequests {
		t.Errorf("third request for the same identity: %d, want 429", c)
	}
	if c := post(token(t, "u-8", nil), "203.0.113.3:1"); c != 200 {
		t.Errorf("another identity: %d, want 200", c)
	}
	// An invalid token is answered 401, not 429: no identity to limit.
	if c := post(forgedToken(t, "u-7"), "203.0.113.3:1"); c != http.StatusUnauthorized {
		t.Errorf("forged token for the limited subject: %d, want 401", c)
	}
}

func TestClientIP(t *testing.T) {
	cfg := testConfig("")
	cfg.TrustedProxies = []string{"10.0.0.0/8", "2001:db8::/32"}
	h := newHandler(t, cfg)
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer", "203.0.113.9:5", []string{"198.51.100.1"}, "203.0.113.9"},
		{"trusted peer, one hop", "10.1.2.3:5", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-written entries left of the real client", "10.1.2.3:5", []string{"1.2.3.4, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several header lines", "10.1.2.3:5", []string{"1.2.3.4", "198.51.100.1", "10.9.9.9"}, "198.51.100.1"},
		{"garbage stops the walk", "10.1.2.3:5", []string{"198.51.100.1, not-an-ip, 10.9.9.9"}, "10.9.9.9"},
		{"all trusted", "10.1.2.3:5", []string{"10.2.2.2"}, "10.2.2.2"},
		{"no header", "10.1.2.3:5", nil, "10.1.2.3"},
		{"ipv4-mapped peer", "[::ffff:203.0.113.9]:5", nil, "203.0.113.9"},
		{"ipv6 trusted", "[2001:db8::1]:5", []string{"2001:db8::2, 2600::1"}, "2600::1"},
		{"unreadable peer", "pipe", nil, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://svc/", nil)
			r.RemoteAddr = tt.peer
			r.Header["X-Forwarded-For"] = tt.xff
			if got := h.cur.Load().clientIP(r); got.String() != tt.want {
				t.Errorf("clientIP = %s, want %s", got, tt.want)
			}
		})
	}
}
