package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
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

// assertionApp is an upstream that believes only what the assertion
// package verifies against authgate's JWKS (set once authgate listens), and
// records whether a client's forged assertion ever arrived.
type assertionApp struct {
	verifier atomic.Pointer[assertion.Verifier]
	got      atomic.Pointer[assertion.Claims]
	forged   atomic.Bool
}

func (a *assertionApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, v := range r.Header.Values("X-User-Assertion") {
		if strings.Contains(v, "forged") {
			a.forged.Store(true)
		}
	}
	a.verifier.Load().Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := assertion.FromContext(r.Context())
		a.got.Store(c)
		_, _ = io.WriteString(w, "hello "+c.Subject)
	})).ServeHTTP(w, r)
}

// startAssertionAuthgate starts authgate with assertions on, in front of
// upstream ("" for forward-auth only), and points app's verifier at its
// public JWKS.
func startAssertionAuthgate(t *testing.T, upstream string, app *assertionApp) *e2eAuthgate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ag := startAuthgate(t, fmt.Sprintf(`
server:
  public:
    addr: "127.0.0.1:0"
  admin:
    addr: "127.0.0.1:0"
  shutdown_grace: 5s
upstream: %q
trusted_proxies: ["127.0.0.1/32"]
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
  key_files: [%q]
`, upstream, writeTestSecret(t), writePEMKey(t, key)))
	v, err := assertion.New(assertion.Config{
		JWKSURL: "http://" + ag.public + "/.well-known/jwks.json",
		Issuer:  "https://authgate.example.test", Audience: "orders", Leeway: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	app.verifier.Store(v)
	return ag
}

// checkAssertionThrough sends requests to addr (authgate itself, or a
// gateway in front of it) over plain HTTP and checks what app verified.
func checkAssertionThrough(t *testing.T, addr string, app *assertionApp) {
	t.Helper()
	checkAssertionAt(t, "http://"+addr, &http.Client{Timeout: 5 * time.Second}, app)
}

// checkAssertionAt is checkAssertionThrough for a base URL and a client of
// the caller's (a gateway serving HTTPS).
func checkAssertionAt(t *testing.T, base string, client *http.Client, app *assertionApp) {
	t.Helper()
	tok := verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), verifytest.Claims("alice", time.Now()), nil)
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
			req, _ := http.NewRequest("GET", base+tt.givePath, nil)
			req.Host = exampleHost // the gateway examples' application host
			for i := 0; i+1 < len(tt.giveHeader); i += 2 {
				req.Header.Add(tt.giveHeader[i], tt.giveHeader[i+1])
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || string(b) != tt.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tt.givePath, resp.StatusCode, b, tt.wantStatus, tt.wantBody)
			}
		})
	}
	if app.forged.Load() {
		t.Error("a client's X-User-Assertion reached the upstream")
	}
	c := app.got.Load()
	if c == nil || c.Subject != "alice" || c.Email != "alice@example.test" || c.Provider != "legacy" || c.UserType != "user" || !c.EmailVerified {
		t.Errorf("claims the upstream verified = %+v", c)
	}
}

