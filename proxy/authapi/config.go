package authapi

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/authgate/authgate/federation"
	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/internal/ratelimit"
	"github.com/authgate/authgate/internal/secret"
)

// Defaults (see DefaultConfig), and bounds.
const (
	DefaultPrefix             = "/v1/auth"
	DefaultIdentityToolkitURL = "https://identitytoolkit.googleapis.com"
	DefaultSecureTokenURL     = "https://securetoken.googleapis.com"
	defaultTimeout            = 10 * time.Second
	maxTimeout                = time.Minute
	defaultMinPassword        = 8
	defaultMaxPassword        = 128
	// Firebase refuses passwords under 6 characters, and its password
	// policies go up to 4096.
	firebaseMinPassword = 6
	firebaseMaxPassword = 4096
	defaultLegacyColumn = "password_hash"
	defaultBcryptCost   = 10
	minBcryptCost       = 4
	maxBcryptCost       = 16 // 31 is bcrypt's limit; beyond 16 one sign-in takes seconds
)

// Config configures the auth API (the yaml key "auth_api"). Its zero value
// is off; DefaultConfig has every default written out.
type Config struct {
	// Enabled serves the API. Off by default.
	Enabled bool `yaml:"enabled"`
	// Prefix is the path under which the public listener serves the API.
	// Default "/v1/auth", as the original service.
	Prefix string `yaml:"prefix"`
	// WebAPIKey is the Firebase project's Web API key, with which the
	// Identity Toolkit and Secure Token REST APIs are called. It is not a
	// secret in Google's sense (browsers hold it), but it is kept out of
	// logs all the same; prefer WebAPIKeyFile or
	// AUTHGATE_AUTH_API_WEB_API_KEY.
	WebAPIKey secret.Secret `yaml:"web_api_key"`
	// WebAPIKeyFile is a file holding the key (a trailing newline is
	// ignored).
	WebAPIKeyFile string `yaml:"web_api_key_file"`
	// IdentityToolkitURL and SecureTokenURL are the base URLs of the REST
	// APIs. Defaults: Google's. With the Auth Emulator (WithEmulator) both
	// are the emulator's.
	IdentityToolkitURL string `yaml:"identity_toolkit_url"`
	SecureTokenURL     string `yaml:"secure_token_url"`
	// Timeout bounds each call to Firebase (REST or Admin API). Default
	// 10s; must be positive.
	Timeout time.Duration `yaml:"timeout"`
	// Password is the policy a new password must meet.
	Password PasswordPolicy `yaml:"password"`
	// RateLimit bounds how fast one client, and one email, may use the API.
	RateLimit RateLimits `yaml:"rate_limit"`
	// LegacyPasswords moves accounts of the old service to Firebase when
	// they sign in with the password it kept a hash of.
	LegacyPasswords LegacyPasswords `yaml:"legacy_passwords"`
}

// PasswordPolicy is what a new password (registration) must be. Sign-in
// takes any password up to MaxLength, since older accounts may predate the
// policy. Lengths count characters, as Firebase does.
type PasswordPolicy struct {
	// MinLength: default 8; at least 6, Firebase's own minimum.
	MinLength int `yaml:"min_length"`
	// MaxLength: default 128; at most 4096.
	MaxLength int `yaml:"max_length"`
	// Each Require* asks for at least one such character.
	RequireLowercase bool `yaml:"require_lowercase"`
	RequireUppercase bool `yaml:"require_uppercase"`
	RequireDigit     bool `yaml:"require_digit"`
	RequireSymbol    bool `yaml:"require_symbol"`
}

// RateLimits limit the API per client address and per email. A request
// over either limit gets 429 with Retry-After. Limits are per replica.
type RateLimits struct {
	// PerIP limits each client address (the peer, or the client that a
	// trusted proxy names in X-Forwarded-For), on every endpoint. Default
	// 5 per second, burst 20.
	PerIP ratelimit.Config `yaml:"per_ip"`
	// PerEmail limits each email on register and login, whether or not
	// an account has it: a password guesser gets a few tries a minute.
	// Default one every 20s, burst 5.
	PerEmail ratelimit.Config `yaml:"per_email"`
	// MaxKeys bounds the addresses and emails tracked, each. Default
	// 100000; at least 1.
	MaxKeys int `yaml:"max_keys"`
}

// LegacyPasswords configures the lazy migration of the old service's
// accounts: a sign-in that Firebase refuses is checked against the password
// hash in the account's row and, when it matches, the Firebase user is
// created with that password and linked to the row.
type LegacyPasswords struct {
	// Enabled turns the migration on. Off by default.
	Enabled bool `yaml:"enabled"`
	// Column is the users column with the hash, which authgate's
	// migrations do not create. Default "password_hash".
	Column string `yaml:"column"`
	// EmailVerifiedColumn is a boolean users column with the account's
	// verified-email state, copied to the new Firebase user; "" (default)
	// creates it unverified.
	EmailVerifiedColumn string `yaml:"email_verified_column"`
	// Format is the hash format; "bcrypt" ($2a$, $2b$, $2y$) is the only
	// one, and the default.
	Format string `yaml:"format"`
	// Cost is the bcrypt cost of the old service's hashes (default 10). A
	// sign-in for an email without such a hash compares against a hash of
	// this cost, so that it takes as long as one with a hash.
	Cost int `yaml:"cost"`
	// KeepHash keeps the hash once the account is moved. By default it is
	// set to NULL in the statement that links the account, so that a
	// password changed in Firebase is the only one from then on. Set it
	// when the column does not allow NULL.
	KeepHash bool `yaml:"keep_hash"`
}

