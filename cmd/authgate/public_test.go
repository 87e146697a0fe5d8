package main

import (
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/auth"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/authgate/authgate/internal/firebaseadmin"
	"github.com/authgate/authgate/verify/verifytest"
)

// closedPort returns a port on 127.0.0.1 that nothing listens on: a
// connection to it is refused at once.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return port
}

// Names of the made-up database account of TestPublicAnswersHoldNoInternals:
// PostgreSQL's driver puts both in its connection errors.
const (
	leakDBUser = "leakcheck_dbuser"
	leakDBName = "leakcheck_dbname"
)

// internals are strings that tell an outsider how authgate is built and
// where its dependencies are: addresses and ports, the database account,
// and the words of driver and network errors.
func internals(ports ...string) []string {
	out := []string{"127.0.0.1", leakDBUser, leakDBName, "SQLSTATE", "dial tcp", "connection refused", "connect:",
		"failed to connect", "pgx", "pgconn", "keys:", "http://", "lookup "}
	for _, p := range ports {
		out = append(out, ":"+p)
	}
	return out
}

// publicAnswer is one request to the public listener and what came back.
type publicAnswer struct {
	name   string
	status int
	header http.Header
	body   string
}

// checkNoInternals fails the test for every answer whose body or headers
// hold one of the internals.
func checkNoInternals(t *testing.T, answers []publicAnswer, internals []string) {
	t.Helper()
	for _, a := range answers {
		var hdr strings.Builder
		for k, vs := range a.header {
			hdr.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
		}
		for _, s := range internals {
			if strings.Contains(a.body, s) {
				t.Errorf("%s: %d body %q holds %q", a.name, a.status, a.body, s)
			}
			if strings.Contains(hdr.String(), s) {
				t.Errorf("%s: %d headers %q hold %q", a.name, a.status, hdr.String(), s)
			}
		}
	}
}

// serveAll sends each request to h from 127.0.0.1 and records the answers.
func serveAll(t *testing.T, h http.Handler, reqs []struct{ name, method, path, body, token string }) []publicAnswer {
	t.Helper()
	var out []publicAnswer
	for _, rq := range reqs {
		r := httptest.NewRequestWithContext(t.Context(), rq.method, "http://svc"+rq.path, strings.NewReader(rq.body))
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("X-Forwarded-Uri", "/api/x")
		r.Header.Set("X-Forwarded-Method", "GET")
		if rq.token != "" {
			r.Header.Set("Authorization", "Bearer "+rq.token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		out = append(out, publicAnswer{name: rq.name, status: w.Code, header: w.Header(), body: w.Body.String()})
	}
	return out
}

// TestPublicAnswersHoldNoInternals points PostgreSQL (with a made-up user
// and database), Redis, the Firebase key endpoint and the upstream at
// closed ports of 127.0.0.1 and asks the public listener everything that
// fails because of them: the token API's health, its verify endpoints, the
// proxy and forward-auth, and (with the Auth Emulator) the auth API. No
// answer, body or header, names an address, a port, the database user or
// name, or a driver's message; the admin listener's /readyz does.
func TestPublicAnswersHoldNoInternals(t *testing.T) {
	pgPort, redisPort, keysPort, upPort := closedPort(t), closedPort(t), closedPort(t), closedPort(t)
	dbURL := "postgres://" + leakDBUser + ":pw@127.0.0.1:" + pgPort + "/" + leakDBName + "?sslmode=disable&connect_timeout=1"
	secret := writeFile(t, "secret", verifytest.Secret)
	path := writeFile(t, "c.yaml", `
upstream: http://127.0.0.1:`+upPort+`
trusted_proxies: [127.0.0.1/32]
routes:
  - name: public
    path: /public
    access: public
  - name: default
    path: /
verify:
  legacy:
    enabled: true
    issuer: https://auth.example.test
  firebase:
    enabled: true
    project_id: demo-authgate
    keys:
      url: http://127.0.0.1:`+keysPort+`/keys
    session_cookies:
      keys:
        url: http://127.0.0.1:`+keysPort+`/cookie-keys
federation:
  enabled: true
  on_unavailable: deny
cache:
  redis:
    addrs: [127.0.0.1:`+redisPort+`]
`)
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret, "AUTHGATE_FEDERATION_DATABASE_URL=" + dbURL}
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg)

	now := time.Now()
	legacy := verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), verifytest.Claims("0a0a0a0a-0000-4000-8000-000000000001", now), nil)
	firebase := verifytest.RSAKey(t, "kid-1").Sign(t, verifytest.FirebaseClaims("demo-authgate", "fb-uid-1", now), nil)
	reqs := []struct{ name, method, path, body, token string }{
		{name: "token api health", method: "GET", path: "/v1/token/health"},
		{name: "token api verify, user table down", method: "POST", path: "/v1/token/verify", body: `{"token": "` + legacy + `"}`},
		{name: "token api verify-header, keys down", method: "POST", path: "/v1/token/verify-header", token: firebase},
		{name: "token api verify, bad token", method: "POST", path: "/v1/token/verify", body: `{"token": "garbage"}`},
		{name: "token api, bad body", method: "POST", path: "/v1/token/verify", body: `{`},
		{name: "token api, no such endpoint", method: "GET", path: "/v1/token/nope"},
		{name: "proxy, user table down", method: "GET", path: "/api/x", token: legacy},
		{name: "proxy, keys down", method: "GET", path: "/api/x", token: firebase},
		{name: "proxy, upstream down", method: "GET", path: "/public/x"},
		{name: "proxy, bad token", method: "GET", path: "/api/x", token: "garbage"},
		{name: "forward auth, user table down", method: "GET", path: "/auth", token: legacy},
		{name: "forward auth, keys down", method: "GET", path: "/auth", token: firebase},
	}
	answers := serveAll(t, a.handler, reqs)
	wantStatus := map[string]int{
		"token api health":                   503,
		"token api verify, user table down":  503,
		"token api verify-header, keys down": 503,
		"proxy, user table down":             503,
		"proxy, upstream down":               502,
		"forward auth, user table down":      503,
		"token api verify, bad token":        401,
		"proxy, bad token":                   401,
		"token api, bad body":                400,
		"token api, no such endpoint":        404,
		"proxy, keys down":                   503,
		"forward auth, keys down":            503,
	}
	for _, an := range answers {
		if want := wantStatus[an.name]; an.status != want {
			t.Errorf("%s = %d %s, want %d", an.name, an.status, an.body, want)
		}
	}
	ports := []string{pgPort, redisPort, keysPort, upPort}
	checkNoInternals(t, answers, internals(ports...))

	// The detail is on the admin listener, for operators: without it the
	// test above would prove nothing.
	w := httptest.NewRecorder()
	a.admin.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), "GET", "http://admin/readyz", nil))
	for _, s := range []string{leakDBUser, ":" + redisPort} {
		if !strings.Contains(w.Body.String(), s) {
			t.Errorf("admin /readyz = %s, want the detail (%q) there", w.Body, s)
		}
	}
}

