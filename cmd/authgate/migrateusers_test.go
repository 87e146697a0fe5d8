package main

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
)

// TestMigrateUsersCommand runs `authgate migrate-users` against
// PostgreSQL and the Auth Emulator: the checks of its configuration, a dry
// run, the move, a second run that does nothing, and the exit status of a
// row that fails.
func TestMigrateUsersCommand(t *testing.T) {
	dbURL := testDatabaseURL(t)
	client := emulatorClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	schema := testSchema(t, dbURL, "authgate_moveusers")
	legacySecret := writeFile(t, "legacy", "legacy-secret-0123456789abcdef0123456789")
	base := strings.Replace(firebaseConfig, "  database_url: postgres://postgres@127.0.0.1:1/none\n", "  schema: "+schema+"\n", 1)
	env := []string{"AUTHGATE_VERIFY_LEGACY_SECRET_FILES=" + legacySecret, "AUTHGATE_FEDERATION_DATABASE_URL=" + dbURL}
	off := writeFile(t, "off.yaml", base)
	path := writeFile(t, "c.yaml", base+"auth_api:\n  legacy_passwords:\n    enabled: true\n    email_verified_column: email_verified\n")
	if err := run(ctx, []string{"migrate", "--config", path}, env, &strings.Builder{}, &strings.Builder{}); err != nil {
		t.Fatalf("authgate migrate: %v", err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	users := pgx.Identifier{schema, "users"}.Sanitize()
	if _, err := conn.Exec(ctx, "ALTER TABLE "+users+" ADD COLUMN password_hash text, ADD COLUMN email_verified boolean"); err != nil {
		t.Fatal(err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("old password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tag := strings.ToLower(rand.Text())
	var ids, emails []string
	for _, local := range []string{"cmd-a", "cmd-b"} {
		email := local + "-" + tag + "@example.test"
		var id string
		if err := conn.QueryRow(ctx, "INSERT INTO "+users+" (email, password_hash, email_verified) VALUES ($1, $2, true) RETURNING id::text", email, string(h)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids, emails = append(ids, id), append(emails, email)
		t.Cleanup(func() { _ = client.DeleteUser(context.Background(), id) })
	}
	const moved = "SELECT count(*) FROM %s WHERE firebase_uid = id::text AND password_hash IS NULL"
	countMoved := func() int {
		var n int
		if err := conn.QueryRow(ctx, strings.Replace(moved, "%s", users, 1)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	migrateUsers := func(args ...string) (stdout, stderr string, err error) {
		var out, errOut strings.Builder
		err = run(ctx, append([]string{"migrate-users"}, args...), env, &out, &errOut)
		for _, s := range []string{out.String(), errOut.String()} {
			for _, e := range emails {
				if strings.Contains(s, e) {
					t.Errorf("output shows an email: %s", s)
				}
			}
			if strings.Contains(s, "$2a$") {
				t.Errorf("output shows a hash: %s", s)
			}
		}
		return out.String(), errOut.String(), err
	}

	tests := []struct {
		name       string
		give       []string
		wantCode   int // 0 for success
		wantStderr string
	}{
		{name: "legacy passwords off", give: []string{"--config", off}, wantCode: 2,
			wantStderr: "authgate migrate-users: auth_api.legacy_passwords.enabled is false"},
		{name: "batch too large", give: []string{"--config", path, "--batch", "1001"}, wantCode: 2,
			wantStderr: "--batch 1001 is outside 1..1000"},
		{name: "no config", give: []string{"--dry-run"}, wantCode: 2, wantStderr: "--config FILE is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := migrateUsers(tt.give...)
			var ee exitError
			if !errors.As(err, &ee) || ee.code != tt.wantCode || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("migrate-users %v = %v, stderr %q; want exit %d and %q", tt.give, err, stderr, tt.wantCode, tt.wantStderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr %q is not one line", stderr)
			}
		})
	}

	stdout, stderr, err := migrateUsers("--config", path, "--dry-run")
	if err != nil || !strings.Contains(stdout, "2 rows: imported 2, linked 2, skipped 0, failed 0 (dry run") {
		t.Errorf("dry run = %v, stdout %q, stderr %q", err, stdout, stderr)
	}
	if n := countMoved(); n != 0 {
		t.Errorf("dry run moved %d rows", n)
	}
	for _, id := range ids {
		if _, err := client.GetUser(ctx, id); err == nil {
			t.Errorf("dry run created Firebase user %s", id)
		}
	}

	stdout, stderr, err = migrateUsers("--config", path, "--batch", "1")
	if err != nil || !strings.Contains(stdout, "2 rows: imported 2, linked 2, skipped 0, failed 0\n") ||
		!strings.Contains(stderr, "batch 1: 1 rows: imported 1, linked 1") || !strings.Contains(stderr, "batch 2: ") {
		t.Errorf("migrate-users = %v, stdout %q, stderr %q", err, stdout, stderr)
	}
	if n := countMoved(); n != 2 {
		t.Errorf("%d rows moved, want 2", n)
	}
	for i, id := range ids {
		if u, err := client.GetUser(ctx, id); err != nil || u.Email != emails[i] || !u.EmailVerified {
			t.Errorf("Firebase user %s = %+v, %v, want email %s, verified", id, u, err, emails[i])
		}
	}

	if stdout, _, err := migrateUsers("--config", path); err != nil || !strings.Contains(stdout, "0 rows: imported 0") {
		t.Errorf("second run = %v, stdout %q, want nothing done", err, stdout)
	}

	var bad string
	if err := conn.QueryRow(ctx, "INSERT INTO "+users+" (email, password_hash) VALUES ($1, 'plain-md5') RETURNING id::text", "cmd-bad-"+tag+"@example.test").Scan(&bad); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = migrateUsers("--config", path)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(stdout, "failed 1") ||
		!strings.Contains(stderr, "user "+bad+" failed: password hash is not bcrypt") {
		t.Errorf("run with a bad hash = %v, stdout %q, stderr %q; want exit 1 naming the row", err, stdout, stderr)
	}
}