// columns returns the federation view of the configuration.
func (l LegacyPasswords) columns() federation.LegacyColumns {
	return federation.LegacyColumns{PasswordHash: l.Column, EmailVerified: l.EmailVerifiedColumn}
}

// DefaultConfig returns the configuration with every default written out;
// the API is off.
func DefaultConfig() Config {
	return Config{
		Prefix:             DefaultPrefix,
		IdentityToolkitURL: DefaultIdentityToolkitURL,
		SecureTokenURL:     DefaultSecureTokenURL,
		Timeout:            defaultTimeout,
		Password:           PasswordPolicy{MinLength: defaultMinPassword, MaxLength: defaultMaxPassword},
		RateLimit: RateLimits{
			PerIP:    ratelimit.Config{Rate: 5, Burst: 20},
			PerEmail: ratelimit.Config{Rate: 0.05, Burst: 5},
			MaxKeys:  ratelimit.DefaultMaxKeys,
		},
		LegacyPasswords: LegacyPasswords{Column: defaultLegacyColumn, Format: "bcrypt", Cost: defaultBcryptCost},
	}
}

// WithEmulator returns c pointed at the Firebase Auth Emulator at host
// (FIREBASE_AUTH_EMULATOR_HOST), which serves both REST APIs under its own
// address, as the Admin SDK is then too.
func (c Config) WithEmulator(host string) Config {
	c.IdentityToolkitURL = "http://" + host + "/identitytoolkit.googleapis.com"
	c.SecureTokenURL = "http://" + host + "/securetoken.googleapis.com"
	return c
}

// Validate reports every problem, each prefixed with its key. A disabled
// API is always valid. The key file is read to check it.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if err := checkPrefix(c.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("prefix: %w", err))
	}
	if _, err := c.apiKey(); err != nil {
		errs = append(errs, err)
	}
	for _, u := range []struct{ key, v string }{{"identity_toolkit_url", c.IdentityToolkitURL}, {"secure_token_url", c.SecureTokenURL}} {
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.RawQuery != "" || p.Fragment != "" || p.User != nil {
			errs = append(errs, fmt.Errorf("%s: %q must be an http(s) URL without query", u.key, u.v))
		}
	}
	if c.Timeout <= 0 || c.Timeout > maxTimeout {
		errs = append(errs, fmt.Errorf("timeout: %s is outside 1ns..%s", c.Timeout, maxTimeout))
	}
	errs = append(errs, configerr.Prefix("password.", c.Password.validate()))
	rl := c.RateLimit
	errs = append(errs,
		configerr.Prefix("rate_limit.per_ip.", rl.PerIP.Validate()),
		configerr.Prefix("rate_limit.per_email.", rl.PerEmail.Validate()))
	if rl.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("rate_limit.max_keys: %d must be at least 1", rl.MaxKeys))
	}
	if l := c.LegacyPasswords; l.Enabled {
		errs = append(errs, configerr.Prefix("legacy_passwords.", l.columns().Validate()))
		if l.Format != "bcrypt" {
			errs = append(errs, fmt.Errorf("legacy_passwords.format: %q is not supported; the only format is bcrypt", l.Format))
		}
		if l.Cost < minBcryptCost || l.Cost > maxBcryptCost {
			errs = append(errs, fmt.Errorf("legacy_passwords.cost: %d is outside %d..%d", l.Cost, minBcryptCost, maxBcryptCost))
		}
	}
	return errors.Join(errs...)
}

func (p PasswordPolicy) validate() error {
	var errs []error
	if p.MinLength < firebaseMinPassword || p.MinLength > firebaseMaxPassword {
		errs = append(errs, fmt.Errorf("min_length: %d is outside %d..%d (Firebase's own bounds)", p.MinLength, firebaseMinPassword, firebaseMaxPassword))
	}
	if p.MaxLength < firebaseMinPassword || p.MaxLength > firebaseMaxPassword {
		errs = append(errs, fmt.Errorf("max_length: %d is outside %d..%d", p.MaxLength, firebaseMinPassword, firebaseMaxPassword))
	} else if p.MaxLength < p.MinLength {
		errs = append(errs, fmt.Errorf("max_length: %d is less than min_length %d", p.MaxLength, p.MinLength))
	}
	return errors.Join(errs...)
}

// checkPrefix accepts a clean absolute path without trailing slash.
func checkPrefix(p string) error {
	if !strings.HasPrefix(p, "/") || p == "/" || strings.HasSuffix(p, "/") || path.Clean(p) != p ||
		strings.ContainsAny(p, "%?#\\ \t") {
		return fmt.Errorf("%q must be a clean path like /v1/auth, without trailing slash", p)
	}
	return nil
}

// apiKey returns the Web API key, from WebAPIKey or WebAPIKeyFile. Errors
// never quote the key.
func (c Config) apiKey() (string, error) {
	s, err := secret.Pick("web_api_key", c.WebAPIKey, "web_api_key_file", c.WebAPIKeyFile)
	if err == nil && s == "" {
		err = errors.New("web_api_key: required (the Firebase project's Web API key; any value with the Auth Emulator)")
	}
	return s.Value(), err
}
