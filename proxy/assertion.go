package proxy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/authgate/authgate/internal/secret"
)

// AssertionConfig configures the signed identity assertion: a compact JWS
// that authgate adds to every allowed request so that an upstream can
// verify who the user is instead of trusting plain X-User-* headers.
type AssertionConfig struct {
	// Enabled adds the assertion to every allowed request (proxy mode and
	// forward-auth answers). Default false.
	Enabled bool `yaml:"enabled"`
	// Issuer is the iss claim. Required when enabled.
	Issuer string `yaml:"issuer"`
	// Audience is the aud claim, overridden per route by
	// routes[].assertion_audience. Empty leaves aud out: upstreams should
	// then not be asked to check it.
	Audience string `yaml:"audience"`
	// TTL is the assertion's lifetime; its exp is never past the token's.
	// Default 60s; must be positive when enabled.
	TTL time.Duration `yaml:"ttl"`
	// Header carries the assertion. Default "X-User-Assertion". It is
	// stripped from client requests in every spelling, like the identity
	// headers.
	Header string `yaml:"header"`
	// Algorithm is ES256 (default, the signing key must be P-256) or EdDSA
	// (an Ed25519 key).
	Algorithm string `yaml:"algorithm"`
	// KeyFiles are PEM files, typically a mounted Secret shared by every
	// replica. The first holds the signing key (PKCS#8, or SEC 1 "EC
	// PRIVATE KEY"); every key is published in the JWKS, so that a new key
	// can be published before it signs and an old one kept until the
	// assertions it signed have expired. Keys after the first may be
	// private or public ("PUBLIC KEY"). Required when enabled: a key
	// generated per process would make an upstream's verification depend
	// on which replica answered.
	KeyFiles []string `yaml:"key_files"`
	// JWKSPath serves the public keys (JWKS) on the public listener, and on
	// the admin listener at the same path. Default "/.well-known/jwks.json".
	JWKSPath string `yaml:"jwks_path"`
}

// Assertion algorithms.
const (
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
)

func defaultAssertionConfig() AssertionConfig {
	return AssertionConfig{
		TTL:       60 * time.Second,
		Header:    "X-User-Assertion",
		Algorithm: AlgES256,
		JWKSPath:  "/.well-known/jwks.json",
	}
}

// validate checks the keys that need no file; LoadAssertionKeys checks
// the files.
func (c AssertionConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if strings.TrimSpace(c.Issuer) == "" {
		errs = append(errs, errors.New("assertion.issuer: required when assertion.enabled is true"))
	}
	if c.TTL <= 0 {
		errs = append(errs, fmt.Errorf("assertion.ttl: %s must be positive", c.TTL))
	}
	if h := c.Header; h == "" || strings.IndexFunc(h, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-')
	}) >= 0 {
		errs = append(errs, fmt.Errorf("assertion.header: %q must be a header name (letters, digits, '-')", h))
	} else {
		m := newIdentityHeaders("X-User-", []string{c.Header})
		for _, n := range neededHeaders {
			if m.isForeign(n) {
				errs = append(errs, fmt.Errorf("assertion.header: %q is a header authgate or the gateway needs", h))
			}
		}
	}
	if c.Algorithm != AlgES256 && c.Algorithm != AlgEdDSA {
		errs = append(errs, fmt.Errorf("assertion.algorithm: %q must be %s or %s", c.Algorithm, AlgES256, AlgEdDSA))
	}
	if len(c.KeyFiles) == 0 {
		errs = append(errs, errors.New("assertion.key_files: required when assertion.enabled is true: every replica must sign with the same key (a mounted Secret), "+
			"or upstreams could not verify whichever replica answered; create one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out assertion.pem"))
	}
	for i, f := range c.KeyFiles {
		if strings.TrimSpace(f) == "" {
			errs = append(errs, fmt.Errorf("assertion.key_files[%d]: empty file name", i))
		}
	}
	if err := checkEndpointPath(c.JWKSPath); err != nil {
		errs = append(errs, fmt.Errorf("assertion.jwks_path: %w", err))
	}
	return errors.Join(errs...)
}

// AssertionKeys are the keys of the assertion: the one that signs, and
// every one that the JWKS publishes (the signing key first).
type AssertionKeys struct {
	signer    crypto.Signer
	alg       string
	kid       string
	published []publicKey
}

type publicKey struct {
	alg, kid string
	jwk      map[string]string
}

