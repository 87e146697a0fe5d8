package verify

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authgate/authgate/internal/configerr"
)

// Google's published key endpoints for Firebase.
const (
	// FirebaseIDTokenKeysURL serves the keys of Firebase ID tokens (kid →
	// x509 certificate).
	FirebaseIDTokenKeysURL = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
	// FirebaseSessionCookieKeysURL serves the keys of Firebase session
	// cookies.
	FirebaseSessionCookieKeysURL = "https://www.googleapis.com/identitytoolkit/v3/relyingparty/publicKeys"

	firebaseIDTokenIssuer = "https://securetoken.google.com/"
	firebaseSessionIssuer = "https://session.firebase.google.com/"
)

// FirebaseConfig configures verification of Firebase ID tokens and session
// cookies of one Firebase project, by Google's published rules: RS256 only,
// kid naming a current key, aud = project id, iss = the project's issuer,
// sub of 1 to 128 characters, exp in the future and iat, auth_time in the
// past (with Leeway).
type FirebaseConfig struct {
	// Enabled turns Firebase verification on.
	Enabled bool `yaml:"enabled"`
	// ProjectID is the Firebase project id; tokens must be issued for it.
	ProjectID string `yaml:"project_id"`
	// Leeway is the allowed clock skew. Default 30s; 0 allows none.
	Leeway time.Duration `yaml:"leeway"`
	// Keys are the ID-token signing keys. Default URL: Google's x509
	// endpoint for securetoken.
	Keys KeySetConfig `yaml:"keys"`
	// SessionCookies configures Firebase session cookies (as set by a
	// browser app in __session), verified like ID tokens with their own
	// issuer and keys.
	SessionCookies SessionCookieConfig `yaml:"session_cookies"`
	// Claims names the custom claims that carry identity fields.
	Claims FirebaseClaimNames `yaml:"claims"`
	// Revocation checks revoked tokens and disabled users through the
	// Firebase Admin SDK. Off by default.
	Revocation RevocationConfig `yaml:"revocation"`
	// Emulator accepts the unsigned tokens of the Firebase Auth Emulator,
	// and only those, for this project. Development only: it turns off
	// signature checks, and the key sets (Keys, SessionCookies.Keys) are
	// neither fetched nor part of readiness. authgate refuses to start
	// when FIREBASE_AUTH_EMULATOR_HOST is set and this is false.
	Emulator bool `yaml:"emulator"`
}

// SessionCookieConfig configures Firebase session cookies.
type SessionCookieConfig struct {
	// Enabled accepts session cookies. Default true when Firebase is on.
	Enabled bool `yaml:"enabled"`
	// Keys are the session-cookie signing keys. Default URL: Google's
	// identitytoolkit publicKeys endpoint.
	Keys KeySetConfig `yaml:"keys"`
}

// FirebaseClaimNames names custom claims of Firebase tokens.
type FirebaseClaimNames struct {
	// Role is the custom claim with the platform role. Default
	// "user_type"; "" reads none.
	Role string `yaml:"role"`
	// Name is the display-name claim. Default "name"; "" reads none.
	Name string `yaml:"name"`
}

// DefaultFirebaseConfig returns the Firebase defaults (disabled).
func DefaultFirebaseConfig() FirebaseConfig {
	return FirebaseConfig{
		Leeway:         30 * time.Second,
		Keys:           keySetAt(FirebaseIDTokenKeysURL),
		SessionCookies: SessionCookieConfig{Enabled: true, Keys: keySetAt(FirebaseSessionCookieKeysURL)},
		Claims:         FirebaseClaimNames{Role: "user_type", Name: "name"},
		Revocation:     RevocationConfig{CacheTTL: defaultRevocationCacheTTL},
	}
}

// Validate reports every problem, each prefixed with its key.
func (c FirebaseConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if !validProjectID(c.ProjectID) {
		errs = append(errs, fmt.Errorf("project_id: %q is not a Firebase project id", c.ProjectID))
	}
	if c.Leeway < 0 || c.Leeway > 10*time.Minute {
		errs = append(errs, fmt.Errorf("leeway: %s is outside 0..10m", c.Leeway))
	}
	errs = append(errs, configerr.Prefix("keys.", c.Keys.Validate()))
	if c.SessionCookies.Enabled {
		errs = append(errs, configerr.Prefix("session_cookies.keys.", c.SessionCookies.Keys.Validate()))
	}
	errs = append(errs, configerr.Prefix("revocation.", c.Revocation.Validate()))
	return errors.Join(errs...)
}