// TestAuthAPIAnswersHoldNoInternals: the auth API, with PostgreSQL (a
// made-up user and database) and Redis at closed ports, answers its
// failures without an address, the database account or a driver message.
// It needs the Firebase Auth Emulator.
func TestAuthAPIAnswersHoldNoInternals(t *testing.T) {
	host := os.Getenv(emulatorEnv)
	if host == "" || testing.Short() {
		t.Skip(emulatorEnv + " not set; skipping (scripts/firebase-emulator.sh start)")
	}
	pgPort, redisPort := closedPort(t), closedPort(t)
	dbURL := "postgres://" + leakDBUser + ":pw@127.0.0.1:" + pgPort + "/" + leakDBName + "?sslmode=disable&connect_timeout=1"
	secret := writeFile(t, "secret", verifytest.Secret)
	key := writeFile(t, "web-api-key", "leak-web-api-key\n")
	path := writeFile(t, "c.yaml", minimalConfig+`
  firebase:
    enabled: true
    project_id: demo-authgate
    emulator: true
    revocation:
      enabled: true
federation:
  enabled: true
  on_unavailable: deny
cache:
  redis:
    addrs: [127.0.0.1:`+redisPort+`]
auth_api:
  enabled: true
  web_api_key_file: `+key+`
`)
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret, "AUTHGATE_FEDERATION_DATABASE_URL=" + dbURL}
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg)

	ctx := t.Context()
	client, err := firebaseadmin.AuthClient(ctx, "demo-authgate", "")
	if err != nil {
		t.Fatal(err)
	}
	email := "leak-" + strings.ToLower(rand.Text()) + "@example.test"
	newEmail := "leaknew-" + strings.ToLower(rand.Text()) + "@example.test"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, e := range []string{email, newEmail} {
			if u, err := client.GetUserByEmail(ctx, e); err == nil {
				_ = client.DeleteUser(ctx, u.UID)
			}
		}
	})
	const password = "leak password 1"
	if _, err := client.CreateUser(ctx, (&auth.UserToCreate{}).Email(email).Password(password)); err != nil {
		t.Fatal(err)
	}
	creds := `{"email": "` + email + `", "password": "` + password + `"}`
	reqs := []struct{ name, method, path, body, token string }{
		{name: "register, user table down", method: "POST", path: "/v1/auth/register", body: `{"email": "` + newEmail + `", "password": "` + password + `"}`},
		{name: "login, user table down", method: "POST", path: "/v1/auth/login", body: creds},
		{name: "login, wrong password", method: "POST", path: "/v1/auth/login", body: `{"email": "` + email + `", "password": "wrong password 2"}`},
		{name: "me, bad token", method: "GET", path: "/v1/auth/me", token: "garbage"},
		{name: "refresh, bad token", method: "POST", path: "/v1/auth/refresh", body: `{"refreshToken": "garbage"}`},
		{name: "bad body", method: "POST", path: "/v1/auth/login", body: `{`},
		{name: "token api health", method: "GET", path: "/v1/token/health"},
	}
	answers := serveAll(t, a.handler, reqs)
	wantStatus := []int{503, 503, 401, 401, 401, 400, 503}
	for i, an := range answers {
		if an.status != wantStatus[i] {
			t.Errorf("%s = %d %s, want %d", an.name, an.status, an.body, wantStatus[i])
		}
	}
	checkNoInternals(t, answers, append(internals(pgPort, redisPort), host))
}
