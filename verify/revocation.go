package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"firebase.google.com/go/v4/auth"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/firebaseadmin"
)

// Revocation defaults and bounds.
const (
	defaultRevocationCacheTTL = time.Minute
	minRevocationCacheTTL     = time.Second
	// A Firebase ID token lives an hour: caching a user's state longer
	// would let a revoked token run out its life unchecked.
	maxRevocationCacheTTL = time.Hour
)

// ErrUserNotFound is returned by UserRecords for a uid that has no user:
// deleted, or never created. The revocation check treats its tokens as
// revoked.
var ErrUserNotFound = errors.New("firebase user not found")

// UserState is what the revocation check needs to know of a Firebase user.
// It is cached (and shared through Redis) as JSON.
type UserState struct {
	// Disabled is true when the account is disabled: none of its tokens is
	// accepted.
	Disabled bool `json:"disabled,omitempty"`
	// TokensValidAfter is when the user's tokens were last revoked (Firebase
	// keeps it to the second); tokens whose session started before it are
	// refused. Zero means never.
	TokensValidAfter time.Time `json:"tokens_valid_after"`
	// NotFound is true when the user does not exist. UserRecords reports
	// that as ErrUserNotFound; the check stores it here so that the answer
	// is cached like any other, and a deleted user's still-unexpired tokens
	// do not cost an Admin API call each.
	NotFound bool `json:"not_found,omitempty"`
}

// UserRecords looks up the revocation state of Firebase users. It is the
// seam around the Firebase Admin SDK; implementations must be safe for
// concurrent use.
type UserRecords interface {
	// UserState returns the state of the user uid, or an error wrapping
	// ErrUserNotFound if there is no such user.
	UserState(ctx context.Context, uid string) (UserState, error)
}

// NewFirebaseRecords returns UserRecords backed by the Firebase Admin SDK for
// projectID. credentialsFile is a service account key file; empty means
// Google's application default credentials (GOOGLE_APPLICATION_CREDENTIALS,
// or the metadata server, as with GKE Workload Identity). With
// FIREBASE_AUTH_EMULATOR_HOST set the SDK talks to the Auth Emulator instead
// and uses no credentials at all, which is why authgate refuses that
// variable outside emulator mode. The SDK builds and owns its HTTP
// transport. It makes no request until the first lookup.
func NewFirebaseRecords(ctx context.Context, projectID, credentialsFile string) (UserRecords, error) {
	client, err := firebaseadmin.AuthClient(ctx, projectID, credentialsFile)
	if err != nil {
		return nil, fmt.Errorf("firebase records: %w", err)
	}
	return &firebaseRecords{client: client}, nil
}

// firebaseRecords reads user records through the Admin SDK.
type firebaseRecords struct {
	client *auth.Client
}

// UserState implements UserRecords.
func (f *firebaseRecords) UserState(ctx context.Context, uid string) (UserState, error) {
	u, err := f.client.GetUser(ctx, uid)
	if auth.IsUserNotFound(err) {
		return UserState{}, fmt.Errorf("get firebase user: %w", ErrUserNotFound)
	}
	if err != nil {
		return UserState{}, fmt.Errorf("get firebase user: %w", err)
	}
	st := UserState{Disabled: u.Disabled}
	if u.TokensValidAfterMillis > 0 {
		st.TokensValidAfter = time.UnixMilli(u.TokensValidAfterMillis).UTC()
	}
	return st, nil
}

// RevocationConfig configures the check of Firebase tokens against their
// user's record: tokens revoked (Admin SDK RevokeRefreshTokens, a password
// change) and users disabled or deleted after the token was issued. A
// Firebase ID token stays valid for its hour otherwise. Each check needs the
// user's record from the Admin API, so records are cached: the zero value is
// off.
type RevocationConfig struct {
	// Enabled turns the check on. Off by default.
	Enabled bool `yaml:"enabled"`
	// CacheTTL is how long a user's record is cached, in this replica and
	// in Redis: at most one Admin API call per user per interval, and a
	// revocation may take this long to be noticed (an Invalidate of the
	// user notices it at once). Default 1m; between 1s and 1h, or 0 for
	// no cache (every check calls the Admin API).
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// CredentialsFile is a service account key file for the Admin API.
	// Empty means Google's application default credentials. Not used with
	// the Auth Emulator.
	CredentialsFile string `yaml:"credentials_file"`
}

