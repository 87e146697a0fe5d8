package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testIssuer   = "https://authgate.example.test"
	testAudience = "orders"
)

type testKeys struct {
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
	set    atomic.Pointer[jose.JSONWebKeySet]
	hits   atomic.Int32
	server *httptest.Server
}

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &testKeys{ec: ec, ed: ed}
	k.set.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: ec.Public(), KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
		{Key: ed.Public(), KeyID: "ed-1", Algorithm: "EdDSA", Use: "sig"},
	}})
	k.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.hits.Add(1)
		_ = json.NewEncoder(w).Encode(k.set.Load())
	}))
	t.Cleanup(k.server.Close)
	return k
}

func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "u-1", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"email": "u-1@example.test", "email_verified": true, "user_type": "admin", "provider": "legacy",
		"federation": "active", "token_balance": 42,
	}
}

func with(c map[string]any, k string, v any) map[string]any {
	c[k] = v
	return c
}

// unsigned is an alg none token, which go-jose will not make.
func unsigned(claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "none", "kid": "ec-1"})
	c, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "."
}

func TestVerify(t *testing.T) {
	k := newTestKeys(t)
	now := time.Now().Truncate(time.Second)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hmacKey := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name    string
		give    string
		wantErr error
	}{
		{"ES256", sign(t, jose.ES256, k.ec, "ec-1", claimsAt(now)), nil},
		{"EdDSA", sign(t, jose.EdDSA, k.ed, "ed-1", claimsAt(now)), nil},
		{"expired within leeway", sign(t, jose.ES256, k.ec, "ec-1", with(claimsAt(now), "exp", now.Add(-5*time.Second).Unix())), nil},
		{"forged signature", sign(t, jose.ES256, other, "ec-1", claimsAt(now)), ErrInvalid},
		{"wrong audience", sign(t, jose.ES256, k.ec, "ec-1", with(claimsAt(now), "aud", "billing")), ErrInvalid},
		{"wrong issuer", sign(t, jose.ES256, k.ec, "ec-1", with(claimsAt(now), "iss", "https://evil.test")), ErrInvalid},
		{"expired", sign(t, jose.ES256, k.ec, "ec-1", with(claimsAt(now), "exp", now.Add(-time.Minute).Unix())), ErrInvalid},
		{"issued in the future", sign(t, jose.ES256, k.ec, "ec-1", with(claimsAt(now), "iat", now.Add(time.Minute).Unix())), ErrInvalid},
		{"no exp", sign(t, jose.ES256, k.ec, "ec-1", with(claimsAt(now), "exp", nil)), ErrInvalid},
		{"alg none", unsigned(claimsAt(now)), ErrInvalid},
		{"HS256", sign(t, jose.HS256, hmacKey, "ec-1", claimsAt(now)), ErrInvalid},
		{"EdDSA under the ES256 key's kid", sign(t, jose.EdDSA, k.ed, "ec-1", claimsAt(now)), ErrInvalid},
		{"kid unknown", sign(t, jose.ES256, other, "nope", claimsAt(now)), ErrInvalid},
		{"empty", "", ErrMissing},
		{"garbage", "a.b.c", ErrInvalid},
	}
	v, err := New(Config{JWKSURL: k.server.URL, Issuer: testIssuer, Audience: testAudience, Leeway: 10 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), tt.give)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (c.Subject != "u-1" || c.UserType != "admin" || c.TokenBalance == nil || *c.TokenBalance != 42 || !c.EmailVerified) {
				t.Errorf("Verify() claims = %+v", c)
			}
		})
	}
	if got := k.hits.Load(); got != 1 {
		t.Errorf("JWKS fetched %d times, want 1 (unknown kids are rate-limited)", got)
	}
}