// TestAssertionEndToEnd runs the binary in proxy mode in front of an
// upstream that verifies the assertion with the assertion package.
func TestAssertionEndToEnd(t *testing.T) {
	app := &assertionApp{}
	upstream := httptest.NewServer(app)
	t.Cleanup(upstream.Close)
	ag := startAssertionAuthgate(t, upstream.URL, app)
	checkAssertionThrough(t, ag.public, app)
	// The admin listener serves the same keys.
	resp, err := http.Get("http://" + ag.admin + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"alg":"ES256"`) {
		t.Errorf("admin JWKS = %d %s", resp.StatusCode, b)
	}
}

// TestAssertionNginx runs the binary in forward-auth mode behind the nginx
// example: nginx copies the assertion from the answer and replaces the
// client's.
func TestAssertionNginx(t *testing.T) {
	nginxBin := findNginx(t)
	app, ag, upstream := startAssertionBehindGateway(t)
	checkAssertionThrough(t, startNginx(t, nginxBin, ag.public, upstream), app)
}

// TestAssertionCaddy runs the binary in forward-auth mode behind the Caddy
// example: Caddy copies the assertion from the answer and drops the
// client's.
func TestAssertionCaddy(t *testing.T) {
	caddyBin := findGateway(t, "caddy", envRequireCaddy, "scripts/install-caddy.sh")
	app, ag, upstream := startAssertionBehindGateway(t)
	checkAssertionThrough(t, startCaddy(t, caddyBin, ag.public, upstream), app)
}

// TestAssertionTraefik runs the binary in forward-auth mode behind the
// Traefik example (make e2e-traefik; Traefik is not built in CI): Traefik
// copies the assertion from the answer (authResponseHeaders) and drops the
// client's.
func TestAssertionTraefik(t *testing.T) {
	traefikBin := findGateway(t, "traefik", envRequireTraefik, "scripts/build-traefik.sh (about 25 minutes)")
	app, ag, upstream := startAssertionBehindGateway(t)
	client := gatewayClient(t)
	// The upstream refuses a request without an assertion: an anonymous
	// one on the public route gets its 401 once Traefik routes.
	addr := startTraefik(t, traefikBin, ag.public, upstream, client, http.StatusUnauthorized)
	checkAssertionAt(t, "https://"+addr, client, app)
}

// startAssertionBehindGateway starts the verifying upstream and the binary
// in forward-auth mode, for a gateway in front of both; it returns the
// upstream's address.
func startAssertionBehindGateway(t *testing.T) (*assertionApp, *e2eAuthgate, string) {
	t.Helper()
	app := &assertionApp{}
	upstream := httptest.NewServer(app)
	t.Cleanup(upstream.Close)
	return app, startAssertionAuthgate(t, "", app), upstream.Listener.Addr().String()
}

// TestCheckConfigAssertionKeys checks that check-config refuses a missing
// key file, a weak key and a key that does not fit the algorithm, naming
// the key.
func TestCheckConfigAssertionKeys(t *testing.T) {
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secretFile := writeTestSecret(t)
	edFile, rsaFile, p256File := writePEMKey(t, ed), writePEMKey(t, rsaKey), writePEMKey(t, p256)
	tests := []struct {
		name     string
		give     string
		wantCode int
		wantOut  string
	}{
		{"no key file", "  enabled: true\n  issuer: https://a.test\n", 2, "assertion.key_files: required when assertion.enabled is true: every replica must sign with the same key"},
		{"Ed25519 key for ES256", fmt.Sprintf("  enabled: true\n  issuer: https://a.test\n  key_files: [%q]\n", edFile), 2, "assertion.key_files[0]: " + edFile + ": holds an EdDSA key, but assertion.algorithm is ES256"},
		{"RSA-1024 key", fmt.Sprintf("  enabled: true\n  issuer: https://a.test\n  key_files: [%q]\n", rsaFile), 2, "assertion.key_files[0]: " + rsaFile + ": *rsa.PublicKey is not a P-256 ECDSA or Ed25519 key"},
		{"RSA-1024 key to publish", fmt.Sprintf("  enabled: true\n  issuer: https://a.test\n  key_files: [%q, %q]\n", p256File, rsaFile), 2, "assertion.key_files[1]: " + rsaFile + ": *rsa.PublicKey is not"},
		{"Ed25519 key for EdDSA", fmt.Sprintf("  enabled: true\n  issuer: https://a.test\n  algorithm: EdDSA\n  key_files: [%q]\n", edFile), 0, ": ok"},
		{"rotation from ES256 to EdDSA", fmt.Sprintf("  enabled: true\n  issuer: https://a.test\n  algorithm: EdDSA\n  key_files: [%q, %q]\n", edFile, p256File), 0, ": ok"},
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