// LoadAssertionKeys reads and checks the key files of c: the first must
// hold a private key that matches the algorithm (P-256 for ES256, Ed25519
// for EdDSA); other key types and curves are refused, in every file. It
// returns the zero AssertionKeys when assertions are off.
func LoadAssertionKeys(c AssertionConfig) (AssertionKeys, error) {
	if !c.Enabled {
		return AssertionKeys{}, nil
	}
	if len(c.KeyFiles) == 0 {
		return AssertionKeys{}, errors.New("assertion.key_files: required when assertion.enabled is true")
	}
	const name = "assertion.key_files[0]"
	s, err := secret.ReadFile(name, c.KeyFiles[0])
	if err != nil {
		return AssertionKeys{}, err
	}
	key, err := parsePEMKey(s.Value())
	if err != nil {
		return AssertionKeys{}, fmt.Errorf("%s: %s: %w", name, c.KeyFiles[0], err)
	}
	sg, ok := key.(crypto.Signer)
	if !ok {
		return AssertionKeys{}, fmt.Errorf("%s: %s holds a public key, the signing key (the first) must be private", name, c.KeyFiles[0])
	}
	k, err := NewAssertionKeys(c, sg)
	if err != nil {
		return AssertionKeys{}, fmt.Errorf("%s: %s: %w", name, c.KeyFiles[0], err)
	}
	if err := k.publish(c.KeyFiles[1:], 1); err != nil {
		return AssertionKeys{}, err
	}
	return k, nil
}

// NewAssertionKeys returns the keys with signing key sg and nothing else
// published (`authgate dev` signs with an ephemeral key).
func NewAssertionKeys(c AssertionConfig, sg crypto.Signer) (AssertionKeys, error) {
	pk, err := toPublicKey(sg.Public())
	if err != nil {
		return AssertionKeys{}, err
	}
	if pk.alg != c.Algorithm {
		return AssertionKeys{}, fmt.Errorf("holds an %s key, but assertion.algorithm is %s", pk.alg, c.Algorithm)
	}
	return AssertionKeys{signer: sg, alg: pk.alg, kid: pk.kid, published: []publicKey{pk}}, nil
}

// publish adds the public keys of files, key_files[first...], to the JWKS.
func (k *AssertionKeys) publish(files []string, first int) error {
	for i, f := range files {
		name := fmt.Sprintf("assertion.key_files[%d]", first+i)
		s, err := secret.ReadFile(name, f)
		if err != nil {
			return err
		}
		key, err := parsePEMKey(s.Value())
		if err != nil {
			return fmt.Errorf("%s: %s: %w", name, f, err)
		}
		if p, ok := key.(crypto.Signer); ok {
			key = p.Public()
		}
		pp, err := toPublicKey(key)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", name, f, err)
		}
		if !slices.ContainsFunc(k.published, func(p publicKey) bool { return p.kid == pp.kid }) {
			k.published = append(k.published, pp)
		}
	}
	return nil
}

// parsePEMKey parses the first PEM block of s: a PKCS#8 or SEC 1 private
// key, or a PKIX public key.
func parsePEMKey(s string) (any, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	switch b.Type {
	case "PRIVATE KEY":
		return x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(b.Bytes)
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(b.Bytes)
	}
	return nil, fmt.Errorf("PEM block %q is not a key (PRIVATE KEY, EC PRIVATE KEY or PUBLIC KEY)", b.Type)
}

var b64 = base64.RawURLEncoding

// toPublicKey returns the JWK of a P-256 or Ed25519 public key; its kid is
// the RFC 7638 thumbprint, the same on every replica.
func toPublicKey(k any) (publicKey, error) {
	var pk publicKey
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return pk, fmt.Errorf("ECDSA curve %s is not P-256", k.Curve.Params().Name)
		}
		e, err := k.ECDH()
		if err != nil {
			return pk, err
		}
		raw := e.Bytes() // 0x04 || x || y
		pk.alg = AlgES256
		pk.jwk = map[string]string{"kty": "EC", "crv": "P-256", "x": b64.EncodeToString(raw[1:33]), "y": b64.EncodeToString(raw[33:])}
		pk.kid = thumbprint(`{"crv":"P-256","kty":"EC","x":"` + pk.jwk["x"] + `","y":"` + pk.jwk["y"] + `"}`)
	case ed25519.PublicKey:
		pk.alg = AlgEdDSA
		pk.jwk = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64.EncodeToString(k)}
		pk.kid = thumbprint(`{"crv":"Ed25519","kty":"OKP","x":"` + pk.jwk["x"] + `"}`)
	default:
		return pk, fmt.Errorf("%T is not a P-256 ECDSA or Ed25519 key", k)
	}
	pk.jwk["alg"], pk.jwk["kid"], pk.jwk["use"] = pk.alg, pk.kid, "sig"
	return pk, nil
}

func thumbprint(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:])
}

// JWKS returns the JSON Web Key Set of the published keys.
func (k AssertionKeys) JWKS() []byte {
	keys := make([]map[string]string, len(k.published))
	for i, p := range k.published {
		keys[i] = p.jwk
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// JWKSHandler serves the JWKS; upstreams may cache it for a few minutes.
func (k AssertionKeys) JWKSHandler() http.Handler {
	body := k.JWKS()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(body)
	})
}

