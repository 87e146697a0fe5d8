package federation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"firebase.google.com/go/v4/auth"
	"firebase.google.com/go/v4/errorutils"

	"github.com/authgate/authgate/internal/firebaseadmin"
)

// profileTimeout bounds one Firebase user lookup, the SDK's own retries
// included.
const profileTimeout = 10 * time.Second

// Profile is what federation reads of a Firebase user record.
type Profile struct {
	UID   string
	Email string
	// EmailVerified is Firebase's word that the user controls Email. Only
	// a verified email is ever linked to an account or written to a row.
	EmailVerified bool
	DisplayName   string
	Disabled      bool
}

// Profiles reads Firebase user records; it is the seam around the Firebase
// Admin SDK. Both methods return an error wrapping ErrNotFound when there
// is no such user (a malformed uid or email included), and one wrapping
// ErrFirebaseUnavailable when Firebase could not answer (network, timeout,
// quota, server error, credentials). Implementations must be safe for
// concurrent use.
type Profiles interface {
	ByUID(ctx context.Context, uid string) (Profile, error)
	ByEmail(ctx context.Context, email string) (Profile, error)
}

// NewFirebaseProfiles returns Profiles backed by the Firebase Admin SDK for
// projectID. credentialsFile is a service account key file; empty means
// Google's application default credentials. With
// FIREBASE_AUTH_EMULATOR_HOST set the SDK talks to the Auth Emulator and
// uses no credentials. It makes no request until the first lookup.
func NewFirebaseProfiles(ctx context.Context, projectID, credentialsFile string) (Profiles, error) {
	client, err := firebaseadmin.AuthClient(ctx, projectID, credentialsFile)
	if err != nil {
		return nil, fmt.Errorf("firebase profiles: %w", err)
	}
	return &firebaseProfiles{client: client}, nil
}

// firebaseProfiles reads user records through the Admin SDK.
type firebaseProfiles struct {
	client *auth.Client
}

// ByUID implements Profiles.
func (f *firebaseProfiles) ByUID(ctx context.Context, uid string) (Profile, error) {
	// The SDK's own rule: anything else is refused before any request, and
	// no user can have it.
	if uid == "" || len(uid) > 128 {
		return Profile{}, fmt.Errorf("get firebase user: %w", ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, profileTimeout)
	defer cancel()
	u, err := f.client.GetUser(ctx, uid)
	return profileOf(u, "get firebase user", err)
}

// ByEmail implements Profiles.
func (f *firebaseProfiles) ByEmail(ctx context.Context, email string) (Profile, error) {
	if local, domain, ok := strings.Cut(email, "@"); !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return Profile{}, fmt.Errorf("get firebase user by email: %w", ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, profileTimeout)
	defer cancel()
	u, err := f.client.GetUserByEmail(ctx, email)
	return profileOf(u, "get firebase user by email", err)
}

// profileOf translates the SDK's answer. Errors that say nothing about
// the user looked up (Firebase down or slow, quota, credentials) become
// ErrFirebaseUnavailable, so that callers do not blame the user for them.
func profileOf(u *auth.UserRecord, op string, err error) (Profile, error) {
	switch {
	case err == nil:
		return Profile{
			UID:           u.UID,
			Email:         u.Email,
			EmailVerified: u.EmailVerified,
			DisplayName:   u.DisplayName,
			Disabled:      u.Disabled,
		}, nil
	case auth.IsUserNotFound(err):
		return Profile{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errorutils.IsUnavailable(err), errorutils.IsDeadlineExceeded(err), errorutils.IsResourceExhausted(err),
		errorutils.IsInternal(err), errorutils.IsUnknown(err),
		errorutils.IsUnauthenticated(err), errorutils.IsPermissionDenied(err):
		return Profile{}, fmt.Errorf("%s: %w: %w", op, ErrFirebaseUnavailable, err)
	default:
		return Profile{}, fmt.Errorf("%s: %w", op, err)
	}
}