// validProjectID accepts Firebase/GCP project ids: lowercase letters,
// digits and hyphens, 4 to 63 long (demo- projects included).
func validProjectID(s string) bool {
	if len(s) < 4 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// firebaseVerifier verifies one kind of Firebase token (ID token or session
// cookie) for one project.
type firebaseVerifier struct {
	issuer   string
	project  string
	leeway   time.Duration
	keys     *keySet
	claims   FirebaseClaimNames
	emulator bool
}

func (f *firebaseVerifier) subjectClaim() string { return "sub" }

func (f *firebaseVerifier) owns(t *token) bool {
	return t.claims.strIs("iss", f.issuer)
}

func (f *firebaseVerifier) verify(ctx context.Context, t *token, now time.Time) (Identity, error) {
	if f.emulator {
		// The Auth Emulator signs nothing; this path exists only when the
		// configuration asked for it explicitly. Emulator mode has no
		// keys (none are fetched), so a signed token cannot be checked.
		if t.header.Alg != "none" {
			return Identity{}, fmt.Errorf("%w: emulator mode accepts only the emulator's unsigned tokens", ErrInvalid)
		}
		if t.sig != "" {
			return Identity{}, fmt.Errorf("%w: emulator token with a signature", ErrInvalid)
		}
	} else {
		if err := t.checkHeader(rs256Only); err != nil {
			return Identity{}, err
		}
		if t.header.Kid == "" {
			return Identity{}, fmt.Errorf("%w: no kid", ErrInvalid)
		}
	}
	iat, exp, err := t.checkTimes(now, f.leeway)
	if err != nil {
		return Identity{}, err
	}
	if !t.claims.has("iat") {
		return Identity{}, fmt.Errorf("%w: no iat claim", ErrInvalid)
	}
	authTime, ok, err := t.numericDate("auth_time")
	if err != nil {
		return Identity{}, err
	} else if !ok || now.Add(f.leeway).Before(authTime) {
		return Identity{}, fmt.Errorf("%w: auth_time missing or in the future", ErrInvalid)
	}
	if !t.claims.strIs("aud", f.project) {
		return Identity{}, fmt.Errorf("%w: audience is not the project", ErrInvalid)
	}
	sub, _ := t.claims.str("sub")
	if sub == "" || utf8.RuneCountInString(sub) > 128 {
		return Identity{}, fmt.Errorf("%w: sub must be 1 to 128 characters", ErrInvalid)
	}
	if !f.emulator {
		pk, err := f.keys.key(ctx, t.header.Kid)
		if err != nil {
			return Identity{}, err
		}
		if kindOf(pk.key) != kindRSA {
			return Identity{}, fmt.Errorf("%w: key %q is not RSA", ErrInvalid, truncate(t.header.Kid))
		}
		if err := t.verifySignature(jose.RS256, pk.key); err != nil {
			return Identity{}, err
		}
	}
	return Identity{
		Provider:      ProviderFirebase,
		Issuer:        f.issuer,
		Subject:       sub,
		FirebaseUID:   sub,
		Email:         t.str("email"),
		EmailVerified: t.boolean("email_verified"),
		Name:          t.str(f.claims.Name),
		Role:          t.str(f.claims.Role),
		IssuedAt:      iat,
		ExpiresAt:     exp,
		AuthTime:      authTime,
	}, nil
}

var rs256Only = []string{"RS256"}

// firebaseIssuers builds the ID-token and session-cookie verifiers. In
// emulator mode they have no key sets: the emulator's tokens are unsigned,
// so Google's keys are never fetched and are no part of readiness, and
// authgate works offline.
func firebaseIssuers(cfg FirebaseConfig, newKeys func(name string, c KeySetConfig) *keySet) []issuer {
	keys := func(name string, c KeySetConfig) *keySet {
		if cfg.Emulator {
			return nil
		}
		return newKeys(name, c)
	}
	out := []issuer{&firebaseVerifier{
		issuer: firebaseIDTokenIssuer + cfg.ProjectID, project: cfg.ProjectID, leeway: cfg.Leeway,
		keys: keys("firebase", cfg.Keys), claims: cfg.Claims, emulator: cfg.Emulator,
	}}
	if cfg.SessionCookies.Enabled {
		out = append(out, &firebaseVerifier{
			issuer: firebaseSessionIssuer + cfg.ProjectID, project: cfg.ProjectID, leeway: cfg.Leeway,
			keys: keys("firebase_session", cfg.SessionCookies.Keys), claims: cfg.Claims, emulator: cfg.Emulator,
		})
	}
	return out
}
