package proxy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/usage"
)

// writeKey writes k as PEM (PKCS#8 for private keys, PKIX for public
// ones) into a file of its own and returns the path.
func writeKey(t *testing.T, k any) string {
	t.Helper()
	var blk *pem.Block
	switch k := k.(type) {
	case crypto.Signer:
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		blk = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	default:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		blk = &pem.Block{Type: "PUBLIC KEY", Bytes: der}
	}
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEd25519(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// assertionConfig is testConfig with assertions on, signed by key.
func assertionConfig(t *testing.T, upstream, alg string, key crypto.Signer, previous ...string) (Config, AssertionKeys) {
	t.Helper()
	cfg := testConfig(upstream)
	cfg.Routes = append([]RouteConfig{{Name: "orders", Path: "/orders", AssertionAudience: "orders-service"}}, cfg.Routes...)
	cfg.Assertion.Enabled = true
	cfg.Assertion.Issuer = "https://authgate.example.test"
	cfg.Assertion.Audience = "platform-services"
	cfg.Assertion.Algorithm = alg
	cfg.Assertion.KeyFiles = append([]string{writeKey(t, key)}, previous...)
	keys, err := LoadAssertionKeys(cfg.Assertion)
	if err != nil {
		t.Fatalf("LoadAssertionKeys: %v", err)
	}
	return cfg, keys
}

// verifyAssertion checks raw with go-jose against the JWKS served by h and
// returns its claims.
func verifyAssertion(t *testing.T, h http.Handler, raw string, alg jose.SignatureAlgorithm) map[string]any {
	t.Helper()
	w := serve(h, httptest.NewRequest("GET", "http://svc/.well-known/jwks.json", nil), "10.0.0.1:1234")
	if w.Code != http.StatusOK || !strings.Contains(w.Header().Get("Cache-Control"), "max-age") {
		t.Fatalf("JWKS: %d %v", w.Code, w.Header())
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{alg})
	if err != nil {
		t.Fatalf("ParseSigned(%q): %v", raw, err)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in the JWKS", tok.Headers[0].KeyID, len(keys))
	}
	var claims map[string]any
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("Claims: %v", err)
	}
	return claims
}

func TestAssertionForwardAuth(t *testing.T) {
	tests := []struct {
		name     string
		alg      string
		key      crypto.Signer
		givePath string
		wantAud  string
	}{
		{"ES256 default audience", AlgES256, newP256(t), "/api/x", "platform-services"},
		{"ES256 route audience", AlgES256, newP256(t), "/orders/1", "orders-service"},
		{"EdDSA", AlgEdDSA, newEd25519(t), "/api/x", "platform-services"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now().Truncate(time.Second)
			cfg, keys := assertionConfig(t, "", tt.alg, tt.key)
			h := newHandler(t, cfg, WithAssertionKeys(keys), WithClock(func() time.Time { return now }))
			r := httptest.NewRequest("GET", "http://gw/auth", nil)
			r.Header.Set("Authorization", "Bearer "+token(t, "u-1", nil))
			r.Header.Set("X-Forwarded-Host", "svc")
			r.Header.Set("X-Forwarded-Uri", tt.givePath)
			w := serve(h, r, "127.0.0.1:5000")
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			got := verifyAssertion(t, h, w.Header().Get("X-User-Assertion"), jose.SignatureAlgorithm(tt.alg))
			want := map[string]any{
				"iss": "https://authgate.example.test", "aud": tt.wantAud, "sub": "u-1",
				"iat": float64(now.Unix()), "exp": float64(now.Add(time.Minute).Unix()),
				"email": "u-1@example.test", "email_verified": true, "user_type": "user",
				"provider": "legacy", "federation": "disabled",
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("claims = %s, want %s", gotJSON, wantJSON)
			}
		})
	}
}

