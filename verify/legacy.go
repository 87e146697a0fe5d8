package verify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/internal/secret"
)

// ClaimNames says which claims of a legacy token carry which identity field.
type ClaimNames struct {
	// UserID is the claim with the platform user id: a string, or an
	// integer for a platform with numeric ids. Default "sub"; it must be
	// set.
	UserID string `yaml:"user_id"`
	// Email is the email claim. Default "email"; "" reads no email.
	Email string `yaml:"email"`
	// EmailVerified is the boolean email-verified claim. Default
	// "email_verified"; "" reads none (never verified).
	EmailVerified string `yaml:"email_verified"`
	// Role is the platform role claim. Default "user_type"; "" reads none.
	Role string `yaml:"role"`
	// Name is the username / display-name claim. Default "username"; ""
	// reads none.
	Name string `yaml:"name"`
}

// LegacyConfig configures the verifier for the platform's own JWTs.
type LegacyConfig struct {
	// Enabled turns the legacy issuer on.
	Enabled bool `yaml:"enabled"`
	// Issuer is the required iss claim. Empty means the legacy tokens carry
	// no iss claim at all (a token with any iss is then not ours).
	Issuer string `yaml:"issuer"`
	// Audience, when set, must appear in the token's aud claim.
	Audience string `yaml:"audience"`
	// Leeway is the allowed clock skew for exp, nbf and iat. Default 30s;
	// 0 allows none.
	Leeway time.Duration `yaml:"leeway"`
	// Algorithms is the allow-list. Default [HS256]. HMAC algorithms
	// (HS256, HS384, HS512) verify with Secrets only; public-key algorithms
	// (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)
	// with PublicKeyFiles or JWKS only, and each key only under the
	// algorithms of its type. "none", anything unknown and an empty list
	// are refused at start-up.
	Algorithms []string `yaml:"algorithms"`
	// Secrets are the HMAC keys, newest first; a token verifies if any of
	// them signed it, so a secret can be rotated without downtime. Prefer
	// SecretFiles or the AUTHGATE_VERIFY_LEGACY_SECRETS variable over
	// writing a secret into the config file.
	Secrets []secret.Secret `yaml:"secrets"`
	// SecretFiles are files that each hold one secret (a trailing newline is
	// ignored), such as a mounted Kubernetes Secret.
	SecretFiles []string `yaml:"secret_files"`
	// PublicKeyFiles are PEM files, each a public key or certificate, for
	// the public-key algorithms.
	PublicKeyFiles []string `yaml:"public_key_files"`
	// JWKS fetches public keys from a URL (JWKS or kid → PEM); a token's
	// kid picks the key. Empty url = off.
	JWKS KeySetConfig `yaml:"jwks"`
	// Claims maps identity fields to claim names.
	Claims ClaimNames `yaml:"claims"`
	// StringBooleans reads the strings "true" and "false" in the
	// email-verified claim as booleans, for an issuer whose old service
	// wrote them that way. Off (the default), only a JSON true is true, as
	// in Firebase tokens: a string can then never make an email verified.
	StringBooleans bool `yaml:"string_booleans"`
}

// publicKeyAlgorithms maps each public-key algorithm to the key type it
// verifies with, so that a key is never used under another family's
// algorithm (an RSA key as an HMAC secret, say).
var publicKeyAlgorithms = map[string]struct {
	alg  jose.SignatureAlgorithm
	kind keyKind
}{
	"RS256": {jose.RS256, kindRSA}, "RS384": {jose.RS384, kindRSA}, "RS512": {jose.RS512, kindRSA},
	"PS256": {jose.PS256, kindRSA}, "PS384": {jose.PS384, kindRSA}, "PS512": {jose.PS512, kindRSA},
	"ES256": {jose.ES256, kindEC}, "ES384": {jose.ES384, kindEC}, "ES512": {jose.ES512, kindEC},
	"EdDSA": {jose.EdDSA, kindEd25519},
}

var hmacAlgorithms = map[string]jose.SignatureAlgorithm{
	"HS256": jose.HS256, "HS384": jose.HS384, "HS512": jose.HS512,
}

