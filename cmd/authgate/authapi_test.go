package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/firebaseadmin"
)

// TestAuthAPIEndToEnd wires the auth API from a configuration file, as
// `authgate serve` does, against the Firebase Auth Emulator and PostgreSQL:
// it is mounted under /v1/auth past the route rules, talks to the emulator
// in emulator mode, and signs a user up, in and out.
func TestAuthAPIEndToEnd(t *testing.T) {
	host := os.Getenv(emulatorEnv)
	if host == "" {
		t.Skip(emulatorEnv + " not set; skipping auth API end-to-end test (scripts/firebase-emulator.sh start)")
	}
	dbURL := testDatabaseURL(t)
	schema := testSchema(t, dbURL, "authgate_authapi")
	secret := writeFile(t, "secret", "e2e-secret-0123456789abcdef0123456789")
	key := writeFile(t, "web-api-key", "e2e-web-api-key\n")
	path := writeFile(t, "c.yaml", minimalConfig+`
  firebase:
    enabled: true
    project_id: demo-authgate
    emulator: true
    revocation:
      enabled: true
federation:
  enabled: true
  schema: `+schema+`
auth_api:
  enabled: true
  web_api_key_file: `+key+`
`)
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret, "AUTHGATE_FEDERATION_DATABASE_URL=" + dbURL}
	var stdout, stderr strings.Builder
	if err := run(t.Context(), []string{"migrate", "--config", path}, env, &stdout, &stderr); err != nil {
		t.Fatalf("authgate migrate: %v\n%s", err, stderr.String())
	}
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg)

	email := "e2e-" + strings.ToLower(rand.Text()) + "@example.test"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := firebaseadmin.AuthClient(ctx, "demo-authgate", ""); err == nil {
			if u, err := c.GetUserByEmail(ctx, email); err == nil {
				_ = c.DeleteUser(ctx, u.UID)
			}
		}
	})
	do := func(method, path, body, tok string) (*httptest.ResponseRecorder, map[string]any) {
		t.Helper()
		r := httptest.NewRequestWithContext(t.Context(), method, "http://svc"+path, strings.NewReader(body))
		r.RemoteAddr = "203.0.113.5:1"
		r.Header.Set("X-User-Id", "spoofed")
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, r)
		var m map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &m)
		return w, m
	}
	creds := `{"email": "` + email + `", "password": "e2e password 1"}`
	w, reg := do("POST", "/v1/auth/register", creds, "")
	if w.Code != http.StatusCreated || w.Header().Get("X-Request-Id") == "" {
		t.Fatalf("register = %d %s (request id %q), want 201 with a request id", w.Code, w.Body, w.Header().Get("X-Request-Id"))
	}
	user, _ := reg["user"].(map[string]any)
	if !uuidRE.MatchString(fmt.Sprint(user["id"])) {
		t.Errorf("registered user id = %v, want a platform uuid", user["id"])
	}
	w, login := do("POST", "/v1/auth/login", creds, "")
	tok, _ := login["idToken"].(string)
	if w.Code != http.StatusOK || tok == "" {
		t.Fatalf("login = %d %s, want 200 with an ID token", w.Code, w.Body)
	}
	// The ID token opens the routes as any Firebase token does.
	if w, me := do("GET", "/v1/auth/me", "", tok); w.Code != http.StatusOK || me["user"].(map[string]any)["id"] != user["id"] {
		t.Errorf("me = %d %s, want 200 with the registered user", w.Code, w.Body)
	}
	if w, _ := do("POST", "/v1/auth/logout", "", tok); w.Code != http.StatusNoContent {
		t.Fatalf("logout = %d %s, want 204", w.Code, w.Body)
	}
	if w, _ := do("GET", "/v1/auth/me", "", tok); w.Code != http.StatusUnauthorized {
		t.Errorf("me after logout = %d %s, want 401", w.Code, w.Body)
	}
}