// TestAssertionProxyMode checks that the upstream gets authgate's
// assertion and never a client's, in any spelling, also under a header
// name outside the identity prefix.
func TestAssertionProxyMode(t *testing.T) {
	tests := []struct {
		name       string
		giveHeader string
		giveSent   []string
	}{
		{"default header", "X-User-Assertion", []string{"X-User-Assertion", "x_user_assertion", "X-USER-ASSERTION"}},
		{"own header", "X-Signed-Identity", []string{"X-Signed-Identity", "x_signed_identity", "X-SIGNED-IDENTITY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, nil)
			cfg, keys := assertionConfig(t, up.URL, AlgES256, newP256(t))
			cfg.Assertion.Header = tt.giveHeader
			h := newHandler(t, cfg, WithAssertionKeys(keys))
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			var raw strings.Builder
			raw.WriteString("GET /api/x HTTP/1.1\r\nHost: svc\r\nAuthorization: Bearer " + token(t, "u-1", nil) + "\r\nConnection: close\r\n")
			for _, s := range tt.giveSent {
				raw.WriteString(s + ": forged\r\n")
			}
			raw.WriteString("\r\n")
			resp := rawRequest(t, srv.Listener.Addr().String(), raw.String())
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got := up.last(t).Header
			for k, v := range got {
				if slices.Contains(v, "forged") {
					t.Errorf("upstream got the client's %s: %q", k, v)
				}
			}
			vals := got.Values(tt.giveHeader)
			if len(vals) != 1 {
				t.Fatalf("upstream got %d %s values, want 1", len(vals), tt.giveHeader)
			}
			if c := verifyAssertion(t, h, vals[0], jose.ES256); c["sub"] != "u-1" {
				t.Errorf("sub = %v, want u-1", c["sub"])
			}
		})
	}
}

// TestAssertionAnonymous checks that a forward-auth answer for a public
// route without a token carries an empty assertion header, which a gateway
// copying it puts in place of a client's.
func TestAssertionAnonymous(t *testing.T) {
	cfg, keys := assertionConfig(t, "", AlgES256, newP256(t))
	h := newHandler(t, cfg, WithAssertionKeys(keys))
	r := httptest.NewRequest("GET", "http://gw/auth", nil)
	r.Header.Set("X-Forwarded-Host", "svc")
	r.Header.Set("X-Forwarded-Uri", "/public/x")
	r.Header.Set("X-User-Assertion", "forged")
	w := serve(h, r, "127.0.0.1:5000")
	if got, ok := w.Header()["X-User-Assertion"]; w.Code != http.StatusOK || !ok || len(got) != 1 || got[0] != "" {
		t.Errorf("status %d, X-User-Assertion %q (present %v), want 200 and one empty value", w.Code, got, ok)
	}
}