// TestKeyRotation checks that a new kid is fetched once the refresh
// interval has passed, and that stale keys are refreshed after MaxAge.
func TestKeyRotation(t *testing.T) {
	k := newTestKeys(t)
	now := time.Now().Truncate(time.Second)
	clock := now
	v, err := New(Config{JWKSURL: k.server.URL, Issuer: testIssuer, Audience: testAudience, MinRefreshInterval: 30 * time.Second, MaxAge: 5 * time.Minute, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), sign(t, jose.ES256, k.ec, "ec-1", claimsAt(clock))); err != nil {
		t.Fatal(err)
	}
	next, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := *k.set.Load()
	set.Keys = append(set.Keys, jose.JSONWebKey{Key: next.Public(), KeyID: "ec-2", Algorithm: "ES256", Use: "sig"})
	k.set.Store(&set)
	clock = now.Add(10 * time.Second)
	if _, err := v.Verify(t.Context(), sign(t, jose.ES256, next, "ec-2", claimsAt(clock))); err == nil {
		t.Fatal("a new kid was fetched within the refresh interval")
	}
	clock = now.Add(31 * time.Second)
	if _, err := v.Verify(t.Context(), sign(t, jose.ES256, next, "ec-2", claimsAt(clock))); err != nil {
		t.Fatalf("new kid after the refresh interval: %v", err)
	}
	if got := k.hits.Load(); got != 2 {
		t.Errorf("JWKS fetched %d times, want 2", got)
	}
}

func TestMiddleware(t *testing.T) {
	k := newTestKeys(t)
	now := time.Now().Truncate(time.Second)
	v, err := New(Config{JWKSURL: k.server.URL, Issuer: testIssuer, Audience: testAudience, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := FromContext(r.Context())
		if !ok {
			t.Error("no claims in the context")
			return
		}
		_, _ = w.Write([]byte(c.Subject))
	}))
	good := sign(t, jose.ES256, k.ec, "ec-1", claimsAt(now))
	tests := []struct {
		name       string
		give       []string
		wantStatus int
		wantBody   string
	}{
		{"valid", []string{good}, http.StatusOK, "u-1"},
		{"missing", nil, http.StatusUnauthorized, "unauthorized\n"},
		{"two values", []string{good, good}, http.StatusUnauthorized, "unauthorized\n"},
		{"alg none", []string{unsigned(claimsAt(now))}, http.StatusUnauthorized, "unauthorized\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header[DefaultHeader] = tt.give
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus || w.Body.String() != tt.wantBody {
				t.Errorf("status %d body %q, want %d %q", w.Code, w.Body.String(), tt.wantStatus, tt.wantBody)
			}
		})
	}
}

// TestRunRefreshesInBackground checks that with Run, a request with a
// known kid never waits for a fetch: keys older than MaxAge are still used
// while Run fetches new ones, which a rotated-in kid is then found in.
func TestRunRefreshesInBackground(t *testing.T) {
	k := newTestKeys(t)
	fetches := make(chan struct{}, 4)
	release := make(chan struct{})
	var releaseOnce sync.Once
	var block atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches <- struct{}{}
		if block.Load() {
			<-release
		}
		_ = json.NewEncoder(w).Encode(k.set.Load())
	}))
	t.Cleanup(srv.Close)
	// Runs before srv.Close: a failing test does not leave it waiting.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	now := time.Now().Truncate(time.Second)
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	v, err := New(Config{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience, MaxAge: time.Minute,
		MinRefreshInterval: time.Second, Now: func() time.Time { return *clock.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	<-fetches
	waitKey(v, "ec-1") // the first fetch is done

	// The keys are now older than MaxAge, and the endpoint hangs: the
	// request is answered with the known key all the same.
	later := now.Add(2 * time.Minute)
	clock.Store(&later)
	block.Store(true)
	next, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := *k.set.Load()
	set.Keys = append(set.Keys, jose.JSONWebKey{Key: next.Public(), KeyID: "ec-2", Algorithm: "ES256", Use: "sig"})
	k.set.Store(&set)
	if _, err := v.Verify(t.Context(), sign(t, jose.ES256, k.ec, "ec-1", claimsAt(later))); err != nil {
		t.Fatalf("Verify with stale keys while Run refreshes: %v", err)
	}
	<-fetches // Run's refresh, asked for by the request
	block.Store(false)
	releaseOnce.Do(func() { close(release) })
	// Once Run has the new set, the new kid is known without a fetch
	// in the request.
	waitKey(v, "ec-2")
	if _, err := v.Verify(t.Context(), sign(t, jose.ES256, next, "ec-2", claimsAt(later))); err != nil {
		t.Errorf("Verify with the rotated-in kid: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if n := len(fetches); n != 0 {
		t.Errorf("%d fetches after Run's refresh, want none", n)
	}
}

// waitKey returns once v holds the key kid.
func waitKey(v *Verifier, kid string) {
	for {
		v.mu.Lock()
		_, ok := v.keys[kid]
		v.mu.Unlock()
		if ok {
			return
		}
		runtime.Gosched()
	}
}
