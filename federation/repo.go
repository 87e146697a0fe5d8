package federation

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Statements. Tables are unqualified: every connection's search_path is the
// configured schema. Each is prepared once per connection and cached.
const (
	sqlFindByID          = `SELECT ` + userColumns + ` FROM users u WHERE u.id = $1`
	sqlFindByFirebaseUID = `SELECT ` + userColumns + ` FROM users u WHERE u.firebase_uid = $1`
	sqlFindByEmail       = `SELECT ` + userColumns + ` FROM users u WHERE lower(u.email) = lower($1) AND u.deleted_at IS NULL`
	sqlFindByUsername    = `SELECT ` + userColumns + ` FROM users u WHERE lower(u.username) = lower($1)`

	sqlCreate = `INSERT INTO users AS u (id, firebase_uid, email, username, user_type, is_active, token_balance, federation_status)
	VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, $4, coalesce($5, 'user'), $6, $7, coalesce($8, 'active'))
	RETURNING ` + userColumns

	sqlSoftDelete = `UPDATE users u SET deleted_at = now(), updated_at = now()
	WHERE u.id = $1 AND u.deleted_at IS NULL RETURNING ` + userColumns
	// Restoring a live row changes nothing, so that a retry is harmless.
	sqlRestore = `UPDATE users u SET deleted_at = NULL,
		updated_at = CASE WHEN u.deleted_at IS NULL THEN u.updated_at ELSE now() END
	WHERE u.id = $1 RETURNING ` + userColumns
	sqlHardDelete      = `DELETE FROM users u WHERE u.id = $1 RETURNING coalesce(u.firebase_uid, '')`
	sqlUpdateLastLogin = `UPDATE users u SET last_login = $2, updated_at = now() WHERE u.id = $1 RETURNING ` + userColumns

	// The balance statements return the row after the change and the
	// balance before it. Each is one statement: the row lock its UPDATE
	// takes makes concurrent changes queue, and each re-checks its
	// condition on the row as the previous one left it, so none is lost,
	// a decrement never takes the balance below zero and an increment
	// never past the largest bigint (both then change nothing).
	sqlSetBalance = `UPDATE users u SET token_balance = $2, updated_at = now()
	FROM (SELECT id, token_balance FROM users WHERE id = $1 FOR UPDATE) old
	WHERE u.id = old.id RETURNING ` + userColumns + `, old.token_balance`
	sqlIncrementBalance = `UPDATE users u SET token_balance = u.token_balance + $2, updated_at = now()
	WHERE u.id = $1 AND u.token_balance <= 9223372036854775807 - $2 RETURNING ` + userColumns + `, u.token_balance - $2`
	sqlDecrementBalance = `UPDATE users u SET token_balance = u.token_balance - $2, updated_at = now()
	WHERE u.id = $1 AND u.token_balance >= $2 RETURNING ` + userColumns + `, u.token_balance + $2`
	sqlExists = `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`

	// Linking keeps a disabled account disabled.
	sqlLinkColumns = `UPDATE users u SET firebase_uid = $2,
		federation_status = CASE WHEN u.federation_status = 'disabled' THEN 'disabled' ELSE 'active' END,
		last_synced_at = $3, sync_attempts = 0, last_sync_error = NULL, updated_at = now()`
	sqlLinkWhere = `
	WHERE u.id = $1 AND u.deleted_at IS NULL `
	sqlLinkSet = sqlLinkColumns + sqlLinkWhere
	// Link is idempotent: linking again to the same uid succeeds.
	sqlLink = sqlLinkSet + `AND (u.firebase_uid IS NULL OR u.firebase_uid = $2) RETURNING ` + userColumns
	// EnsureUser links only an unlinked account, so that of concurrent
	// requests exactly one links it and the others find it linked.
	sqlLinkUnlinked = sqlLinkSet + `AND u.firebase_uid IS NULL RETURNING ` + userColumns
	sqlLinkState    = `SELECT coalesce(firebase_uid, ''), deleted_at IS NOT NULL FROM users WHERE id = $1`

	sqlMarkFailed = `UPDATE users u SET
		federation_status = CASE WHEN u.federation_status = 'disabled' THEN 'disabled' ELSE 'failed' END,
		sync_attempts = u.sync_attempts + 1, last_sync_error = $2, last_synced_at = $3, updated_at = now()
	WHERE u.id = $1 RETURNING ` + userColumns

	sqlListFailed = `SELECT ` + userColumns + ` FROM users u
	WHERE u.federation_status = 'failed' AND u.deleted_at IS NULL
	ORDER BY u.updated_at, u.id LIMIT $1`
)

