// Package assertion verifies the signed identity assertion that authgate
// adds to the requests it lets through (the X-User-Assertion header), for
// services behind authgate that would rather verify who the user is than
// trust plain X-User-* headers.
//
// It depends on the standard library and go-jose only, not on the rest of
// authgate, so that any Go service can import it:
//
//	v, err := assertion.New(assertion.Config{
//		JWKSURL:  "http://authgate.internal:9090/.well-known/jwks.json",
//		Issuer:   "https://authgate.example.com",
//		Audience: "orders",
//	})
//	...
//	go v.Run(ctx) // refreshes the keys in the background
//	http.Handle("/", v.Middleware(ordersHandler))
//
// and in the handler:
//
//	c, _ := assertion.FromContext(r.Context())
//	log.Printf("user %s (%s)", c.Subject, c.UserType)
package assertion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DefaultHeader is the header authgate puts the assertion in by default.
const DefaultHeader = "X-User-Assertion"

// Claims are the claims of an assertion. Fields authgate did not know are
// empty; TokenBalance is nil without a user row.
type Claims struct {
	Issuer        string           `json:"iss"`
	Subject       string           `json:"sub"`
	Audience      jwt.Audience     `json:"aud"`
	IssuedAt      *jwt.NumericDate `json:"iat"`
	Expiry        *jwt.NumericDate `json:"exp"`
	FirebaseUID   string           `json:"firebase_uid"`
	Email         string           `json:"email"`
	EmailVerified bool             `json:"email_verified"`
	UserType      string           `json:"user_type"`
	Provider      string           `json:"provider"`
	Federation    string           `json:"federation"`
	TokenBalance  *int64           `json:"token_balance"`
}

// Config configures a Verifier.
type Config struct {
	// JWKSURL is where authgate serves its keys
	// (assertion.jwks_path on its public or admin listener). Required.
	JWKSURL string
	// Issuer must equal the iss claim (authgate's assertion.issuer).
	// Required.
	Issuer string
	// Audience must be in the aud claim: this service's audience
	// (assertion.audience or the route's assertion_audience). Required.
	Audience string
	// Header is the header read by Middleware. Empty means DefaultHeader.
	Header string
	// Leeway is the clock skew allowed on exp and iat. Zero means none.
	Leeway time.Duration
	// MaxAge is how long fetched keys are used before they are fetched
	// again: by Run in the background, or without Run by the Verify that
	// finds them older. Zero means 5 minutes.
	MaxAge time.Duration
	// MinRefreshInterval bounds how often an unknown kid may make the
	// Verifier fetch the keys. Zero means 30 seconds.
	MinRefreshInterval time.Duration
	// Client fetches the keys. Nil means a client with a 10 second timeout.
	Client *http.Client
	// Now replaces time.Now, for tests. Nil means time.Now.
	Now func() time.Time
}

// Errors returned by Verify; Middleware answers 401 to each.
var (
	ErrMissing = errors.New("assertion: missing")
	ErrInvalid = errors.New("assertion: invalid")
	ErrKeys    = errors.New("assertion: keys unavailable")
)

// Verifier verifies assertions against authgate's JWKS. It is safe for
// concurrent use.
type Verifier struct {
	cfg Config

	// refresh asks Run to fetch the keys now; running says Run is there
	// to ask.
	refresh chan struct{}
	running atomic.Bool

	mu        sync.Mutex
	keys      map[string]jose.JSONWebKey // by kid
	fetched   time.Time                  // zero before the first fetch
	lastFetch time.Time                  // last attempt, successful or not
}

