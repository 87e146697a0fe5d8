package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors. Errors returned by this package wrap at most these and
// the caller's context errors for branching; pgx's own errors are
// translated here and never need inspecting by callers.
var (
	// ErrNotFound: no row matches.
	ErrNotFound = errors.New("user not found")
	// ErrConflict: the change would break a unique rule (Firebase uid,
	// live email, username), or links an account that is linked to
	// another Firebase user.
	ErrConflict = errors.New("user conflict")
	// ErrEmailTaken: a live row has the email already. Errors that wrap
	// it wrap ErrConflict too.
	ErrEmailTaken = errors.New("email taken")
	// ErrUsernameTaken: a row has the username already. Errors that wrap
	// it wrap ErrConflict too.
	ErrUsernameTaken = errors.New("username taken")
	// ErrInsufficientBalance: a decrement would take token_balance below
	// zero; nothing was changed.
	ErrInsufficientBalance = errors.New("insufficient token balance")
	// ErrBalanceOverflow: an increment would take token_balance past the
	// largest int64; nothing was changed.
	ErrBalanceOverflow = errors.New("token balance overflow")
	// ErrIdempotencyKeyReused: an idempotency key was sent again with
	// another request than the one it was first used for.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused for another request")
	// ErrNotFailed: a retry was asked for an account whose federation has
	// not failed.
	ErrNotFailed = errors.New("federation not failed")
	// ErrUserDisabled: the user row is disabled (is_active false or
	// federation_status disabled) or soft-deleted. The proxy answers 403.
	ErrUserDisabled = errors.New("user disabled")
	// ErrLinkRefused: a Firebase identity's email belongs to an existing
	// account it may not be linked to (its email is not verified, or the
	// account is linked to another Firebase user), and on_email_conflict is
	// deny. The proxy answers 403.
	ErrLinkRefused = errors.New("account link refused")
	// ErrUnknownUser: a legacy token names a user id that has no row (or
	// is not a uuid). The legacy service creates a row when it registers a
	// user, so this is an anomaly, not a first visit; the proxy answers 403.
	ErrUnknownUser = errors.New("unknown user")
	// ErrUnavailable: PostgreSQL cannot be reached (connection refused,
	// acquire or query timeout, connection lost). EnsureUser returns it only
	// when on_unavailable is deny; the proxy answers 503.
	ErrUnavailable = errors.New("user store unavailable")
	// ErrUnknownFirebaseUser: LinkUser was given a uid that no Firebase
	// user has.
	ErrUnknownFirebaseUser = errors.New("unknown firebase user")
	// ErrFirebaseUnavailable: Firebase's user records could not be read
	// (network, timeout, quota, server error, credentials); nothing was
	// learnt about the user.
	ErrFirebaseUnavailable = errors.New("firebase user records unavailable")
)

// translate turns a pgx error into this package's errors, keeping the
// cause for logs. parent is the caller's context: a deadline of the
// package's own (acquire or query timeout) means PostgreSQL is too slow or
// unreachable, while the caller's own cancellation is returned as it is.
func translate(parent context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if parent.Err() != nil {
		return fmt.Errorf("%w: %w", err, parent.Err())
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505": // unique_violation
			switch pe.ConstraintName {
			// authgate's names, and the ones PostgreSQL gives the
			// UNIQUE columns of a table the old service created.
			case "users_email_live_key", "users_email_key":
				return fmt.Errorf("%w: %w", ErrConflict, ErrEmailTaken)
			case "users_username_ci_key", "users_username_key":
				return fmt.Errorf("%w: %w", ErrConflict, ErrUsernameTaken)
			}
			return fmt.Errorf("%w: %s", ErrConflict, pe.ConstraintName)
		case pe.Code == "23514" && pe.ConstraintName == "users_token_balance_check":
			return ErrInsufficientBalance
		case pe.Code == "22P02": // invalid_text_representation: not a uuid
			return ErrNotFound
		case unavailableCode(pe.Code):
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	if unreachable(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// unavailableCode reports SQLSTATEs that mean the server cannot serve now,
// as opposed to a statement it refused.
func unavailableCode(code string) bool {
	return strings.HasPrefix(code, "08") || // connection exception
		strings.HasPrefix(code, "53") || // insufficient resources (too many connections, disk full)
		strings.HasPrefix(code, "57P") || // admin shutdown, crash shutdown, cannot connect now
		code == "57014" // query_canceled: statement_timeout on the server
}

// unreachable reports errors of the connection rather than of a statement:
// a failed connect, a network error, a connection lost mid-statement, a
// pgx timeout or a deadline of this package's own.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) ||
		errors.As(err, &ne) ||
		pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
