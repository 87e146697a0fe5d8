package federation

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// LegacyColumns names the columns of the users table in which the service
// authgate replaces kept its accounts' passwords. authgate's migrations do
// not create them: they belong to the old service's table, and are read
// only to move its accounts to Firebase at their next sign-in.
type LegacyColumns struct {
	// PasswordHash holds each account's password hash, as text; NULL means
	// the account has no password (or was moved already). Required.
	PasswordHash string
	// EmailVerified is a boolean column saying whether the account's email
	// was verified; "" means there is none, and no email counts as
	// verified.
	EmailVerified string
}

// maxIdentifier is PostgreSQL's NAMEDATALEN - 1.
const maxIdentifier = 63

// validIdentifier reports whether s is a plain lower-case SQL identifier,
// so that a configured column name is what it looks like. It is quoted
// anyway.
func validIdentifier(s string) bool {
	if s == "" || len(s) > maxIdentifier || (s[0] < 'a' || s[0] > 'z') && s[0] != '_' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if b := s[i]; (b < 'a' || b > 'z') && (b < '0' || b > '9') && b != '_' {
			return false
		}
	}
	return true
}

// Validate reports every problem, each prefixed with the name of the field
// as a configuration key.
func (c LegacyColumns) Validate() error {
	var errs []error
	if !validIdentifier(c.PasswordHash) {
		errs = append(errs, fmt.Errorf("column: %q must be a column name (lower-case letters, digits and _, up to %d)", c.PasswordHash, maxIdentifier))
	}
	if c.EmailVerified != "" && !validIdentifier(c.EmailVerified) {
		errs = append(errs, fmt.Errorf("email_verified_column: %q must be a column name (lower-case letters, digits and _, up to %d) or empty", c.EmailVerified, maxIdentifier))
	}
	if c.EmailVerified != "" && c.EmailVerified == c.PasswordHash {
		errs = append(errs, errors.New("email_verified_column: must differ from column"))
	}
	return errors.Join(errs...)
}

// LegacyAccount is a live account of the old service that has a password
// hash and is not linked to a Firebase user yet.
type LegacyAccount struct {
	User User
	// PasswordHash is the hash as stored; its format is the caller's to
	// check.
	PasswordHash string
	// EmailVerified is the account's verified-email state, false without
	// LegacyColumns.EmailVerified.
	EmailVerified bool
}

// FindLegacyAccount returns the live account with email (compared
// case-insensitively) that has a password hash in cols.PasswordHash and no
// Firebase uid, or ErrNotFound. A column that does not exist is an error of
// its own, not ErrNotFound.
func (r *Repo) FindLegacyAccount(ctx context.Context, cols LegacyColumns, email string) (LegacyAccount, error) {
	const op = "find legacy account"
	if err := cols.Validate(); err != nil {
		return LegacyAccount{}, fmt.Errorf("%s: %w", op, err)
	}
	hash := "u." + pgx.Identifier{cols.PasswordHash}.Sanitize()
	verified := "false"
	if cols.EmailVerified != "" {
		verified = "coalesce(u." + pgx.Identifier{cols.EmailVerified}.Sanitize() + ", false)"
	}
	// One statement per configuration: the statement cache stays small.
	sql := `SELECT ` + userColumns + `, ` + hash + `::text, ` + verified + ` FROM users u
	WHERE lower(u.email) = lower($1) AND u.deleted_at IS NULL AND u.firebase_uid IS NULL AND ` + hash + ` IS NOT NULL`
	var a LegacyAccount
	err := r.run(ctx, op, func(ctx context.Context, q querier) error {
		var err error
		a.User, err = scanUser(q.QueryRow(ctx, sql, email), &a.PasswordHash, &a.EmailVerified)
		return err
	})
	if err != nil {
		return LegacyAccount{}, err
	}
	return a, nil
}

// CompleteMigration links the legacy account id to the Firebase user uid
// that was made for it, as Link does, and unless keepHash sets its password
// hash to NULL, in one statement: from then on Firebase holds the password,
// and a password changed there cannot be undone by the old hash. It
// returns ErrNotFound when id is no longer a live account without a
// Firebase uid (moved or deleted meanwhile), and ErrConflict when the uid
// is linked to another row. A column that does not allow NULL fails; set
// keepHash for such a table.
func (r *Repo) CompleteMigration(ctx context.Context, cols LegacyColumns, id, firebaseUID string, keepHash bool) (User, error) {
	const op = "complete legacy migration"
	if err := cols.Validate(); err != nil {
		return User{}, fmt.Errorf("%s: %w", op, err)
	}
	if firebaseUID == "" {
		return User{}, fmt.Errorf("%s: empty firebase uid", op)
	}
	if !validUUID(id) {
		return User{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	clear := ""
	if !keepHash {
		clear = ", " + pgx.Identifier{cols.PasswordHash}.Sanitize() + " = NULL"
	}
	sql := sqlLinkColumns + clear + sqlLinkWhere + `AND u.firebase_uid IS NULL RETURNING ` + userColumns
	return r.write(ctx, op, sql, id, firebaseUID, r.s.now())
}
