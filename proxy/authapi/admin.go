package authapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"firebase.google.com/go/v4/auth"
	"firebase.google.com/go/v4/errorutils"
)

// Errors of Accounts.
var (
	// ErrAccountExists: a Firebase user has the email (or the uid)
	// already.
	ErrAccountExists = errors.New("firebase account exists")
	// ErrAccountRefused: Firebase refused the new user's values (a
	// password its project policy does not accept, say).
	ErrAccountRefused = errors.New("firebase account refused")
)

// NewAccount is a Firebase user to create.
type NewAccount struct {
	// UID is the uid to give the user; "" lets Firebase choose one.
	UID           string
	Email         string
	EmailVerified bool
	Password      string
	// DisplayName is "" for none.
	DisplayName string
}

// Accounts manages Firebase users: the part of the Firebase Admin SDK the
// auth API uses. Implementations must be safe for concurrent use.
type Accounts interface {
	// CreateUser creates the user and returns its uid. The error wraps
	// ErrAccountExists, ErrAccountRefused or ErrFirebaseUnavailable.
	CreateUser(ctx context.Context, a NewAccount) (string, error)
	// DeleteUser deletes the user; a user that does not exist is no
	// error.
	DeleteUser(ctx context.Context, uid string) error
	// RevokeRefreshTokens ends every session of the user: its refresh
	// tokens stop working, and its ID tokens issued until now are revoked
	// (Firebase records the time, to the second).
	RevokeRefreshTokens(ctx context.Context, uid string) error
}

// FirebaseAccounts returns Accounts on an Admin SDK Auth client (see
// firebaseadmin.AuthClient). The SDK's errors are reduced to their kind
// and HTTP status, since some quote the values they refused (an email).
func FirebaseAccounts(c *auth.Client) Accounts { return firebaseAccounts{c} }

type firebaseAccounts struct{ c *auth.Client }

func (f firebaseAccounts) CreateUser(ctx context.Context, a NewAccount) (string, error) {
	u := (&auth.UserToCreate{}).Email(a.Email).EmailVerified(a.EmailVerified).Password(a.Password)
	if a.UID != "" {
		u = u.UID(a.UID)
	}
	if a.DisplayName != "" {
		u = u.DisplayName(a.DisplayName)
	}
	rec, err := f.c.CreateUser(ctx, u)
	switch {
	case err == nil:
		return rec.UID, nil
	case auth.IsEmailAlreadyExists(err), auth.IsUIDAlreadyExists(err):
		return "", fmt.Errorf("create firebase user: %w", ErrAccountExists)
	case errorutils.IsInvalidArgument(err):
		return "", fmt.Errorf("create firebase user: %w: %s", ErrAccountRefused, adminErrorKind(err))
	}
	return "", fmt.Errorf("create firebase user: %w: %s", ErrFirebaseUnavailable, adminErrorKind(err))
}

func (f firebaseAccounts) DeleteUser(ctx context.Context, uid string) error {
	err := f.c.DeleteUser(ctx, uid)
	if err == nil || auth.IsUserNotFound(err) {
		return nil
	}
	return fmt.Errorf("delete firebase user: %w: %s", ErrFirebaseUnavailable, adminErrorKind(err))
}

func (f firebaseAccounts) RevokeRefreshTokens(ctx context.Context, uid string) error {
	if err := f.c.RevokeRefreshTokens(ctx, uid); err != nil {
		return fmt.Errorf("revoke refresh tokens: %w: %s", ErrFirebaseUnavailable, adminErrorKind(err))
	}
	return nil
}

// adminErrorKind describes an Admin SDK error without its message.
func adminErrorKind(err error) string {
	kind := "error"
	for _, k := range []struct {
		is   func(error) bool
		name string
	}{
		{errorutils.IsInvalidArgument, "invalid argument"},
		{errorutils.IsUnavailable, "unavailable"},
		{errorutils.IsDeadlineExceeded, "deadline exceeded"},
		{errorutils.IsResourceExhausted, "resource exhausted"},
		{errorutils.IsUnauthenticated, "unauthenticated"},
		{errorutils.IsPermissionDenied, "permission denied"},
		{errorutils.IsNotFound, "not found"},
		{errorutils.IsInternal, "internal"},
	} {
		if k.is(err) {
			kind = k.name
			break
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		kind = "deadline exceeded"
	case errors.Is(err, context.Canceled):
		kind = "canceled"
	}
	if r := errorutils.HTTPResponse(err); r != nil {
		return fmt.Sprintf("%s, HTTP %d %s", kind, r.StatusCode, http.StatusText(r.StatusCode))
	}
	// A transport error (unreachable, no credentials) names the endpoint
	// and the cause, nothing of the user.
	var ue *url.Error
	if errors.As(err, &ue) {
		return kind + ": " + ue.Error()
	}
	return kind
}