// defaultListLimit is the page size ListFailedFederations uses for a limit
// of zero or less.
const defaultListLimit = 100

// Repo reads and writes user rows. Every change invalidates the cache
// entries of the users it touched. A Repo from Store.Repo runs each call
// on its own pooled connection; the one WithTx hands out runs them in the
// transaction and invalidates after the commit. Methods return ErrNotFound
// when no row matches, ErrConflict when a unique rule is broken.
// FindByID, FindByFirebaseUID and FindByUsername return soft-deleted rows
// too (DeletedAt set); FindByEmail sees live rows only.
type Repo struct {
	s     *Store
	tx    pgx.Tx    // nil outside WithTx
	stale *[]string // in a transaction: cache keys to invalidate after it
}

// Repo returns the repository on the Store's pool. It is safe for
// concurrent use.
func (s *Store) Repo() *Repo { return &Repo{s: s} }

// WithTx runs fn in one transaction: everything fn does through tx commits
// if fn returns nil, and rolls back if it returns an error or panics. The
// changed users' cache entries are invalidated after the transaction. tx
// must not be used after fn returns, nor by several goroutines at once.
func (s *Store) WithTx(ctx context.Context, fn func(tx *Repo) error) (err error) {
	actx, cancel := context.WithTimeout(ctx, s.cfg.AcquireTimeout)
	c, err := s.pool.Acquire(actx)
	cancel()
	if err != nil {
		return translate(ctx, fmt.Errorf("acquire connection: %w", err))
	}
	defer c.Release()
	tx, err := c.Begin(ctx)
	if err != nil {
		return translate(ctx, fmt.Errorf("begin: %w", err))
	}
	var stale []string
	defer func() {
		// After a commit this is a no-op; after a panic or an error it
		// ends the transaction before the connection goes back.
		_ = tx.Rollback(context.WithoutCancel(ctx))
		// Also after a rollback: a commit whose answer was lost may
		// have happened.
		s.invalidate(ctx, stale...)
	}()
	if err := fn(&Repo{s: s, tx: tx, stale: &stale}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return translate(ctx, fmt.Errorf("commit: %w", err))
	}
	return nil
}