// hmacSecretBytes is RFC 7518 §3.2: an HMAC key must be at least as long as
// the hash output. go-jose refuses shorter keys when verifying, so a secret
// too short for an allowed algorithm would fail every such token.
var hmacSecretBytes = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// DefaultLegacyConfig returns the legacy issuer's defaults (disabled).
func DefaultLegacyConfig() LegacyConfig {
	return LegacyConfig{
		Leeway:     30 * time.Second,
		Algorithms: []string{"HS256"},
		JWKS:       DefaultKeySetConfig(),
		Claims:     ClaimNames{UserID: "sub", Email: "email", EmailVerified: "email_verified", Role: "user_type", Name: "username"},
	}
}

// Validate reports every problem with the configuration, each prefixed with
// its key.
func (c LegacyConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.Leeway < 0 || c.Leeway > 10*time.Minute {
		errs = append(errs, fmt.Errorf("leeway: %s is outside 0..10m", c.Leeway))
	}
	if len(c.Algorithms) == 0 {
		errs = append(errs, errors.New("algorithms: must list at least one algorithm"))
	}
	if c.Claims.UserID == "" {
		errs = append(errs, errors.New("claims.user_id: must name the claim with the user id"))
	}
	needAlg, need := "", 0
	hmac, public := false, false
	for i, a := range c.Algorithms {
		if _, ok := hmacAlgorithms[a]; ok {
			hmac = true
			if hmacSecretBytes[a] > need {
				needAlg, need = a, hmacSecretBytes[a]
			}
			continue
		}
		if _, ok := publicKeyAlgorithms[a]; ok {
			public = true
			continue
		}
		errs = append(errs, fmt.Errorf("algorithms[%d]: %q is not supported (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512, EdDSA)", i, a))
	}
	secrets, err := c.loadSecrets()
	if err != nil {
		errs = append(errs, err)
	}
	switch {
	case hmac && err == nil && len(secrets) == 0:
		errs = append(errs, errors.New("secrets: an HMAC algorithm is allowed but no secret is set (secrets, secret_files or AUTHGATE_VERIFY_LEGACY_SECRETS)"))
	case !hmac && len(secrets) > 0:
		errs = append(errs, errors.New("secrets: set, but algorithms allows no HMAC algorithm"))
	}
	for _, s := range secrets {
		if hmac && len(s.value) < need {
			errs = append(errs, fmt.Errorf("%s: %d bytes is too short; %s needs at least %d (RFC 7518 §3.2)", s.key, len(s.value), needAlg, need))
		}
	}
	if _, err := c.loadPublicKeys(); err != nil {
		errs = append(errs, err)
	}
	hasPublic := len(c.PublicKeyFiles) > 0 || c.JWKS.URL != ""
	switch {
	case public && !hasPublic:
		errs = append(errs, errors.New("public_key_files: a public-key algorithm is allowed but neither public_key_files nor jwks.url is set"))
	case !public && hasPublic:
		errs = append(errs, errors.New("algorithms: public keys are configured but no public-key algorithm is allowed"))
	}
	if c.JWKS.URL != "" {
		errs = append(errs, configerr.Prefix("jwks.", c.JWKS.Validate()))
	}
	return errors.Join(errs...)
}

func (c LegacyConfig) loadPublicKeys() ([]any, error) {
	var out []any
	var errs []error
	for i, f := range c.PublicKeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("public_key_files[%d]: cannot read %q: %w", i, f, errors.Unwrap(err)))
			continue
		}
		k, err := parsePEMKey(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("public_key_files[%d]: %q: %w", i, f, err))
			continue
		}
		out = append(out, prepareKey(k))
	}
	return out, errors.Join(errs...)
}

// namedSecret is a secret and the key it was configured under, so that a
// problem with it can be reported without showing it.
type namedSecret struct {
	key   string
	value []byte
}

func (c LegacyConfig) loadSecrets() ([]namedSecret, error) {
	var out []namedSecret
	for i, s := range c.Secrets {
		if s != "" {
			out = append(out, namedSecret{fmt.Sprintf("secrets[%d]", i), []byte(s.Value())})
		}
	}
	var errs []error
	for i, f := range c.SecretFiles {
		key := fmt.Sprintf("secret_files[%d]", i)
		s, err := secret.ReadFile(key, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, namedSecret{key, []byte(s.Value())})
	}
	return out, errors.Join(errs...)
}

