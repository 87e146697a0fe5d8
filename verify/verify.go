// Package verify turns a raw bearer token into a verified Identity.
//
// It knows nothing of HTTP serving or SQL: callers hand it a token string and
// get back either an Identity or one of the sentinel errors below, which the
// proxy maps to a status code in one place. Every verifier pins the algorithms
// it accepts and rejects tokens that try to bring their own keys (jwk, jku,
// x5u, x5c) or critical extensions it does not understand.
package verify

import (
	"context"
	"errors"
	"time"
)

// Provider names where an identity came from. It is a closed set so it can
// be used as a metric label and a header value.
type Provider string

// Known providers.
const (
	ProviderFirebase Provider = "firebase"
	ProviderLegacy   Provider = "legacy"
)

// Identity is what a verified token says about its bearer. Values are copied
// out of the token's claims after its signature, issuer, audience and
// lifetime were checked; nothing in it is trusted before that.
type Identity struct {
	// Provider is the kind of issuer that signed the token.
	Provider Provider
	// Issuer is the token's iss claim.
	Issuer string
	// Subject is the token's user id: the legacy platform user id, or the
	// Firebase uid for Firebase tokens.
	Subject string
	// FirebaseUID is set for Firebase tokens only.
	FirebaseUID   string
	Email         string
	EmailVerified bool
	Name          string
	// Role is the platform role (user_type) carried by the token, if any.
	Role string
	// IssuedAt and ExpiresAt are the token's iat and exp; ExpiresAt bounds
	// how long the verification may be cached.
	IssuedAt  time.Time
	ExpiresAt time.Time
	// AuthTime is a Firebase token's auth_time: when the user signed in.
	// It stays the same across the ID tokens refreshed from that sign-in.
	AuthTime time.Time `json:",omitzero"`
	// Claims holds the token's claims (only those named by WithClaims, when
	// it is given), decoded from JSON with numbers kept as json.Number, for
	// route policies that require other claims.
	// Callers must treat it as read-only: it may be shared between requests.
	Claims map[string]any
}

// Sentinel errors. Verifiers wrap them with detail for logs; callers branch
// with errors.Is and use Reason for a low-cardinality label.
var (
	// ErrMalformed: the token is not a compact JWS with decodable parts.
	ErrMalformed = errors.New("malformed token")
	// ErrUnknownIssuer: no configured issuer owns the token.
	ErrUnknownIssuer = errors.New("unknown issuer")
	// ErrInvalid: signature, algorithm, audience, issuer or a required claim
	// is wrong.
	ErrInvalid = errors.New("invalid token")
	// ErrExpired: the token is past exp (or before nbf/iat) beyond the leeway.
	ErrExpired = errors.New("token expired")
	// ErrNotResponsible: a verifier in a chain does not own this token.
	ErrNotResponsible = errors.New("verifier not responsible for token")
	// ErrKeysUnavailable: the verifier has no usable keys (key endpoint down
	// and nothing cached); this is authgate's failure, not the client's.
	ErrKeysUnavailable = errors.New("verification keys unavailable")
	// ErrRevoked: the token is well formed and signed, but Firebase says its
	// session is over: its tokens were revoked after it was issued, or its
	// user was disabled (ErrUserDisabled) or deleted (ErrUserNotFound).
	ErrRevoked = errors.New("token revoked")
	// ErrUserDisabled: the token's Firebase user is disabled. Errors that
	// wrap it wrap ErrRevoked too.
	ErrUserDisabled = errors.New("user disabled")
	// ErrRevocationUnavailable: whether the token was revoked could not be
	// found out (the Firebase Admin API failed); this is authgate's
	// failure, not the client's.
	ErrRevocationUnavailable = errors.New("revocation state unavailable")
)

// Reason returns a short, fixed label for err, for metrics and logs.
func Reason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrUnknownIssuer):
		return "unknown_issuer"
	case errors.Is(err, ErrKeysUnavailable):
		return "keys_unavailable"
	case errors.Is(err, ErrUserDisabled):
		return "disabled"
	case errors.Is(err, ErrRevoked):
		return "revoked"
	case errors.Is(err, ErrRevocationUnavailable):
		// Before the context cases: a load that timed out wraps both.
		return "revocation_unavailable"
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotResponsible):
		return "invalid"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "error"
	}
}