// run runs fn on the transaction or on a pooled connection, under the
// query timeout, and translates its error.
func (r *Repo) run(ctx context.Context, op string, fn func(ctx context.Context, q querier) error) error {
	var err error
	if r.tx != nil {
		qctx, cancel := context.WithTimeout(ctx, r.s.cfg.QueryTimeout)
		err = translate(ctx, fn(qctx, r.tx))
		cancel()
	} else {
		err = r.s.withConn(ctx, fn)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// changed invalidates keys now, or after the transaction.
func (r *Repo) changed(ctx context.Context, keys ...string) {
	if r.tx != nil {
		*r.stale = append(*r.stale, keys...)
		return
	}
	r.s.invalidate(ctx, keys...)
}

// one runs a statement returning one user row.
func (r *Repo) one(ctx context.Context, op, sql string, args ...any) (User, error) {
	var u User
	err := r.run(ctx, op, func(ctx context.Context, q querier) error {
		var err error
		u, err = scanUser(q.QueryRow(ctx, sql, args...))
		return err
	})
	return u, err
}

// write runs a statement changing one user row, and invalidates it.
func (r *Repo) write(ctx context.Context, op, sql string, args ...any) (User, error) {
	u, err := r.one(ctx, op, sql, args...)
	if err != nil {
		return User{}, err
	}
	r.changed(ctx, keysOf(u)...)
	return u, nil
}

// FindByID returns the row with id.
func (r *Repo) FindByID(ctx context.Context, id string) (User, error) {
	if !validUUID(id) {
		return User{}, fmt.Errorf("find user by id: %w", ErrNotFound)
	}
	return r.one(ctx, "find user by id", sqlFindByID, id)
}

// FindByFirebaseUID returns the row linked to the Firebase uid.
func (r *Repo) FindByFirebaseUID(ctx context.Context, uid string) (User, error) {
	return r.one(ctx, "find user by firebase uid", sqlFindByFirebaseUID, uid)
}

// FindByEmail returns the live row with the email, compared
// case-insensitively.
func (r *Repo) FindByEmail(ctx context.Context, email string) (User, error) {
	return r.one(ctx, "find user by email", sqlFindByEmail, email)
}

// FindByUsername returns the row with the username, compared
// case-insensitively (usernames are unique regardless of case).
func (r *Repo) FindByUsername(ctx context.Context, username string) (User, error) {
	return r.one(ctx, "find user by username", sqlFindByUsername, username)
}

// Create inserts a row and returns it as stored.
func (r *Repo) Create(ctx context.Context, nu NewUser) (User, error) {
	if nu.ID != "" && !validUUID(nu.ID) {
		return User{}, fmt.Errorf("create user: id %q is not a uuid", nu.ID)
	}
	if nu.FederationStatus != "" && !nu.FederationStatus.stored() {
		return User{}, fmt.Errorf("create user: federation status %q cannot be stored", nu.FederationStatus)
	}
	if nu.TokenBalance < 0 {
		return User{}, fmt.Errorf("create user: %w", ErrInsufficientBalance)
	}
	var status *string
	if nu.FederationStatus != "" {
		status = nullable(string(nu.FederationStatus))
	}
	return r.write(ctx, "create user", sqlCreate, nullable(nu.ID), nullable(nu.FirebaseUID), nullable(nu.Email),
		nullable(nu.Username), nullable(nu.UserType), !nu.Inactive, nu.TokenBalance, status)
}

// Update writes the non-nil fields of ch and returns the row as stored.
// Without changes it returns the row as it is.
func (r *Repo) Update(ctx context.Context, id string, ch Changes) (User, error) {
	const op = "update user"
	if !validUUID(id) {
		return User{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	args := []any{id}
	var sets []string
	set := func(col string, v any) {
		args = append(args, v)
		sets = append(sets, col+" = $"+strconv.Itoa(len(args)))
	}
	if ch.Email != nil {
		set("email", nullable(*ch.Email))
	}
	if ch.Username != nil {
		set("username", nullable(*ch.Username))
	}
	if ch.UserType != nil {
		if *ch.UserType == "" {
			return User{}, fmt.Errorf("%s: user type must not be empty", op)
		}
		set("user_type", *ch.UserType)
	}
	if ch.IsActive != nil {
		set("is_active", *ch.IsActive)
	}
	if ch.FederationStatus != nil {
		if !ch.FederationStatus.stored() {
			return User{}, fmt.Errorf("%s: federation status %q cannot be stored", op, *ch.FederationStatus)
		}
		set("federation_status", string(*ch.FederationStatus))
	}
	if ch.SyncAttempts != nil {
		set("sync_attempts", *ch.SyncAttempts)
	}
	if ch.LastSyncError != nil {
		set("last_sync_error", nullable(*ch.LastSyncError))
	}
	if ch.LastSyncedAt != nil {
		var t *time.Time
		if !ch.LastSyncedAt.IsZero() {
			t = ch.LastSyncedAt
		}
		set("last_synced_at", t)
	}
	if len(sets) == 0 {
		return r.FindByID(ctx, id)
	}
	// The set of statements is bounded (one per combination of fields), so
	// the statement cache stays small.
	sql := "UPDATE users u SET " + strings.Join(sets, ", ") + ", updated_at = now() WHERE u.id = $1 RETURNING " + userColumns
	return r.write(ctx, op, sql, args...)
}

// SoftDelete marks the live row with id deleted; EnsureUser refuses it
// from then on, and its email may be used by a new row. A row deleted
// already is ErrNotFound.
func (r *Repo) SoftDelete(ctx context.Context, id string) (User, error) {
	if !validUUID(id) {
		return User{}, fmt.Errorf("soft delete user: %w", ErrNotFound)
	}
	return r.write(ctx, "soft delete user", sqlSoftDelete, id)
}

// Restore undoes a soft delete: the row is live again, and EnsureUser
// serves it. A live row is returned as it is. If a live row has taken its
// email meanwhile, the error wraps ErrConflict and ErrEmailTaken.
func (r *Repo) Restore(ctx context.Context, id string) (User, error) {
	if !validUUID(id) {
		return User{}, fmt.Errorf("restore user: %w", ErrNotFound)
	}
	return r.write(ctx, "restore user", sqlRestore, id)
}

// HardDelete removes the row with id for good.
func (r *Repo) HardDelete(ctx context.Context, id string) error {
	const op = "hard delete user"
	if !validUUID(id) {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	var uid string
	err := r.run(ctx, op, func(ctx context.Context, q querier) error {
		return q.QueryRow(ctx, sqlHardDelete, id).Scan(&uid)
	})
	if err != nil {
		return err
	}
	r.changed(ctx, keysOf(User{ID: id, FirebaseUID: uid})...)
	return nil
}

// UpdateLastLogin sets last_login to at, and updated_at to now, as every
// write of a column does. EnsureUser does not call it: it batches
// last_login writes (see Run).
func (r *Repo) UpdateLastLogin(ctx context.Context, id string, at time.Time) (User, error) {
	if !validUUID(id) {
		return User{}, fmt.Errorf("update last login: %w", ErrNotFound)
	}
	return r.write(ctx, "update last login", sqlUpdateLastLogin, id, at)
}

// BalanceOp is a change of the token balance.
type BalanceOp string

// Balance operations.
const (
	BalanceSet       BalanceOp = "set"
	BalanceIncrement BalanceOp = "increment"
	BalanceDecrement BalanceOp = "decrement"
)

// ChangeTokenBalance applies op with the amount n to the token balance in
// one atomic statement and returns the row after it and the balance
// before it. set takes any n ≥ 0, increment and decrement a positive one.
// A decrement below zero returns ErrInsufficientBalance and an increment
// past the largest int64 ErrBalanceOverflow; neither changes anything.
// Concurrent changes never take the balance below zero and none is lost.
func (r *Repo) ChangeTokenBalance(ctx context.Context, id string, op BalanceOp, n int64) (u User, previous int64, err error) {
	name := string(op) + " token balance"
	var sql string
	switch {
	case op == BalanceSet && n < 0:
		return User{}, 0, fmt.Errorf("%s: %d: %w", name, n, ErrInsufficientBalance)
	case op == BalanceSet:
		sql = sqlSetBalance
	case op != BalanceIncrement && op != BalanceDecrement:
		return User{}, 0, fmt.Errorf("change token balance: unknown operation %q", op)
	case n <= 0:
		return User{}, 0, fmt.Errorf("%s: amount %d must be positive", name, n)
	case op == BalanceIncrement:
		sql = sqlIncrementBalance
	default:
		sql = sqlDecrementBalance
	}
	if !validUUID(id) {
		return User{}, 0, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	err = r.run(ctx, name, func(ctx context.Context, q querier) error {
		var err error
		u, err = scanUser(q.QueryRow(ctx, sql, id, n), &previous)
		if !errors.Is(err, pgx.ErrNoRows) || op == BalanceSet {
			return err
		}
		// Refused or missing: a read, to tell which.
		var exists bool
		if err := q.QueryRow(ctx, sqlExists, id).Scan(&exists); err != nil {
			return err
		}
		switch {
		case !exists:
			return ErrNotFound
		case op == BalanceDecrement:
			return ErrInsufficientBalance
		}
		return ErrBalanceOverflow
	})
	if err != nil {
		return User{}, 0, err
	}
	r.changed(ctx, keysOf(u)...)
	return u, previous, nil
}

// SetTokenBalance sets the token balance to n, which must not be negative.
func (r *Repo) SetTokenBalance(ctx context.Context, id string, n int64) (User, error) {
	u, _, err := r.ChangeTokenBalance(ctx, id, BalanceSet, n)
	return u, err
}

// IncrementTokenBalance adds n (positive) to the token balance atomically
// and returns the row after it (see ChangeTokenBalance).
func (r *Repo) IncrementTokenBalance(ctx context.Context, id string, n int64) (User, error) {
	u, _, err := r.ChangeTokenBalance(ctx, id, BalanceIncrement, n)
	return u, err
}

// DecrementTokenBalance takes n (positive) from the token balance
// atomically and returns the row after it. If the balance is less than n
// it returns ErrInsufficientBalance and changes nothing (see
// ChangeTokenBalance).
func (r *Repo) DecrementTokenBalance(ctx context.Context, id string, n int64) (User, error) {
	u, _, err := r.ChangeTokenBalance(ctx, id, BalanceDecrement, n)
	return u, err
}

// Link links the live row userID to the Firebase uid: federation_status
// becomes active (a disabled account stays disabled) and the sync error is
// cleared. It is idempotent. A row linked to another uid, or a uid linked
// to another row, is ErrConflict; a soft-deleted row is ErrUserDisabled.
// Link does not look at emails: the caller vouches for the match.
func (r *Repo) Link(ctx context.Context, userID, firebaseUID string) (User, error) {
	const op = "link user"
	if firebaseUID == "" {
		return User{}, fmt.Errorf("%s: empty firebase uid", op)
	}
	if !validUUID(userID) {
		return User{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	var u User
	err := r.run(ctx, op, func(ctx context.Context, q querier) error {
		var err error
		u, err = r.s.link(ctx, q, userID, firebaseUID)
		return err
	})
	if err != nil {
		return User{}, err
	}
	r.changed(ctx, keysOf(u)...)
	return u, nil
}

// link runs sqlLink and explains a refusal.
func (s *Store) link(ctx context.Context, q querier, userID, firebaseUID string) (User, error) {
	u, err := scanUser(q.QueryRow(ctx, sqlLink, userID, firebaseUID, s.now()))
	if !errors.Is(err, pgx.ErrNoRows) {
		return u, err
	}
	var uid string
	var deleted bool
	if err := q.QueryRow(ctx, sqlLinkState, userID).Scan(&uid, &deleted); err != nil {
		return User{}, err
	}
	if deleted {
		return User{}, ErrUserDisabled
	}
	return User{}, fmt.Errorf("%w: linked to another firebase uid", ErrConflict)
}

// MarkFailed records a failed federation on the row: federation_status
// failed (a disabled account stays disabled), sync_attempts one more and
// last_sync_error reason.
func (r *Repo) MarkFailed(ctx context.Context, id, reason string) (User, error) {
	if !validUUID(id) {
		return User{}, fmt.Errorf("mark federation failed: %w", ErrNotFound)
	}
	return r.write(ctx, "mark federation failed", sqlMarkFailed, id, nullable(reason), r.s.now())
}

// ListFailedFederations returns up to limit live rows whose federation
// failed, the least recently changed first; a limit of zero or less means
// 100.
func (r *Repo) ListFailedFederations(ctx context.Context, limit int) ([]User, error) {
	if limit <= 0 {
		limit = defaultListLimit
	}
	var out []User
	err := r.run(ctx, "list failed federations", func(ctx context.Context, q querier) error {
		rows, err := q.Query(ctx, sqlListFailed, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) { return scanUser(row) })
		return err
	})
	return out, err
}