// legacyVerifier verifies HMAC-signed platform JWTs.
type legacyVerifier struct {
	cfg     LegacyConfig
	secrets [][]byte
	// hmacKeys are secrets as *hmacKey, in the order of secrets.
	hmacKeys   []any
	publicKeys []any
	jwks       *keySet // nil without jwks.url
}

func newLegacy(cfg LegacyConfig, newKeys func(name string, c KeySetConfig) *keySet) (*legacyVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Validate read the files already, but a reload may meet a file that
	// changed since: what is used is what is read here.
	secrets, err := cfg.loadSecrets()
	if err != nil {
		return nil, err
	}
	v := &legacyVerifier{cfg: cfg}
	for _, s := range secrets {
		v.secrets = append(v.secrets, s.value)
		v.hmacKeys = append(v.hmacKeys, &hmacKey{secret: s.value})
	}
	if v.publicKeys, err = cfg.loadPublicKeys(); err != nil {
		return nil, err
	}
	if cfg.JWKS.URL != "" {
		v.jwks = newKeys("legacy", cfg.JWKS)
	}
	return v, nil
}

// owns reports whether t claims to come from this issuer. It trusts nothing
// else in the token.
func (v *legacyVerifier) subjectClaim() string { return v.cfg.Claims.UserID }

func (v *legacyVerifier) owns(t *token) bool {
	if v.cfg.Issuer == "" {
		return !t.claims.has("iss") || t.claims.strIs("iss", "")
	}
	return t.claims.strIs("iss", v.cfg.Issuer)
}

func (v *legacyVerifier) verify(ctx context.Context, t *token, now time.Time) (Identity, error) {
	if err := t.checkHeader(v.cfg.Algorithms); err != nil {
		return Identity{}, err
	}
	iat, exp, err := t.checkTimes(now, v.cfg.Leeway)
	if err != nil {
		return Identity{}, err
	}
	if v.cfg.Audience != "" && !t.audience(v.cfg.Audience) {
		return Identity{}, fmt.Errorf("%w: audience mismatch", ErrInvalid)
	}
	if err := v.checkSignature(ctx, t); err != nil {
		return Identity{}, err
	}
	n := &v.cfg.Claims
	verified := t.boolean(n.EmailVerified)
	if v.cfg.StringBooleans {
		verified = t.stringBoolean(n.EmailVerified)
	}
	id := Identity{
		Provider:      ProviderLegacy,
		Issuer:        v.cfg.Issuer,
		Subject:       t.userID(n.UserID),
		Email:         t.str(n.Email),
		EmailVerified: verified,
		Name:          t.str(n.Name),
		Role:          t.str(n.Role),
		IssuedAt:      iat,
		ExpiresAt:     exp,
	}
	if id.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no %s claim", ErrInvalid, n.UserID)
	}
	return id, nil
}

// checkSignature verifies with the keys of the token's algorithm family
// only: secrets for HS*, keys of the matching type for the others.
func (v *legacyVerifier) checkSignature(ctx context.Context, t *token) error {
	alg := t.header.Alg
	if ha, ok := hmacAlgorithms[alg]; ok {
		return t.verifyAny(ha, v.hmacKeys)
	}
	pa := publicKeyAlgorithms[alg] // checkHeader allowed it, so it is known
	var keys []any
	var unknownKid error // the JWKS lacks the kid, for now
	if v.jwks != nil && t.header.Kid != "" {
		pk, err := v.jwks.key(ctx, t.header.Kid)
		if err != nil && !errors.Is(err, errUnknownKid) {
			return err
		}
		unknownKid = err
		if err == nil && (pk.alg == "" || pk.alg == alg) {
			keys = append(keys, pk.key)
		}
	}
	keys = append(keys, v.publicKeys...)
	var fit []any
	for _, k := range keys {
		if kindOf(k) == pa.kind {
			fit = append(fit, k)
		}
	}
	var err error
	if len(fit) == 0 {
		err = fmt.Errorf("%w: no %s key for kid %q", ErrInvalid, alg, truncate(t.header.Kid))
	} else {
		err = t.verifyAny(pa.alg, fit)
	}
	if err != nil && unknownKid != nil {
		// A later refresh may bring the kid, so the refusal must say so:
		// a negatively cached one would lock out a rotated key's tokens.
		return unknownKid
	}
	return err
}
