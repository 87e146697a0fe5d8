package verify

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// ClaimNames says which claims of a legacy token carry which identity field.
type ClaimNames struct {
	// UserID is the claim with the platform user id. Default "sub".
	UserID string `yaml:"user_id"`
	// Email is the email claim. Default "email".
	Email string `yaml:"email"`
	// EmailVerified is the boolean email-verified claim. Default "email_verified".
	EmailVerified string `yaml:"email_verified"`
	// Role is the platform role claim. Default "user_type".
	Role string `yaml:"role"`
	// Name is the username / display-name claim. Default "username".
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
	// Leeway is the allowed clock skew for exp, nbf and iat. Default 30s.
	Leeway time.Duration `yaml:"leeway"`
	// Algorithms is the allow-list. Default [HS256]; HS384 and HS512 may be
	// added. Anything else is refused at start-up.
	Algorithms []string `yaml:"algorithms"`
	// Secrets are the HMAC keys, newest first; a token verifies if any of
	// them signed it, so a secret can be rotated without downtime. Prefer
	// SecretFiles or the AUTHGATE_VERIFY_LEGACY_SECRETS variable over
	// writing a secret into the config file.
	Secrets []string `yaml:"secrets"`
	// SecretFiles are files that each hold one secret (a trailing newline is
	// ignored), such as a mounted Kubernetes Secret.
	SecretFiles []string `yaml:"secret_files"`
	// Claims maps identity fields to claim names.
	Claims ClaimNames `yaml:"claims"`
}

// String redacts the secrets.
func (c LegacyConfig) String() string {
	return fmt.Sprintf("{Enabled:%t Issuer:%q Audience:%q Leeway:%s Algorithms:%v Secrets:[%d redacted] SecretFiles:%v Claims:%+v}",
		c.Enabled, c.Issuer, c.Audience, c.Leeway, c.Algorithms, len(c.Secrets), c.SecretFiles, c.Claims)
}

var hmacAlgorithms = map[string]jose.SignatureAlgorithm{
	"HS256": jose.HS256, "HS384": jose.HS384, "HS512": jose.HS512,
}

// hmacSecretBytes is RFC 7518 §3.2: an HMAC key must be at least as long as
// the hash output. go-jose refuses shorter keys when verifying, so a secret
// too short for an allowed algorithm would fail every such token.
var hmacSecretBytes = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// withDefaults returns c with unset fields defaulted.
func (c LegacyConfig) withDefaults() LegacyConfig {
	if c.Leeway == 0 {
		c.Leeway = 30 * time.Second
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{"HS256"}
	}
	n := &c.Claims
	for _, f := range []struct {
		p   *string
		def string
	}{{&n.UserID, "sub"}, {&n.Email, "email"}, {&n.EmailVerified, "email_verified"}, {&n.Role, "user_type"}, {&n.Name, "username"}} {
		if *f.p == "" {
			*f.p = f.def
		}
	}
	return c
}

// Validate reports every problem with the configuration, each prefixed with
// its key.
func (c LegacyConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	c = c.withDefaults()
	var errs []error
	if c.Leeway < 0 || c.Leeway > 10*time.Minute {
		errs = append(errs, errors.New("leeway: must be between 0 and 10m"))
	}
	needAlg, need := "HS256", hmacSecretBytes["HS256"]
	for i, a := range c.Algorithms {
		if _, ok := hmacAlgorithms[a]; !ok {
			errs = append(errs, fmt.Errorf("algorithms[%d]: %q is not supported (use HS256, HS384 or HS512)", i, a))
			continue
		}
		if hmacSecretBytes[a] > need {
			needAlg, need = a, hmacSecretBytes[a]
		}
	}
	secrets, err := c.loadSecrets()
	if err != nil {
		errs = append(errs, err)
	} else if len(secrets) == 0 {
		errs = append(errs, errors.New("secrets: at least one secret is required (secrets, secret_files or AUTHGATE_VERIFY_LEGACY_SECRETS)"))
	}
	for _, s := range secrets {
		if len(s.value) < need {
			errs = append(errs, fmt.Errorf("%s: %d bytes is too short; %s needs at least %d (RFC 7518 §3.2)", s.key, len(s.value), needAlg, need))
		}
	}
	return errors.Join(errs...)
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
			out = append(out, namedSecret{fmt.Sprintf("secrets[%d]", i), []byte(s)})
		}
	}
	var errs []error
	for i, f := range c.SecretFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			// The path is config, not secret; the content never appears.
			errs = append(errs, fmt.Errorf("secret_files[%d]: cannot read %q: %w", i, f, errors.Unwrap(err)))
			continue
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			errs = append(errs, fmt.Errorf("secret_files[%d]: %q is empty", i, f))
			continue
		}
		out = append(out, namedSecret{fmt.Sprintf("secret_files[%d]", i), []byte(s)})
	}
	return out, errors.Join(errs...)
}

// legacyVerifier verifies HMAC-signed platform JWTs.
type legacyVerifier struct {
	cfg     LegacyConfig
	algs    []jose.SignatureAlgorithm
	secrets [][]byte
}

func newLegacy(cfg LegacyConfig) (*legacyVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	secrets, _ := cfg.loadSecrets() // Validate read them already
	v := &legacyVerifier{cfg: cfg}
	for _, s := range secrets {
		v.secrets = append(v.secrets, s.value)
	}
	for _, a := range cfg.Algorithms {
		v.algs = append(v.algs, hmacAlgorithms[a])
	}
	return v, nil
}

// owns reports whether t claims to come from this issuer. It trusts nothing
// else in the token.
func (v *legacyVerifier) owns(t *token) bool {
	iss, present := t.claims["iss"]
	if v.cfg.Issuer == "" {
		return !present || iss == ""
	}
	return iss == v.cfg.Issuer
}

func (v *legacyVerifier) verify(t *token, now time.Time) (Identity, error) {
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
	jws, err := jose.ParseSignedCompact(t.raw, v.algs)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	verified := false
	for _, s := range v.secrets {
		if _, err := jws.Verify(s); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Identity{}, fmt.Errorf("%w: signature", ErrInvalid)
	}
	n := &v.cfg.Claims
	id := Identity{
		Provider:      ProviderLegacy,
		Issuer:        v.cfg.Issuer,
		Subject:       t.str(n.UserID),
		Email:         t.str(n.Email),
		EmailVerified: t.boolean(n.EmailVerified),
		Name:          t.str(n.Name),
		Role:          t.str(n.Role),
		IssuedAt:      iat,
		ExpiresAt:     exp,
		Claims:        t.claims,
	}
	if id.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no %s claim", ErrInvalid, n.UserID)
	}
	return id, nil
}