// Validate reports every problem, each prefixed with its key. A disabled
// check is always valid.
func (c RevocationConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.CacheTTL != 0 && (c.CacheTTL < minRevocationCacheTTL || c.CacheTTL > maxRevocationCacheTTL) {
		errs = append(errs, fmt.Errorf("cache_ttl: %s must be 0 (no cache: one Admin API call per check) or between %s and %s",
			c.CacheTTL, minRevocationCacheTTL, maxRevocationCacheTTL))
	}
	if c.CredentialsFile != "" {
		if fi, err := os.Stat(c.CredentialsFile); err != nil {
			errs = append(errs, fmt.Errorf("credentials_file: %w", err))
		} else if !fi.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("credentials_file: %s is not a regular file", c.CredentialsFile))
		}
	}
	return errors.Join(errs...)
}

// revocation checks verified Firebase identities against their user's
// record. It is safe for concurrent use.
type revocation struct {
	records UserRecords
	cache   *cache.Cache[UserState] // nil: no caching
	ttl     time.Duration
}

// newRevocation builds the check. c caches user states by uid for
// cfg.CacheTTL (it shares concurrent lookups of one user too); nil means
// every check calls records.
func newRevocation(cfg RevocationConfig, records UserRecords, c *cache.Cache[UserState]) *revocation {
	if cfg.CacheTTL <= 0 {
		c = nil
	}
	return &revocation{records: records, cache: c, ttl: cfg.CacheTTL}
}

// check returns nil if id, a verified Firebase identity, is still good. It
// returns an error wrapping ErrRevoked (and ErrUserDisabled or
// ErrUserNotFound) if its user is disabled or gone or its session started
// before the user's tokens were revoked, ErrInvalid if id has no uid or
// session start, and ErrRevocationUnavailable if the user's record could not
// be read. The session start is the auth_time claim, else IssuedAt: auth_time
// stays that of the sign-in across the ID tokens refreshed from it, so that
// is what a revocation cuts off (as the Node Admin SDK does; the Go SDK uses
// iat, which lets through an ID token refreshed in the very second of the
// revocation, since Firebase keeps that time to the second).
func (r *revocation) check(ctx context.Context, id Identity) error {
	uid := id.FirebaseUID
	if uid == "" {
		return fmt.Errorf("check revocation: %w: no firebase uid", ErrInvalid)
	}
	since, err := id.SessionStart()
	if err != nil {
		return fmt.Errorf("check revocation: %w", err)
	}
	st, err := r.state(ctx, uid)
	if err != nil {
		return err
	}
	switch {
	case st.NotFound:
		return fmt.Errorf("check revocation: %w: %w", ErrRevoked, ErrUserNotFound)
	case st.Disabled:
		return fmt.Errorf("check revocation: %w: %w", ErrRevoked, ErrUserDisabled)
	case since.Before(st.TokensValidAfter):
		return fmt.Errorf("check revocation: %w: session started before the user's tokens were revoked", ErrRevoked)
	}
	return nil
}

// Invalidate forgets the cached state of the user uid, in Redis and in every
// replica (those that hear of it through the cache's invalidation messages),
// so that the next check reads it again.
func (r *revocation) Invalidate(ctx context.Context, uid string) error {
	if r.cache == nil {
		return nil
	}
	if err := r.cache.Invalidate(ctx, uid); err != nil {
		return fmt.Errorf("invalidate revocation state: %w", err)
	}
	return nil
}

