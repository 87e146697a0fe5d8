package federation

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"
)

func TestMigrationsEmbedded(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 || ms[0].name != "users" {
		t.Fatalf("migrations = %+v, want 0001_users first", ms)
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].version <= ms[i-1].version {
			t.Errorf("migration %d after %d: versions must ascend", ms[i].version, ms[i-1].version)
		}
	}
}

// openUnmigrated opens a Store on a fresh schema without migrating it.
func openUnmigrated(t *testing.T, dbURL, schema string) *Store {
	t.Helper()
	s, err := Open(testContext(t), configtest.Fill(Config{Enabled: true, DatabaseURL: secret.Secret(dbURL), Schema: schema}, DefaultConfig()), zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// checkSchema fails unless the schema holds the users table as designed
// and each migration recorded once.
func checkSchema(t *testing.T, s *Store) {
	t.Helper()
	ctx := testContext(t)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.pool.Query(ctx, "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != len(ms) {
		t.Errorf("schema_migrations = %v, want each of %d migrations once", versions, len(ms))
	}

	rows, err = s.pool.Query(ctx, `SELECT column_name || ' ' || data_type || ' ' || is_nullable
		FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'users' ORDER BY column_name`, s.cfg.Schema)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"created_at timestamp with time zone NO",
		"deleted_at timestamp with time zone YES",
		"email text YES",
		"federation_status text NO",
		"firebase_uid text YES",
		"id uuid NO",
		"is_active boolean NO",
		"last_login timestamp with time zone YES",
		"last_sync_error text YES",
		"last_synced_at timestamp with time zone YES",
		"sync_attempts integer NO",
		"token_balance bigint NO",
		"updated_at timestamp with time zone NO",
		"user_type text NO",
		"username text YES",
	}
	if !slices.Equal(cols, want) {
		t.Errorf("users columns =\n%q\nwant\n%q", cols, want)
	}

	rows, err = s.pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'users' ORDER BY indexname`, s.cfg.Schema)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	wantIdx := []string{"users_email_live_key", "users_federation_failed_idx", "users_firebase_uid_key", "users_pkey", "users_username_ci_key", "users_username_key"}
	if !slices.Equal(idx, wantIdx) {
		t.Errorf("users indexes = %v, want %v", idx, wantIdx)
	}
}

func TestMigrateFreshAndIdempotent(t *testing.T) {
	f := newFixture(t, fixtureOpts{}) // migrated once
	checkSchema(t, f.s)
	ctx := testContext(t)
	u, err := f.s.Repo().Create(ctx, NewUser{Email: "kept@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := f.s.Migrate(ctx); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
	}
	checkSchema(t, f.s)
	if _, err := f.s.Repo().FindByID(ctx, u.ID); err != nil {
		t.Errorf("row after migrating again: %v", err)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	dbURL := testDatabaseURL(t)
	schema := testSchema(t, dbURL)
	ctx := testContext(t)
	const replicas = 5
	stores := make([]*Store, replicas)
	for i := range stores {
		stores[i] = openUnmigrated(t, dbURL, schema)
	}
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Migrate(ctx)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate #%d: %v", i, err)
		}
	}
	checkSchema(t, stores[0])
}

// TestMigrateAdoptsExistingTable: the service authgate replaces created
// auth.users already. Migrating adds what is missing and keeps every row.
func TestMigrateAdoptsExistingTable(t *testing.T) {
	dbURL := testDatabaseURL(t)
	schema := testSchema(t, dbURL)
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q := pgx.Identifier{schema}.Sanitize()
	for _, sql := range []string{
		"CREATE SCHEMA " + q,
		"CREATE TABLE " + q + `.users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text, username text UNIQUE,
			token_balance bigint NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now())`,
		"INSERT INTO " + q + ".users (id, email, username, token_balance) VALUES ('0a0a0a0a-0000-4000-8000-000000000001', 'old@example.com', 'old', 42)",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	s := openUnmigrated(t, dbURL, schema)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	u, err := s.Repo().FindByID(ctx, "0a0a0a0a-0000-4000-8000-000000000001")
	if err != nil {
		t.Fatalf("FindByID(existing row): %v", err)
	}
	if u.Email != "old@example.com" || u.TokenBalance != 42 || u.UserType != "user" || !u.IsActive || u.FederationStatus != StatusActive {
		t.Errorf("existing row after Migrate = %+v, want its values kept and the new columns defaulted", u)
	}
	if _, err := s.Repo().Create(ctx, NewUser{Email: "OLD@example.com"}); err == nil {
		t.Error("Create with an existing email succeeded: the live-email index is missing")
	}
	if _, err := s.Repo().Create(ctx, NewUser{Username: "OLD"}); !errors.Is(err, ErrUsernameTaken) {
		t.Errorf("Create with an existing username in other case = %v, want ErrUsernameTaken", err)
	}
}

// TestMigrateRefusesCaseDuplicateUsernames: a table adopted from the old
// service whose usernames differ only in case cannot get the
// case-insensitive index. The migration fails naming every such group, and
// changes nothing; once they are renamed, it succeeds.
func TestMigrateRefusesCaseDuplicateUsernames(t *testing.T) {
	dbURL := testDatabaseURL(t)
	schema := testSchema(t, dbURL)
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q := pgx.Identifier{schema}.Sanitize()
	for _, sql := range []string{
		"CREATE SCHEMA " + q,
		"CREATE TABLE " + q + `.users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text, username text UNIQUE)`,
		"INSERT INTO " + q + `.users (username) VALUES ('Ada'), ('ada'), ('ADA'), ('bob'), ('Bob'), ('carol'), (NULL), (NULL)`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	s := openUnmigrated(t, dbURL, schema)
	err = s.Migrate(ctx)
	if err == nil {
		t.Fatal("Migrate with usernames that differ only in case = nil, want an error naming them")
	}
	for _, want := range []string{"0002_username_ci", "2 group(s)", "'ADA', 'Ada', 'ada'", "'Bob', 'bob'", "rename"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Migrate error = %q, want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "carol") {
		t.Errorf("Migrate error = %q names carol, who has no duplicate", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+q+".users WHERE username IS NOT NULL").Scan(&n); err != nil || n != 6 {
		t.Errorf("usernames after the failed migration = %d, %v, want all 6 kept", n, err)
	}

	if _, err := conn.Exec(ctx, "UPDATE "+q+".users SET username = username || '_' || substr(id::text, 1, 8) WHERE username IN ('ADA', 'ada', 'bob')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate after renaming = %v, want nil", err)
	}
	checkSchema(t, s)
}
