package federation

import (
	"errors"
	"strings"
	"testing"
)

func TestLegacyColumnsValidate(t *testing.T) {
	tests := []struct {
		name string
		give LegacyColumns
		want []string // substrings of the error; none means valid
	}{
		{name: "default", give: LegacyColumns{PasswordHash: "password_hash"}},
		{name: "with email verified", give: LegacyColumns{PasswordHash: "pw", EmailVerified: "is_verified"}},
		{name: "empty", give: LegacyColumns{}, want: []string{"column:"}},
		{name: "quote", give: LegacyColumns{PasswordHash: `pw"; drop table users; --`}, want: []string{"column:"}},
		{name: "upper case", give: LegacyColumns{PasswordHash: "PasswordHash"}, want: []string{"column:"}},
		{name: "too long", give: LegacyColumns{PasswordHash: strings.Repeat("a", 64)}, want: []string{"column:"}},
		{name: "bad email column", give: LegacyColumns{PasswordHash: "pw", EmailVerified: "e-v"}, want: []string{"email_verified_column:"}},
		{name: "same column", give: LegacyColumns{PasswordHash: "pw", EmailVerified: "pw"}, want: []string{"email_verified_column: must differ"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if len(tt.want) == 0 && err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
			if len(tt.want) > 0 && err == nil {
				t.Errorf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

// legacyFixture is a Store whose users table has the old service's
// password and verified-email columns.
func legacyFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, fixtureOpts{})
	if _, err := f.s.pool.Exec(testContext(t), `ALTER TABLE users ADD COLUMN password_hash text, ADD COLUMN email_verified boolean`); err != nil {
		t.Fatal(err)
	}
	return f
}

// legacyRow inserts a row with the old service's columns and returns its id.
func (f *fixture) legacyRow(t *testing.T, email, hash string, verified bool, extra string) string {
	t.Helper()
	var id string
	var h *string
	if hash != "" {
		h = &hash
	}
	sql := `INSERT INTO users (email, password_hash, email_verified) VALUES ($1, $2, $3) RETURNING id::text`
	if err := f.s.pool.QueryRow(testContext(t), sql, email, h, verified).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if extra != "" {
		if _, err := f.s.pool.Exec(testContext(t), `UPDATE users SET `+extra+` WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

var legacyCols = LegacyColumns{PasswordHash: "password_hash", EmailVerified: "email_verified"}

func TestFindLegacyAccount(t *testing.T) {
	f := legacyFixture(t)
	ctx := testContext(t)
	r := f.s.Repo()
	legacy := f.legacyRow(t, "Old@Example.com", "$2a$10$hash", true, "")
	f.legacyRow(t, "linked@example.com", "$2a$10$hash", true, "firebase_uid = 'uid-linked'")
	f.legacyRow(t, "nohash@example.com", "", true, "")
	f.legacyRow(t, "deleted@example.com", "$2a$10$hash", true, "deleted_at = now()")

	got, err := r.FindLegacyAccount(ctx, legacyCols, "old@EXAMPLE.com")
	if err != nil {
		t.Fatalf("FindLegacyAccount: %v", err)
	}
	if got.User.ID != legacy || got.PasswordHash != "$2a$10$hash" || !got.EmailVerified {
		t.Errorf("FindLegacyAccount = %+v, want row %s with its hash, verified", got, legacy)
	}
	got, err = r.FindLegacyAccount(ctx, LegacyColumns{PasswordHash: "password_hash"}, "old@example.com")
	if err != nil || got.EmailVerified {
		t.Errorf("FindLegacyAccount without an email_verified column = %+v, %v, want unverified", got, err)
	}

	for _, email := range []string{"linked@example.com", "nohash@example.com", "deleted@example.com", "unknown@example.com"} {
		if _, err := r.FindLegacyAccount(ctx, legacyCols, email); !errors.Is(err, ErrNotFound) {
			t.Errorf("FindLegacyAccount(%s) = %v, want ErrNotFound", email, err)
		}
	}
	_, err = r.FindLegacyAccount(ctx, LegacyColumns{PasswordHash: "no_such_column"}, "old@example.com")
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("FindLegacyAccount with a missing column = %v, want an error other than ErrNotFound", err)
	}
}

func TestCompleteMigration(t *testing.T) {
	f := legacyFixture(t)
	ctx := testContext(t)
	r := f.s.Repo()
	id := f.legacyRow(t, "old@example.com", "$2a$10$hash", true, "")
	kept := f.legacyRow(t, "kept@example.com", "$2a$10$kept", true, "")
	f.legacyRow(t, "other@example.com", "", true, "firebase_uid = 'uid-taken'")

	u, err := r.CompleteMigration(ctx, legacyCols, id, id, false)
	if err != nil {
		t.Fatalf("CompleteMigration: %v", err)
	}
	if u.FirebaseUID != id || u.FederationStatus != StatusActive {
		t.Errorf("CompleteMigration = %+v, want linked to %s and active", u, id)
	}
	if n := f.count(t, `SELECT count(*) FROM users WHERE id = $1 AND password_hash IS NULL`, id); n != 1 {
		t.Error("password hash kept, want NULL after the migration")
	}
	if _, err := r.CompleteMigration(ctx, legacyCols, id, id, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("CompleteMigration again = %v, want ErrNotFound (linked already)", err)
	}

	if _, err := r.CompleteMigration(ctx, legacyCols, kept, "uid-taken", true); !errors.Is(err, ErrConflict) {
		t.Errorf("CompleteMigration to a uid of another row = %v, want ErrConflict", err)
	}
	if _, err := r.CompleteMigration(ctx, legacyCols, kept, kept, true); err != nil {
		t.Fatalf("CompleteMigration keeping the hash: %v", err)
	}
	if n := f.count(t, `SELECT count(*) FROM users WHERE id = $1 AND password_hash = '$2a$10$kept'`, kept); n != 1 {
		t.Error("password hash cleared, want it kept")
	}
	if _, err := r.CompleteMigration(ctx, legacyCols, "not-a-uuid", "uid", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("CompleteMigration(not a uuid) = %v, want ErrNotFound", err)
	}
}
