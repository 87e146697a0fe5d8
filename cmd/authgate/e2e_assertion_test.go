package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/authgate/authgate/assertion"
	"github.com/authgate/authgate/verify/verifytest"
)

// writePEMKey writes k as a PKCS#8 PEM file, as a mounted Secret, and
// returns its path.
func writePEMKey(t *testing.T, k any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "assertion.pem")
	e2eWriteFile(t, p, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	return p
}

// TestAssertionEndToEnd runs the binary in proxy mode in front of an
// upstream that believes only what the assertion package verifies against
// authgate's JWKS.
func TestAssertionEndToEnd(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var verifier atomic.Pointer[assertion.Verifier]
	var got atomic.Pointer[assertion.Claims]
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verifier.Load().Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := assertion.FromContext(r.Context())
			got.Store(c)
			_, _ = io.WriteString(w, "hello "+c.Subject)
		})).ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)

	ag := startAuthgate(t, fmt.Sprintf(`
server:
  public:
    addr: "127.0.0.1:0"
  admin:
    addr: "127.0.0.1:0"
  shutdown_grace: 5s
upstream: %q
routes:
  - name: orders
    path: /orders
    assertion_audience: orders
  - name: public
    path: /public/
    access: public
  - name: default
    path: /
verify:
  legacy:
    enabled: true
    issuer: "https://auth.example.test"
    audience: platform
    secret_files: [%q]
assertion:
  enabled: true
  issuer: https://authgate.example.test
  audience: platform-services
  key_file: %q
`, upstream.URL, writeTestSecret(t), writePEMKey(t, key)))
	v, err := assertion.New(assertion.Config{
		JWKSURL: "http://" + ag.public + "/.well-known/authgate/jwks.json",
		Issuer:  "https://authgate.example.test", Audience: "orders", Leeway: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	verifier.Store(v)
	tok := verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), verifytest.Claims("alice", time.Now()), nil)
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+ag.public+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	tests := []struct {
		name       string
		givePath   string
		giveHeader []string
		wantStatus int
		wantBody   string
	}{
		{"verified by the upstream", "/orders/1", []string{"Authorization", "Bearer " + tok}, http.StatusOK, "hello alice"},
		{"client's assertion replaced", "/orders/1", []string{"Authorization", "Bearer " + tok, "X-User-Assertion", "forged", "x_user_assertion", "forged"}, http.StatusOK, "hello alice"},
		// The assertion is for platform-services: the orders upstream refuses it.
		{"other route's audience", "/api/1", []string{"Authorization", "Bearer " + tok}, http.StatusUnauthorized, "unauthorized\n"},
		// Anonymous: no assertion, and a client's never arrives.
		{"anonymous with a client's assertion", "/public/x", []string{"X-User-Assertion", "forged"}, http.StatusUnauthorized, "unauthorized\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := get(tt.givePath, tt.giveHeader...)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tt.givePath, status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	c := got.Load()
	if c == nil || c.Subject != "alice" || c.Email != "alice@example.test" || c.Provider != "legacy" || c.UserType != "user" || !c.EmailVerified {
		t.Errorf("claims the upstream verified = %+v", c)
	}
	// The admin listener serves the same keys.
	resp, err := client.Get("http://" + ag.admin + "/.well-known/authgate/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"alg":"ES256"`) {
		t.Errorf("admin JWKS = %d %s", resp.StatusCode, b)
	}
}

// TestCheckConfigAssertionKeys checks that check-config refuses a missing
// key file and a key that does not fit the algorithm, naming the key.
func TestCheckConfigAssertionKeys(t *testing.T) {
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secretFile := writeTestSecret(t)
	edFile := writePEMKey(t, ed)
	tests := []struct {
		name     string
		give     string
		wantCode int
		wantOut  string
	}{
		{"no key file", "  enabled: true\n  issuer: https://a.test\n", 2, "assertion.key_file: required when assertion.enabled is true: every replica must sign with the same key"},
		{"Ed25519 key for ES256", fmt.Sprintf("  enabled: true\n  issuer: https://a.test\n  key_file: %q\n", edFile), 2, "assertion.key_file: holds a EdDSA key, but assertion.algorithm is ES256"},
		{"Ed25519 key for EdDSA", fmt.Sprintf("  enabled: true\n  issuer: https://a.test\n  algorithm: EdDSA\n  key_file: %q\n", edFile), 0, ": ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			e2eWriteFile(t, path, fmt.Sprintf(`
upstream: http://127.0.0.1:3000
routes:
  - name: default
    path: /
verify:
  legacy:
    enabled: true
    issuer: "https://auth.example.test"
    secret_files: [%q]
assertion:
%s`, secretFile, tt.give))
			code, stdout, stderr := runAuthgate(t, noCredentialsEnv(t), "check-config", "--config", path)
			if code != tt.wantCode || !strings.Contains(stdout+stderr, tt.wantOut) {
				t.Errorf("check-config = %d\n%s%s\nwant %d and %q", code, stdout, stderr, tt.wantCode, tt.wantOut)
			}
		})
	}
}