// assertionClaims are the assertion's claims.
type assertionClaims struct {
	Issuer        string `json:"iss"`
	Audience      string `json:"aud,omitempty"`
	Subject       string `json:"sub,omitempty"`
	IssuedAt      int64  `json:"iat"`
	Expiry        int64  `json:"exp"`
	FirebaseUID   string `json:"firebase_uid,omitempty"`
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified"`
	UserType      string `json:"user_type,omitempty"`
	Provider      string `json:"provider,omitempty"`
	Federation    string `json:"federation,omitempty"`
	TokenBalance  *int64 `json:"token_balance,omitempty"`
}

// asserter signs assertions and caches them per (identity, audience), so
// that a user's requests share one signature for most of its lifetime.
type asserter struct {
	cfg    AssertionConfig
	keys   AssertionKeys
	header string // canonical
	// prefix is the base64url JWS header and its dot.
	prefix string
	seed   maphash.Seed

	mu    sync.RWMutex
	cache map[uint64]*cachedAssertion
}

type cachedAssertion struct {
	aud   string
	vals  [numSlots]string
	jws   []string  // the header value, shared by every request that reuses it
	exp   time.Time // the assertion's exp
	fresh time.Time // reused until then
}

// maxCachedAssertions bounds the cache; when full it starts over.
const maxCachedAssertions = 1 << 16

func newAsserter(cfg AssertionConfig, keys AssertionKeys) *asserter {
	hdr, _ := json.Marshal(map[string]string{"alg": keys.alg, "kid": keys.kid, "typ": "JWT"})
	return &asserter{
		cfg:    cfg,
		keys:   keys,
		header: http.CanonicalHeaderKey(cfg.Header),
		prefix: b64.EncodeToString(hdr) + ".",
		seed:   maphash.MakeSeed(),
		cache:  map[uint64]*cachedAssertion{},
	}
}

// assertion returns the signed assertion for p as seen through vals (its
// header values), for audience aud, at now.
// The returned slice is shared: callers put it in a header and never
// modify it.
func (a *asserter) assertion(p *principal, vals *[numSlots]string, aud string, now time.Time) ([]string, error) {
	var hh maphash.Hash
	hh.SetSeed(a.seed)
	hh.WriteString(aud)
	for _, v := range vals {
		hh.WriteByte(0)
		hh.WriteString(v)
	}
	key := hh.Sum64()
	tokenExp := p.id.ExpiresAt
	a.mu.RLock()
	c := a.cache[key]
	a.mu.RUnlock()
	if c != nil && c.aud == aud && c.vals == *vals && now.Before(c.fresh) && (tokenExp.IsZero() || !c.exp.After(tokenExp)) {
		return c.jws, nil
	}
	exp := now.Add(a.cfg.TTL)
	if !tokenExp.IsZero() && tokenExp.Before(exp) {
		exp = tokenExp
	}
	jws, err := a.sign(p, vals, aud, now, exp)
	if err != nil {
		return nil, err
	}
	// Reused until three quarters of its lifetime have passed, so an
	// upstream always gets at least a quarter of it.
	c = &cachedAssertion{aud: aud, vals: *vals, jws: []string{jws}, exp: exp, fresh: now.Add(exp.Sub(now) * 3 / 4)}
	a.mu.Lock()
	if len(a.cache) >= maxCachedAssertions {
		clear(a.cache)
	}
	a.cache[key] = c
	a.mu.Unlock()
	return c.jws, nil
}

func (a *asserter) sign(p *principal, vals *[numSlots]string, aud string, iat, exp time.Time) (string, error) {
	c := assertionClaims{
		Issuer:        a.cfg.Issuer,
		Audience:      aud,
		Subject:       vals[slotUserID],
		IssuedAt:      iat.Unix(),
		Expiry:        exp.Unix(),
		FirebaseUID:   vals[slotFirebaseUID],
		Email:         vals[slotEmail],
		EmailVerified: p.id.EmailVerified,
		UserType:      vals[slotType],
		Provider:      vals[slotProvider],
		Federation:    vals[slotFederation],
	}
	if p.user.ID != "" {
		tb := p.user.TokenBalance
		c.TokenBalance = &tb
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("assertion claims: %w", err)
	}
	var sb strings.Builder
	sb.Grow(len(a.prefix) + b64.EncodedLen(len(payload)) + 1 + b64.EncodedLen(ed25519.SignatureSize))
	sb.WriteString(a.prefix)
	sb.WriteString(b64.EncodeToString(payload))
	input := sb.String()
	var sig []byte
	switch k := a.keys.signer.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	case *ecdsa.PrivateKey:
		d := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			return "", fmt.Errorf("sign assertion: %w", err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	default:
		return "", fmt.Errorf("sign assertion: unsupported key %T", k)
	}
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(sig))
	return sb.String(), nil
}
