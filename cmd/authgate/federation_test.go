package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authgate/authgate/verify/verifytest"
)

// testDatabaseURL returns TEST_DATABASE_URL or skips; a set but unreachable
// database fails the test.
func testDatabaseURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" || testing.Short() {
		t.Skip("TEST_DATABASE_URL not set; skipping PostgreSQL integration test")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("TEST_DATABASE_URL is set but PostgreSQL is unreachable: %v", err)
	}
	_ = conn.Close(ctx)
	return url
}

// testSchema returns a schema name of its own for a test (prefix and the
// time), dropped with everything in it when the test ends.
func testSchema(t *testing.T, dbURL, prefix string) string {
	t.Helper()
	schema := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, dbURL); err == nil {
			_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			_ = conn.Close(ctx)
		}
	})
	return schema
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestFederationEndToEnd runs `authgate migrate`, then the wired handler
// against real PostgreSQL: concurrent first requests of a new Firebase user
// create one row, and every request carries that row's id.
func TestFederationEndToEnd(t *testing.T) {
	dbURL := testDatabaseURL(t)
	schema := testSchema(t, dbURL, "authgate_e2e")
	secret := writeFile(t, "secret", "e2e-secret-0123456789abcdef0123456789")
	path := writeFile(t, "c.yaml", minimalConfig+`
  firebase:
    enabled: true
    project_id: demo-authgate
    emulator: true
federation:
  enabled: true
  schema: `+schema+`
`)
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + secret, "AUTHGATE_FEDERATION_DATABASE_URL=" + dbURL, "AUTHGATE_TRUSTED_PROXIES=127.0.0.1/32"}

	var stdout, stderr strings.Builder
	if err := run(t.Context(), []string{"migrate", "--config", path}, env, &stdout, &stderr); err != nil {
		t.Fatalf("authgate migrate: %v\n%s", err, stderr.String())
	}
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg)

	now := time.Now()
	tok := verifytest.Unsigned(t, map[string]any{"alg": "none"}, map[string]any{
		"iss": "https://securetoken.google.com/demo-authgate", "aud": "demo-authgate", "sub": "fb-uid-1",
		"email": "new@example.test", "email_verified": true,
		"iat": now.Add(-time.Minute).Unix(), "auth_time": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}, "")
	ids := make([]string, 50)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := forwardAuth(a, tok)
			if w.Code != http.StatusOK {
				t.Errorf("request %d: status %d", i, w.Code)
			}
			ids[i] = w.Header().Get("X-User-Id")
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if !uuidRE.MatchString(id) || id != ids[0] {
			t.Fatalf("request %d: X-User-Id = %q, want the same platform uuid as request 0 (%q)", i, id, ids[0])
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	var rowID string
	q := "SELECT count(*), min(id::text) FROM " + pgx.Identifier{schema, "users"}.Sanitize() + " WHERE firebase_uid = 'fb-uid-1'"
	if err := conn.QueryRow(ctx, q).Scan(&n, &rowID); err != nil {
		t.Fatal(err)
	}
	if n != 1 || rowID != ids[0] {
		t.Errorf("rows for fb-uid-1 = %d (id %s), want exactly 1 with id %s", n, rowID, ids[0])
	}
}
