package federation

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// MigrationCounts is how far the user table has moved to Firebase. Soft
// deleted rows are not counted.
type MigrationCounts struct {
	// Users are the live rows.
	Users int64 `json:"total"`
	// Linked rows have a Firebase uid.
	Linked int64 `json:"linked_to_firebase"`
	// LegacyOnly rows have none yet.
	LegacyOnly int64 `json:"legacy_only"`
	// LegacyWithPasswordHash are the legacy-only rows that still hold a
	// password hash to move; nil when no hash column was given.
	LegacyWithPasswordHash *int64 `json:"legacy_with_password_hash"`
}

// MigrationCounts counts the live rows, in one statement. hashColumn is
// the old service's password hash column (auth_api.legacy_passwords.column);
// "" leaves LegacyWithPasswordHash nil. A column that does not exist is an
// error.
func (r *Repo) MigrationCounts(ctx context.Context, hashColumn string) (MigrationCounts, error) {
	const op = "count migration"
	sql := `SELECT count(*), count(*) FILTER (WHERE u.firebase_uid IS NOT NULL), count(*) FILTER (WHERE u.firebase_uid IS NULL)`
	if hashColumn != "" {
		if err := (LegacyColumns{PasswordHash: hashColumn}).Validate(); err != nil {
			return MigrationCounts{}, fmt.Errorf("%s: %w", op, err)
		}
		sql += `, count(*) FILTER (WHERE u.firebase_uid IS NULL AND u.` + pgx.Identifier{hashColumn}.Sanitize() + ` IS NOT NULL)`
	} else {
		sql += `, 0::bigint`
	}
	sql += ` FROM users u WHERE u.deleted_at IS NULL`
	var c MigrationCounts
	var hashed int64
	err := r.run(ctx, op, func(ctx context.Context, q querier) error {
		return q.QueryRow(ctx, sql).Scan(&c.Users, &c.Linked, &c.LegacyOnly, &hashed)
	})
	if err != nil {
		return MigrationCounts{}, err
	}
	if hashColumn != "" {
		c.LegacyWithPasswordHash = &hashed
	}
	return c, nil
}