// reload reads the state of the user uid from records and stores it in the
// cache for the TTL, replacing every replica's copy.
func (r *revocation) reload(ctx context.Context, uid string) error {
	st, err := r.records.UserState(ctx, uid)
	switch {
	case errors.Is(err, ErrUserNotFound):
		st = UserState{NotFound: true}
	case err != nil:
		return fmt.Errorf("reload user record: %w: %w", ErrRevocationUnavailable, err)
	}
	if r.cache == nil {
		return nil
	}
	if err := r.cache.Set(ctx, uid, st, r.ttl); err != nil {
		return fmt.Errorf("share user record: %w", err)
	}
	return nil
}

// state returns the user's state from the cache, or else from records.
func (r *revocation) state(ctx context.Context, uid string) (UserState, error) {
	load := func(ctx context.Context) (UserState, time.Duration, error) {
		st, err := r.records.UserState(ctx, uid)
		if errors.Is(err, ErrUserNotFound) {
			return UserState{NotFound: true}, r.ttl, nil
		}
		if err != nil {
			return UserState{}, 0, fmt.Errorf("%w: %w", ErrRevocationUnavailable, err)
		}
		return st, r.ttl, nil
	}
	var (
		st  UserState
		err error
	)
	if r.cache == nil {
		st, _, err = load(ctx)
	} else {
		st, err = r.cache.GetOrLoad(ctx, uid, load)
	}
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, ErrRevocationUnavailable), ctx.Err() != nil:
		// The caller went away, or records failed.
		return UserState{}, fmt.Errorf("check revocation: %w", err)
	default: // the cache's own failure, such as a load that panicked
		return UserState{}, fmt.Errorf("check revocation: %w: %w", ErrRevocationUnavailable, err)
	}
}

// SessionStart returns when the session of a Firebase identity started: its
// auth_time claim (which stays that of the sign-in across the ID tokens
// refreshed from it), else its iat. It is what a revocation cuts off: a
// session is revoked when it started before the user's TokensValidAfter. The
// error wraps ErrInvalid when neither claim is usable.
func (id Identity) SessionStart() (time.Time, error) {
	if !id.AuthTime.IsZero() {
		return id.AuthTime, nil
	}
	// An identity cached by an older version has auth_time in Claims only.
	v, ok := id.Claims["auth_time"]
	if !ok {
		if id.IssuedAt.IsZero() {
			return time.Time{}, fmt.Errorf("%w: no auth_time or iat", ErrInvalid)
		}
		return id.IssuedAt, nil
	}
	var f float64
	switch n := v.(type) {
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return time.Time{}, fmt.Errorf("%w: auth_time is not a number", ErrInvalid)
		}
	case float64:
		f = n
	case int64:
		f = float64(n)
	case int:
		f = float64(n)
	default:
		return time.Time{}, fmt.Errorf("%w: auth_time is not a number", ErrInvalid)
	}
	if !(f >= 0 && f <= 1<<40) { // NaN too
		return time.Time{}, fmt.Errorf("%w: auth_time out of range", ErrInvalid)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
}

// userStateBinary encodes revocation states for the in-process tier's
// arena (cache.WithBinary): a version byte, flags and the time.
type userStateBinary struct{}

var _ cache.Binary[UserState] = userStateBinary{}

const userStateVersion = 1

func (userStateBinary) Append(b []byte, u UserState) ([]byte, bool) {
	var flags byte
	if u.Disabled {
		flags |= 1
	}
	if u.NotFound {
		flags |= 2
	}
	b = append(b, userStateVersion, flags)
	return cache.AppendTime(b, cache.PackTime(u.TokensValidAfter)), true
}

// errUserStateBinary is a userStateBinary encoding that does not decode.
var errUserStateBinary = errors.New("cached user state: not a user state of this version")

func (userStateBinary) Read(b []byte) (UserState, error) {
	d := cache.NewDecoder(b)
	version, flags := d.Byte(), d.Byte()
	t := d.Time()
	if version != userStateVersion || flags > 3 || d.Err() != nil {
		return UserState{}, errUserStateBinary
	}
	return UserState{Disabled: flags&1 != 0, NotFound: flags&2 != 0, TokensValidAfter: cache.UnpackTime(t)}, nil
}
