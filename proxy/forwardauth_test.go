package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestForwardAuth(t *testing.T) {
	h := newHandler(t, testConfig(""))
	user := token(t, "u-1", nil)
	admin := token(t, "a-1", func(c map[string]any) { c["user_type"] = "admin" })

	tests := []struct {
		name       string
		givePeer   string
		giveTarget string // path of the /auth request itself
		giveHdr    map[string]string
		giveToken  string
		wantStatus int
		wantWWW    string
		wantUser   string
	}{
		{name: "traefik headers, valid token", giveHdr: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Host": "svc", "X-Forwarded-Uri": "/x?a=1"}, giveToken: user, wantStatus: 200, wantUser: "u-1"},
		{name: "nginx headers, valid token", giveHdr: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/x"}, giveToken: user, wantStatus: 200, wantUser: "u-1"},
		{name: "caddy absolute uri", giveHdr: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "http://svc/x"}, giveToken: user, wantStatus: 200, wantUser: "u-1"},
		{name: "envoy path prefix", giveTarget: "/auth/x/y", giveToken: user, wantStatus: 200, wantUser: "u-1"},
		{name: "no token", giveHdr: map[string]string{"X-Forwarded-Uri": "/x"}, wantStatus: 401, wantWWW: "Bearer"},
		{name: "forged token", giveHdr: map[string]string{"X-Forwarded-Uri": "/x"}, giveToken: forgedToken(t, "u-1"), wantStatus: 401, wantWWW: `Bearer error="invalid_token"`},
		{name: "public without token", giveHdr: map[string]string{"X-Forwarded-Uri": "/public/a"}, wantStatus: 200},
		{name: "public with bad token", giveHdr: map[string]string{"X-Forwarded-Uri": "/public/a"}, giveToken: "x.y.z", wantStatus: 401, wantWWW: `Bearer error="invalid_token"`},
		{name: "role missing", giveHdr: map[string]string{"X-Forwarded-Uri": "/admin"}, giveToken: user, wantStatus: 403},
		{name: "role present", giveHdr: map[string]string{"X-Forwarded-Uri": "/admin"}, giveToken: admin, wantStatus: 200, wantUser: "a-1"},
		{name: "method rule from forwarded method", giveHdr: map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Host": "api.example.test", "X-Forwarded-Uri": "/api/x"}, giveToken: user, wantStatus: 403},
		// The gateway forwards the raw path, which authgate cannot rewrite,
		// so paths a backend may resolve differently are refused outright.
		{name: "dot-dot refused", giveHdr: map[string]string{"X-Forwarded-Uri": "/public/../admin"}, wantStatus: 403},
		{name: "encoded dot-dot refused", giveHdr: map[string]string{"X-Forwarded-Uri": "/public/%2E%2E/admin"}, wantStatus: 403},
		{name: "dot-dot into public refused", giveHdr: map[string]string{"X-Forwarded-Uri": "/admin/../public/x"}, wantStatus: 403},
		{name: "empty segment refused", giveHdr: map[string]string{"X-Forwarded-Uri": "/public//x"}, wantStatus: 403},
		{name: "trailing slash is fine", giveHdr: map[string]string{"X-Forwarded-Uri": "/public/"}, wantStatus: 200},
		{name: "client adds X-Original-URI to a Traefik request", giveHdr: map[string]string{"X-Forwarded-Uri": "/admin", "X-Original-URI": "/public/x"}, wantStatus: 403},
		{name: "client adds X-Forwarded-Uri to an nginx request", giveHdr: map[string]string{"X-Original-URI": "/admin", "X-Forwarded-Uri": "/public/x"}, wantStatus: 403},
		{name: "families that agree", giveHdr: map[string]string{"X-Original-URI": "/public/x?a=1", "X-Forwarded-Uri": "/public/x?b=2"}, wantStatus: 200},
		{name: "methods that disagree", giveHdr: map[string]string{"X-Original-Method": "GET", "X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/public/x"}, wantStatus: 403},
		{name: "upper case that changes the route", giveHdr: map[string]string{"X-Forwarded-Uri": "/Admin"}, giveToken: user, wantStatus: 403},
		{name: "ingress-nginx X-Original-URL", giveHdr: map[string]string{"X-Original-URL": "https://svc/admin?x=1"}, giveToken: admin, wantStatus: 200, wantUser: "a-1"},
		{name: "query cannot carry a public path", giveHdr: map[string]string{"X-Forwarded-Uri": "/admin?/public/x"}, wantStatus: 401, wantWWW: "Bearer"},
		{name: "ambiguous path is 403 for gateways", giveHdr: map[string]string{"X-Forwarded-Uri": "/public/..%2fadmin"}, wantStatus: 403},
		{name: "fragment in uri refused", giveHdr: map[string]string{"X-Forwarded-Uri": "/public/x#/../../admin"}, wantStatus: 403},
		{name: "bad method refused", giveHdr: map[string]string{"X-Forwarded-Method": "GET /admin", "X-Forwarded-Uri": "/x"}, giveToken: user, wantStatus: 403},
		{name: "no original uri", giveToken: user, wantStatus: 403},
		{name: "untrusted peer", givePeer: "203.0.113.9:1", giveHdr: map[string]string{"X-Forwarded-Uri": "/public/a"}, giveToken: user, wantStatus: 403},
		{name: "no route", giveHdr: map[string]string{"X-Forwarded-Host": "other.example.org", "X-Forwarded-Uri": "/x"}, giveToken: user, wantStatus: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.giveTarget
			if target == "" {
				target = "/auth"
			}
			r := httptest.NewRequest("GET", "http://svc"+target, strings.NewReader("body must not be read"))
			for k, v := range tt.giveHdr {
				r.Header.Set(k, v)
			}
			if tt.giveToken != "" {
				r.Header.Set("Authorization", "Bearer "+tt.giveToken)
			}
			r.Header.Set("X-User-Id", "spoofed")
			r.Header.Set("X_User_Type", "admin")
			peer := tt.givePeer
			if peer == "" {
				peer = "127.0.0.1:5555"
			}
			w := serve(h, r, peer)

			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if got := w.Header().Get("Www-Authenticate"); got != tt.wantWWW {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantWWW)
			}
			if loc := w.Header().Get("Location"); loc != "" {
				t.Errorf("forward-auth redirected to %q", loc)
			}
			if tt.wantStatus != 200 {
				if got := headersWithPrefix(w.Header()); len(got) != 0 {
					t.Errorf("refusal carried identity headers: %q", got)
				}
				return
			}
			// A 200 always carries the whole set, empty where unknown,
			// so a gateway copying them replaces any client value.
			for _, name := range h.cur.Load().ident.names {
				vals, ok := w.Header()[name]
				if !ok || len(vals) != 1 {
					t.Errorf("answer header %s = %q, want exactly one value", name, vals)
				}
			}
			if got := w.Header().Get(HeaderUserID); got != tt.wantUser {
				t.Errorf("X-User-Id = %q, want %q", got, tt.wantUser)
			}
			if got := w.Header().Get(HeaderType); got == "admin" && tt.wantUser != "a-1" {
				t.Errorf("client X_User_Type leaked into the answer")
			}
		})
	}
}

func TestForwardAuthRepeatedHeaders(t *testing.T) {
	h := newHandler(t, testConfig(""))
	r := httptest.NewRequest("GET", "http://svc/auth", nil)
	r.Header.Add("X-Forwarded-Uri", "/admin")
	r.Header.Add("X-Forwarded-Uri", "/public/x")
	if w := serve(h, r, "127.0.0.1:1"); w.Code != http.StatusForbidden {
		t.Fatalf("repeated, disagreeing X-Forwarded-Uri: status = %d, want 403", w.Code)
	}
}

func TestForwardAuthDisabled(t *testing.T) {
	up := newUpstream(t, nil)
	cfg := testConfig(up.URL)
	cfg.ForwardAuth.Enabled = false
	h := newHandler(t, cfg)
	r := httptest.NewRequest("GET", "http://svc/auth", nil)
	r.Header.Set("X-Forwarded-Uri", "/public/x")
	// With forward-auth off, /auth is an ordinary proxied path.
	if w := serve(h, r, "127.0.0.1:1"); w.Code != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", w.Code)
	}
}