// New returns a Verifier. Keys are fetched on the first Verify.
func New(cfg Config) (*Verifier, error) {
	var errs []error
	if cfg.JWKSURL == "" {
		errs = append(errs, errors.New("assertion: JWKSURL is required"))
	}
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("assertion: Issuer is required"))
	}
	if cfg.Audience == "" {
		errs = append(errs, errors.New("assertion: Audience is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Header == "" {
		cfg.Header = DefaultHeader
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 5 * time.Minute
	}
	if cfg.MinRefreshInterval == 0 {
		cfg.MinRefreshInterval = 30 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg, refresh: make(chan struct{}, 1)}, nil
}

// Run fetches the keys, then keeps them fresh in the background until ctx
// is done, so that no request waits for a fetch of keys it knows: it
// fetches again when they are MaxAge old, and MinRefreshInterval after a
// failed fetch. Only a kid that is not in the keys yet makes a Verify fetch
// (at most once per MinRefreshInterval). Run returns nil when ctx is done;
// run it at most once per Verifier.
func (v *Verifier) Run(ctx context.Context) error {
	v.running.Store(true)
	defer v.running.Store(false)
	for {
		wait := v.cfg.MinRefreshInterval
		if err := v.refetch(ctx); err == nil {
			wait = v.cfg.MaxAge
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-v.refresh:
			t.Stop()
		}
	}
}

// refetch fetches the keys and keeps them, unless another fetch was
// started less than MinRefreshInterval ago (requests keep asking while the
// keys are stale; a failing endpoint is not hammered).
func (v *Verifier) refetch(ctx context.Context) error {
	v.mu.Lock()
	now := v.cfg.Now()
	if !v.lastFetch.IsZero() && now.Sub(v.lastFetch) < v.cfg.MinRefreshInterval {
		v.mu.Unlock()
		return nil
	}
	v.lastFetch = now
	v.mu.Unlock()
	// Without the lock: requests go on with the keys they have.
	keys, err := v.fetch(ctx)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.keys, v.fetched = keys, now
	v.mu.Unlock()
	return nil
}

// algorithms are the only ones authgate signs with; none and HMAC are
// refused before any key is looked at.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// Verify checks raw: signature under the key its kid names and under that
// key's own algorithm only, iss, aud, exp and iat (with Config.Leeway).
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if raw == "" {
		return nil, ErrMissing
	}
	tok, err := jwt.ParseSigned(raw, algorithms)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return nil, fmt.Errorf("%w: no kid", ErrInvalid)
	}
	h := tok.Headers[0]
	key, err := v.key(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	if key.Algorithm != h.Algorithm {
		return nil, fmt.Errorf("%w: alg %s, but key %s is for %s", ErrInvalid, h.Algorithm, h.KeyID, key.Algorithm)
	}
	var c Claims
	if err := tok.Claims(key.Key, &c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.Expiry == nil || c.IssuedAt == nil {
		return nil, fmt.Errorf("%w: no exp or iat", ErrInvalid)
	}
	std := jwt.Claims{Issuer: c.Issuer, Audience: c.Audience, IssuedAt: c.IssuedAt, Expiry: c.Expiry}
	exp := jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience}, Time: v.cfg.Now()}
	if err := std.ValidateWithLeeway(exp, v.cfg.Leeway); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &c, nil
}

// key returns the key of kid, fetching the JWKS when the cached one is
// stale, or when kid is unknown and the last fetch is older than
// MinRefreshInterval.
func (v *Verifier) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.cfg.Now()
	k, ok := v.keys[kid]
	stale := v.fetched.IsZero() || now.Sub(v.fetched) >= v.cfg.MaxAge
	if ok && !stale {
		return k, nil
	}
	if ok && v.running.Load() {
		// Run refreshes them; this request goes on with the key it has.
		select {
		case v.refresh <- struct{}{}:
		default:
		}
		return k, nil
	}
	if !v.lastFetch.IsZero() && now.Sub(v.lastFetch) < v.cfg.MinRefreshInterval {
		if ok {
			return k, nil // stale but known; the refresh is rate-limited
		}
		if v.fetched.IsZero() {
			return jose.JSONWebKey{}, ErrKeys
		}
		return jose.JSONWebKey{}, fmt.Errorf("%w: unknown kid %q", ErrInvalid, kid)
	}
	v.lastFetch = now
	keys, err := v.fetch(ctx)
	if err != nil {
		if ok {
			return k, nil // keep verifying with the last good keys
		}
		return jose.JSONWebKey{}, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	v.keys, v.fetched = keys, now
	if k, ok = keys[kid]; !ok {
		return jose.JSONWebKey{}, fmt.Errorf("%w: unknown kid %q", ErrInvalid, kid)
	}
	return k, nil
}

func (v *Verifier) fetch(ctx context.Context) (map[string]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	resp, err := v.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	out := make(map[string]jose.JSONWebKey, len(set.Keys))
	for _, k := range set.Keys {
		// Only public keys for the algorithms authgate signs with, each
		// pinned to the algorithm it names.
		if k.KeyID == "" || !k.IsPublic() || k.Use != "sig" || (k.Algorithm != string(jose.ES256) && k.Algorithm != string(jose.EdDSA)) {
			continue
		}
		out[k.KeyID] = k
	}
	return out, nil
}

type ctxKey struct{}

// NewContext returns ctx carrying c.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the claims Middleware verified.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(*Claims)
	return c, ok
}

// Middleware verifies the assertion in Config.Header and calls next with
// the claims in the request context (FromContext); a request without a
// valid assertion gets 401 and does not reach next.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vals := r.Header.Values(v.cfg.Header)
		var raw string
		if len(vals) == 1 {
			raw = strings.TrimSpace(vals[0])
		}
		c, err := v.Verify(r.Context(), raw)
		if err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Content-Length", strconv.Itoa(len("unauthorized\n")))
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, "unauthorized\n")
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
	})
}
