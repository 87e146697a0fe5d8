package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"github.com/authgate/authgate/internal/cache/cachetest"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/verify/verifytest"
)

// The migration report, from GET /admin/migration and from `authgate
// migration status`, over a real user table and Redis: the table's
// counts, what the telemetry saw, and the routes still admitting legacy
// tokens.
func TestMigrationReportEndToEnd(t *testing.T) {
	dbURL := testDatabaseURL(t)
	rcfg, _ := cachetest.Redis(t, "cmd")
	schema := testSchema(t, dbURL, "authgate_migration")
	path := writeFile(t, "c.yaml", fmt.Sprintf(`
routes:
  - {name: old, path: /old, legacy: warn, legacy_sunset: "2099-01-01T00:00:00Z"}
  - {name: gone, path: /gone, legacy: deny}
  - {name: past, path: /past, legacy_sunset: "2020-01-01T00:00:00Z"}
  - {name: firebase-only, path: /fb, require: {provider: [firebase]}}
  - {name: default, path: /}
verify:
  legacy: {enabled: true, issuer: https://auth.example.test}
federation: {enabled: true, schema: %s}
auth_api:
  legacy_passwords: {enabled: true}
cache:
  redis: {addrs: [%q], db: %d, key_prefix: %q}
`, schema, rcfg.Addrs[0], rcfg.DB, rcfg.KeyPrefix))
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRETS=" + verifytest.Secret, "AUTHGATE_FEDERATION_DATABASE_URL=" + dbURL,
		"AUTHGATE_TRUSTED_PROXIES=127.0.0.1/32", "AUTHGATE_SERVER_ADMIN_API_SECRET=" + adminTestSecret}
	var stderr strings.Builder
	if err := run(t.Context(), []string{"migrate", "--config", path}, env, &strings.Builder{}, &stderr); err != nil {
		t.Fatalf("authgate migrate: %v\n%s", err, stderr.String())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	users := pgx.Identifier{schema, "users"}.Sanitize()
	if _, err := conn.Exec(ctx, "ALTER TABLE "+users+" ADD COLUMN password_hash text"); err != nil {
		t.Fatal(err)
	}
	var legacyID string
	for i, vals := range []string{
		"'a@example.test', '$2a$10$x', NULL", // legacy only, hash to move
		"'b@example.test', NULL, NULL",       // legacy only, no password
		"'c@example.test', NULL, 'fb-c'",     // linked
	} {
		var id string
		if err := conn.QueryRow(ctx, "INSERT INTO "+users+" (email, password_hash, firebase_uid) VALUES ("+vals+") RETURNING id::text").Scan(&id); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			legacyID = id
		}
	}
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg)
	tok := verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), verifytest.Claims(legacyID, time.Now()), nil)
	for range 3 {
		if w := forwardAuth(a, tok); w.Code != http.StatusOK {
			t.Fatalf("forward-auth with a legacy token: %d", w.Code)
		}
	}
	if err := a.usage.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://admin/admin/migration", nil)
	r.Header.Set("Authorization", "Bearer "+adminTestSecret)
	w := httptest.NewRecorder()
	a.admin.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("GET /admin/migration: %d %s", w.Code, w.Body)
	}
	var rep proxy.MigrationReport
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatalf("decode %s: %v", w.Body, err)
	}
	u := rep.Users
	if u.Users != 3 || u.Linked != 1 || u.LegacyOnly != 2 || u.LegacyWithPasswordHash == nil || *u.LegacyWithPasswordHash != 1 {
		t.Errorf("users = %+v, want 3 total, 1 linked, 2 legacy only, 1 with a hash", u)
	}
	if rep.Telemetry == nil || !rep.Telemetry.Shared {
		t.Fatalf("telemetry = %+v (%s), want shared numbers", rep.Telemetry, rep.TelemetryNote)
	}
	if got := rep.Telemetry.Windows[0].Legacy; got.Users != 1 || got.Requests != 3 {
		t.Errorf("1d legacy = %+v, want 1 user, 3 requests", got)
	}
	if rep.Telemetry.LastLegacySeen == nil {
		t.Error("last_legacy_seen = null, want the flush time")
	}
	var names []string
	for _, lr := range rep.LegacyRoutes {
		names = append(names, lr.Name)
	}
	if got, want := strings.Join(names, ","), "old,default"; got != want {
		t.Errorf("legacy_routes = %s, want %s", got, want)
	}

	var out strings.Builder
	stderr.Reset()
	if err := run(ctx, []string{"migration", "status", "--config", path}, env, &out, &stderr); err != nil {
		t.Fatalf("authgate migration status: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"linked to Firebase", "legacy only, password hash to move  1", "SEEN (all replicas", "old      warn    2099-01-01T00:00:00Z", "default"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("migration status output lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("authgate migration status:\n%s", out.String())
}