// TestAssertionLifetime checks exp against the token's own exp and the
// reuse of a signature within three quarters of its lifetime.
func TestAssertionLifetime(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	clock := now
	cfg, keys := assertionConfig(t, "", AlgES256, newP256(t))
	h := newHandler(t, cfg, WithAssertionKeys(keys), WithClock(func() time.Time { return clock }))
	ask := func(tok, path string) string {
		r := httptest.NewRequest("GET", "http://gw/auth", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("X-Forwarded-Host", "svc")
		r.Header.Set("X-Forwarded-Uri", path)
		w := serve(h, r, "127.0.0.1:5000")
		if w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
		return w.Header().Get("X-User-Assertion")
	}
	short := token(t, "u-2", func(c map[string]any) { c["exp"] = now.Add(20 * time.Second).Unix() })
	if got := verifyAssertion(t, h, ask(short, "/api/x"), jose.ES256)["exp"]; got != float64(now.Add(20*time.Second).Unix()) {
		t.Errorf("exp with a token expiring in 20s = %v, want the token's exp %d", got, now.Add(20*time.Second).Unix())
	}

	tok := token(t, "u-1", nil)
	first := ask(tok, "/api/x")
	if again := ask(tok, "/api/x"); again != first {
		t.Error("the second request got a new signature, want the cached one")
	}
	if other := ask(tok, "/orders/1"); other == first {
		t.Error("another audience got the same assertion")
	}
	clock = now.Add(44 * time.Second)
	if again := ask(tok, "/api/x"); again != first {
		t.Error("at 44s of 60s a new signature was made, want the cached one")
	}
	clock = now.Add(46 * time.Second)
	renewed := ask(tok, "/api/x")
	if renewed == first {
		t.Fatal("at 46s of 60s the cached assertion was served, want a new one")
	}
	if got := verifyAssertion(t, h, renewed, jose.ES256)["exp"]; got != float64(clock.Add(time.Minute).Unix()) {
		t.Errorf("renewed exp = %v, want %d", got, clock.Add(time.Minute).Unix())
	}
}

// TestAssertionJWKS checks that the JWKS publishes the signing key first
// and the previous keys, on the public and the admin listener.
func TestAssertionJWKS(t *testing.T) {
	prevPrivate, prevPublic := newEd25519(t), newP256(t)
	cfg, keys := assertionConfig(t, "", AlgES256, newP256(t), writeKey(t, prevPrivate), writeKey(t, prevPublic.Public()))
	h := newHandler(t, cfg, WithAssertionKeys(keys))
	admin := NewAdmin(AdminConfig{CheckTimeout: time.Second}, prometheus.NewRegistry(), nil, WithAdminJWKS(cfg.Assertion.JWKSPath, keys))
	for _, srv := range []http.Handler{h, admin} {
		w := serve(srv, httptest.NewRequest("GET", "http://svc/.well-known/jwks.json", nil), "10.0.0.1:1")
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil || w.Code != http.StatusOK {
			t.Fatalf("JWKS: %d %v", w.Code, err)
		}
		var got []string
		for _, k := range set.Keys {
			if !k.IsPublic() {
				t.Errorf("key %s is not public", k.KeyID)
			}
			got = append(got, k.Algorithm)
		}
		if want := []string{"ES256", "EdDSA", "ES256"}; !slices.Equal(got, want) {
			t.Errorf("JWKS algorithms = %v, want %v", got, want)
		}
		if set.Keys[0].KeyID != keys.kid {
			t.Errorf("first kid = %s, want the signing key's %s", set.Keys[0].KeyID, keys.kid)
		}
	}
}

func TestLoadAssertionKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256 := newP256(t)
	tests := []struct {
		name    string
		give    func(c *AssertionConfig)
		wantErr string
	}{
		{"P-256 for ES256", func(c *AssertionConfig) { c.KeyFiles = []string{writeKey(t, p256)} }, ""},
		{"Ed25519 for EdDSA", func(c *AssertionConfig) { c.Algorithm, c.KeyFiles = AlgEdDSA, []string{writeKey(t, newEd25519(t))} }, ""},
		{"Ed25519 for ES256", func(c *AssertionConfig) { c.KeyFiles = []string{writeKey(t, newEd25519(t))} }, "holds an EdDSA key, but assertion.algorithm is ES256"},
		{"RSA", func(c *AssertionConfig) { c.KeyFiles = []string{writeKey(t, rsaKey)} }, "is not a P-256 ECDSA or Ed25519 key"},
		{"P-384", func(c *AssertionConfig) { c.KeyFiles = []string{writeKey(t, p384)} }, "curve P-384 is not P-256"},
		{"public key", func(c *AssertionConfig) { c.KeyFiles = []string{writeKey(t, p256.Public())} }, "holds a public key, the signing key (the first) must be private"},
		{"missing", func(c *AssertionConfig) { c.KeyFiles = []string{filepath.Join(t.TempDir(), "none.pem")} }, "assertion.key_files[0]: open"},
		{"RSA previous", func(c *AssertionConfig) {
			c.KeyFiles = []string{writeKey(t, p256), writeKey(t, rsaKey)}
		}, "assertion.key_files[1]: "},
		{"none", func(c *AssertionConfig) { c.KeyFiles = nil }, "assertion.key_files: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig().Assertion
			c.Enabled, c.Issuer = true, "https://authgate.example.test"
			tt.give(&c)
			_, err := LoadAssertionKeys(c)
			if got := errString(err); !strings.Contains(got, tt.wantErr) || (tt.wantErr == "") != (err == nil) {
				t.Errorf("LoadAssertionKeys() = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestAssertionConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    func(c *AssertionConfig)
		wantErr string
	}{
		{"off", func(c *AssertionConfig) { c.Enabled = false; c.TTL = 0 }, ""},
		{"no issuer", func(c *AssertionConfig) { c.Issuer = "" }, "assertion.issuer: required"},
		{"no key file", func(c *AssertionConfig) { c.KeyFiles = nil }, "assertion.key_files: required when assertion.enabled is true: every replica must sign with the same key"},
		{"zero ttl", func(c *AssertionConfig) { c.TTL = 0 }, "assertion.ttl: 0s must be positive"},
		{"bad algorithm", func(c *AssertionConfig) { c.Algorithm = "RS256" }, `assertion.algorithm: "RS256" must be ES256 or EdDSA`},
		{"bad header", func(c *AssertionConfig) { c.Header = "X User" }, "assertion.header:"},
		{"needed header", func(c *AssertionConfig) { c.Header = "Authorization" }, "assertion.header: \"Authorization\" is a header authgate or the gateway needs"},
		{"empty key file", func(c *AssertionConfig) { c.KeyFiles = []string{"/k.pem", ""} }, "assertion.key_files[1]: empty file name"},
		{"bad jwks path", func(c *AssertionConfig) { c.JWKSPath = "jwks" }, "assertion.jwks_path:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("")
			cfg.Assertion.Enabled, cfg.Assertion.Issuer, cfg.Assertion.KeyFiles = true, "https://authgate.example.test", []string{"/k.pem"}
			tt.give(&cfg.Assertion)
			err := cfg.Validate()
			if got := errString(err); !strings.Contains(got, tt.wantErr) || (tt.wantErr == "") != (err == nil) {
				t.Errorf("Validate() = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// BenchmarkForwardAuthAssertion is BenchmarkForwardAuth's cache=hit case
// (access log off) with the assertion off, as the base, and on: cached is
// the steady state (one user, the assertion reused), sign signs on every
// request (what the first request of a user, or of a user's audience,
// costs), for each algorithm.
func BenchmarkForwardAuthAssertion(b *testing.B) {
	for _, bc := range []struct {
		name  string
		alg   string
		key   crypto.Signer
		fresh bool
	}{
		{"off", "", nil, false},
		{"ES256/cached", AlgES256, newP256(b), false},
		{"ES256/sign", AlgES256, newP256(b), true},
		{"EdDSA/cached", AlgEdDSA, newEd25519(b), false},
		{"EdDSA/sign", AlgEdDSA, newEd25519(b), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig("")
			var opts []Option
			if bc.key != nil {
				cfg.Assertion.Enabled, cfg.Assertion.Issuer, cfg.Assertion.Algorithm = true, "https://authgate.example.test", bc.alg
				cfg.Assertion.KeyFiles = []string{"given-below"}
				keys, err := NewAssertionKeys(cfg.Assertion, bc.key)
				if err != nil {
					b.Fatal(err)
				}
				opts = append(opts, WithAssertionKeys(keys))
			}
			rec, err := usage.New(usage.DefaultConfig(), nil, routeNames(cfg), zap.NewNop(), nil)
			if err != nil {
				b.Fatal(err)
			}
			h, err := New(cfg, newVerifier(b), zap.NewNop(), prometheus.NewRegistry(), append(opts, WithAccessLog(false), WithUsage(rec))...)
			if err != nil {
				b.Fatal(err)
			}
			r := httptest.NewRequest("GET", "http://svc/auth", nil)
			r.RemoteAddr = "127.0.0.1:4000"
			r.Header.Set("Authorization", "Bearer "+token(b, "u-1", nil))
			r.Header.Set("X-Forwarded-Method", "GET")
			r.Header.Set("X-Forwarded-Host", "svc")
			r.Header.Set("X-Forwarded-Uri", "/api/orders?page=2")
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				if bc.fresh {
					clear(h.cur.Load().assert.cache)
				}
				delete(r.Header, headerRequestID)
				clear(w.h)
				h.ServeHTTP(w, r)
				if w.code != http.StatusOK || (bc.key != nil) != (w.h.Get("X-User-Assertion") != "") {
					b.Fatalf("status %d, assertion %q", w.code, w.h.Get("X-User-Assertion"))
				}
			}
		})
	}
}
