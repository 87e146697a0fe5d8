package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strings"
	"sync"
	"time"
	"unsafe"

	jose "github.com/go-jose/go-jose/v4"
)

// MaxTokenBytes is the default bound on the size of a token that is parsed
// at all (Config.MaxTokenBytes). Real JWTs are well under 2 KiB; anything
// larger is refused before decoding.
const MaxTokenBytes = 8 << 10

// maxTokenBytesLimit is the most Config.MaxTokenBytes may allow, and what
// parse itself refuses.
const maxTokenBytesLimit = 64 << 10

// header is the part of a JOSE header that is inspected before any signature
// is checked. Fields that would let a token choose its own key are decoded
// only to refuse them.
type header struct {
	Alg, Kid, Typ string
	// ownKey is set when the header has jwk, jku, x5u or x5c, whatever
	// its value (null too); extension when it has crit or b64.
	ownKey, extension bool
}

// jsonHeader is what encoding/json decodes a header into.
type jsonHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
	JWK  json.RawMessage `json:"jwk"`
	JKU  json.RawMessage `json:"jku"`
	X5U  json.RawMessage `json:"x5u"`
	X5C  json.RawMessage `json:"x5c"`
	B64  json.RawMessage `json:"b64"`
}

// decodeHeader decodes a JOSE header as json.Unmarshal decodes it into a
// jsonHeader; scanHeader does it for the headers issuers write, with
// less work, and leaves the others to encoding/json.
func decodeHeader(b []byte, h *header) error {
	if scanHeader(b, h) {
		return nil
	}
	var j jsonHeader
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = header{
		Alg: j.Alg, Kid: j.Kid, Typ: j.Typ,
		ownKey:    j.JWK != nil || j.JKU != nil || j.X5U != nil || j.X5C != nil,
		extension: j.Crit != nil || j.B64 != nil,
	}
	return nil
}

// token is a compact JWS split and decoded but not yet verified. Nothing in
// it may be trusted until a verifier checked the signature over raw.
type token struct {
	raw string
	sig string // the signature segment, still encoded
	// sigBytes is sig decoded.
	sigBytes []byte
	header   header
	claims   claimSet
	// members has room for the claims of most tokens, so that claims
	// need no allocation of its own.
	members [16]member
	// buf holds the decoded segments: sigBytes and claims.json are in it.
	buf []byte
	// digest has room for the hash of the signing input.
	digest [sha512.Size]byte
}

// parse splits and decodes a compact JWS. It checks shape and size only.
func parse(raw string) (*token, error) {
	t := new(token)
	if err := t.parse(raw); err != nil {
		return nil, err
	}
	return t, nil
}

// parse is parse into t, which it overwrites, reusing t.buf.
func (t *token) parse(raw string) error {
	if len(raw) == 0 || len(raw) > maxTokenBytesLimit {
		return fmt.Errorf("%w: size %d", ErrMalformed, len(raw))
	}
	h, rest, ok := strings.Cut(raw, ".")
	if !ok {
		return fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	p, sig, ok := strings.Cut(rest, ".")
	// An empty signature is well-formed (alg "none" has one); it is refused
	// with the algorithm, as ErrInvalid, like every other forgery.
	if !ok || strings.IndexByte(sig, '.') >= 0 || h == "" || p == "" {
		return fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	t.raw, t.sig = raw, sig
	// The three segments are decoded into one buffer: the payload stays
	// with the token, its claims decoded as they are read, and so does
	// the signature.
	n := segmentEncoding.DecodedLen(len(h)) + segmentEncoding.DecodedLen(len(p)) + segmentEncoding.DecodedLen(len(sig))
	if cap(t.buf) < n {
		t.buf = make([]byte, 0, n)
	}
	buf := t.buf[:0]
	var err error
	var hb, pb []byte
	if hb, buf, err = appendSegment(buf, h); err != nil {
		return fmt.Errorf("%w: header encoding", ErrMalformed)
	}
	if err := decodeHeader(hb, &t.header); err != nil {
		return fmt.Errorf("%w: header json", ErrMalformed)
	}
	if pb, buf, err = appendSegment(buf, p); err != nil {
		return fmt.Errorf("%w: payload encoding", ErrMalformed)
	}
	// Decoded strictly here, before anything else, so that a signed token
	// has one spelling.
	if t.sigBytes, _, err = appendSegment(buf, sig); err != nil {
		return fmt.Errorf("%w: signature encoding", ErrMalformed)
	}
	if t.claims, err = scanClaims(pb, t.members[:0]); err != nil {
		return fmt.Errorf("%w: payload json: %w", ErrMalformed, err)
	}
	return nil
}

// maxReusedBuffer is the largest buffer a recycled token keeps: that of
// any real token, not of the largest one allowed.
const maxReusedBuffer = 4 << 10

// tokenPool recycles tokens, with their buffers and room for claims,
// from one verification to the next.
type tokenPool struct{ p sync.Pool }

// parse is parse into a recycled token. Once nothing refers to the token
// or its buffer any more (what the claims decode to is copied out of it),
// the caller gives it back with put.
func (tp *tokenPool) parse(raw string) (*token, error) {
	t, _ := tp.p.Get().(*token)
	if t == nil {
		t = new(token)
	}
	if err := t.parse(raw); err != nil {
		tp.put(t)
		return nil, err
	}
	return t, nil
}

func (tp *tokenPool) put(t *token) {
	buf := t.buf
	if cap(buf) > maxReusedBuffer {
		buf = nil
	}
	*t = token{buf: buf[:0]}
	tp.p.Put(t)
}

// segmentEncoding decodes a JWS segment in its canonical spelling only: it
// refuses non-zero trailing bits, which the lenient decoder drops.
var segmentEncoding = base64.RawURLEncoding.Strict()

// decodeSegment decodes one base64url segment. The decoder skips CR and LF
// even in strict mode, and go-jose decodes leniently, so without this one
// signed token would verify under many spellings, each a fresh cache key.
func decodeSegment(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("line break in segment")
	}
	return segmentEncoding.DecodeString(s)
}

// appendSegment is decodeSegment into the free capacity of buf, which must
// have room for it. It returns the decoded bytes and buf with them.
func appendSegment(buf []byte, s string) (seg, all []byte, err error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, nil, errors.New("line break in segment")
	}
	dst := buf[len(buf) : len(buf)+segmentEncoding.DecodedLen(len(s))]
	n, err := segmentEncoding.Decode(dst, readOnly(s))
	if err != nil {
		return nil, nil, err
	}
	return dst[:n:n], buf[:len(buf)+n], nil
}

// verifySignature checks the JWS signature of t with key under alg, which
// the caller has already matched against its allow-list and the key type.
func (t *token) verifySignature(alg jose.SignatureAlgorithm, key any) error {
	return t.verifyAny(alg, []any{key})
}

// verifyAny succeeds if any of keys verifies the signature (key rotation).
//
// The signature is checked here with the standard library's primitives,
// on the segments parse already split and decoded, rather than by handing
// the token to go-jose, which would split, decode and unmarshal it all
// again (about a sixth of a new token's cost, issue 6). The checks are
// go-jose's own (RFC 7518 §3): HMAC keys at least as long as the hash, a
// constant-time MAC comparison, ECDSA on the algorithm's one curve with
// a fixed-size r||s, RSA PKCS #1 v1.5 or PSS with the algorithm's hash.
func (t *token) verifyAny(alg jose.SignatureAlgorithm, keys []any) error {
	signed, sig := t.raw[:len(t.raw)-len(t.sig)-1], t.sigBytes
	hash, ok := algHash[alg]
	if !ok {
		return fmt.Errorf("%w: algorithm %q not supported", ErrInvalid, truncate(string(alg)))
	}
	var digest []byte // the hash of the signing input, for RSA and ECDSA
	for _, k := range keys {
		var ok bool
		// Loaded keys come prepared; a bare *rsa.PublicKey (the tests'
		// oracle comparisons) is prepared for this check only.
		switch k := prepareKey(k).(type) {
		case []byte:
			// A bare secret (the tests' oracle comparisons): keyed for
			// this check only, through the one HMAC path.
			ok = (&hmacKey{secret: k}).verify(alg, hash, signed, sig)
		case *hmacKey:
			ok = k.verify(alg, hash, signed, sig)
		case *rsaKey:
			if hash == 0 {
				break // EdDSA with an RSA key
			}
			if digest == nil {
				digest = hashOf(t.digest[:0], hash, signed)
			}
			ok = verifyRSA(alg, hash, k, digest, sig)
		case *ecdsa.PublicKey:
			if hash == 0 {
				break
			}
			if digest == nil {
				digest = hashOf(t.digest[:0], hash, signed)
			}
			ok = verifyECDSA(alg, k, digest, sig)
		case ed25519.PublicKey:
			ok = alg == jose.EdDSA && len(k) == ed25519.PublicKeySize && ed25519.Verify(k, readOnly(signed), sig)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("%w: signature", ErrInvalid)
}

// algHash is the hash of each supported algorithm; EdDSA hashes inside the
// signature scheme and has none of its own.
var algHash = map[jose.SignatureAlgorithm]crypto.Hash{
	jose.HS256: crypto.SHA256, jose.HS384: crypto.SHA384, jose.HS512: crypto.SHA512,
	jose.RS256: crypto.SHA256, jose.RS384: crypto.SHA384, jose.RS512: crypto.SHA512,
	jose.PS256: crypto.SHA256, jose.PS384: crypto.SHA384, jose.PS512: crypto.SHA512,
	jose.ES256: crypto.SHA256, jose.ES384: crypto.SHA384, jose.ES512: crypto.SHA512,
	jose.EdDSA: 0,
}

// hashOf appends the hash h of signed to dst.
func hashOf(dst []byte, h crypto.Hash, signed string) []byte {
	switch h {
	case crypto.SHA256:
		sum := sha256.Sum256(readOnly(signed))
		return append(dst, sum[:]...)
	case crypto.SHA384:
		sum := sha512.Sum384(readOnly(signed))
		return append(dst, sum[:]...)
	case crypto.SHA512:
		sum := sha512.Sum512(readOnly(signed))
		return append(dst, sum[:]...)
	}
	hh := h.New()
	hh.Write(readOnly(signed))
	return hh.Sum(dst)
}

// readOnly returns the bytes of s without copying them, for functions
// that neither keep nor modify their input (a hash's Write, say): the
// signing input is most of a token, and a copy of it per check would be
// the largest allocation of a verification.
func readOnly(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// hmacIndex returns the index of alg among the HMAC algorithms, or -1 when
// key may not be used with it.
func hmacIndex(alg jose.SignatureAlgorithm, h crypto.Hash, key []byte) int {
	i := -1
	switch alg {
	case jose.HS256:
		i = 0
	case jose.HS384:
		i = 1
	case jose.HS512:
		i = 2
	default:
		return -1 // never an HMAC secret as, say, an RS256 key
	}
	if len(key) < h.Size() {
		return -1 // RFC 7518 §3.2: at least as long as the hash output
	}
	return i
}

// hmacKey is an HMAC secret that keeps its keyed MACs for reuse: keying
// one hashes the secret's two pads, in six allocations, on every check
// otherwise.
type hmacKey struct {
	secret []byte
	macs   [3]sync.Pool // of *keyedMAC, one per HMAC algorithm
}

type keyedMAC struct {
	mac hash.Hash
	sum [sha512.Size]byte
}

// verify checks the HMAC sig of signed under alg with k's secret, which
// must be at least as long as the hash (RFC 7518 §3.2).
func (k *hmacKey) verify(alg jose.SignatureAlgorithm, h crypto.Hash, signed string, sig []byte) bool {
	i := hmacIndex(alg, h, k.secret)
	if i < 0 {
		return false
	}
	m, _ := k.macs[i].Get().(*keyedMAC)
	if m == nil {
		m = &keyedMAC{mac: hmac.New(h.New, k.secret)}
	}
	m.mac.Reset()
	m.mac.Write(readOnly(signed))
	ok := hmac.Equal(m.mac.Sum(m.sum[:0]), sig)
	k.macs[i].Put(m)
	return ok
}

func verifyRSA(alg jose.SignatureAlgorithm, h crypto.Hash, key *rsaKey, digest, sig []byte) bool {
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512:
		return key.verifyPKCS1v15(h, digest, sig)
	case jose.PS256, jose.PS384, jose.PS512:
		return rsa.VerifyPSS(key.pub, h, digest, sig, nil) == nil
	}
	return false
}

// ecCurves is the one curve and coordinate size of each ECDSA algorithm.
var ecCurves = map[jose.SignatureAlgorithm]struct {
	curve elliptic.Curve
	size  int
}{
	jose.ES256: {elliptic.P256(), 32}, jose.ES384: {elliptic.P384(), 48}, jose.ES512: {elliptic.P521(), 66},
}

func verifyECDSA(alg jose.SignatureAlgorithm, key *ecdsa.PublicKey, digest, sig []byte) bool {
	c, ok := ecCurves[alg]
	if !ok || key.Curve != c.curve || len(sig) != 2*c.size {
		return false
	}
	r := new(big.Int).SetBytes(sig[:c.size])
	s := new(big.Int).SetBytes(sig[c.size:])
	return ecdsa.Verify(key, digest, r, s)
}

// keyKind is the family of a public key.
type keyKind int

const (
	kindUnknown keyKind = iota
	kindRSA
	kindEC
	kindEd25519
)

func kindOf(k any) keyKind {
	switch k.(type) {
	case *rsaKey, *rsa.PublicKey:
		return kindRSA
	case *ecdsa.PublicKey:
		return kindEC
	case ed25519.PublicKey:
		return kindEd25519
	}
	return kindUnknown
}

// checkHeader refuses headers that would let the token pick its own key or
// demand processing we do not do, and algorithms outside allowed.
func (t *token) checkHeader(allowed []string) error {
	h := &t.header
	switch {
	case h.ownKey:
		return fmt.Errorf("%w: header carries its own key reference", ErrInvalid)
	case h.extension:
		return fmt.Errorf("%w: critical header extensions are not supported", ErrInvalid)
	}
	for _, a := range allowed {
		if h.Alg == a {
			return nil
		}
	}
	return fmt.Errorf("%w: algorithm %q not allowed", ErrInvalid, truncate(h.Alg))
}

// str returns a string claim. A claim of any other type reads as absent:
// a number or a list is not an email, a name or a role. A claim name
// configured as "" is not read, even if a token has a claim "".
func (t *token) str(name string) string {
	if name == "" {
		return ""
	}
	s, _ := t.claims.str(name)
	return s
}

// userID returns a string claim, or an integer claim in its decimal
// spelling, for legacy platforms whose user ids are numbers. Fractions,
// exponents and every other type read as absent.
func (t *token) userID(name string) string {
	if name == "" {
		return ""
	}
	if s, ok := t.claims.str(name); ok {
		return s
	}
	if n, ok := t.claims.number(name); ok && isDigits(n) {
		return string(n)
	}
	return ""
}

func isDigits(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// boolean returns a boolean claim: only JSON true is true. The string
// "true" is not, or a token could say a thing the issuer never meant.
func (t *token) boolean(name string) bool {
	return name != "" && t.claims.kind(name) == 't'
}

// stringBoolean is boolean that also reads the string "true" as true, for
// a legacy issuer whose old service wrote booleans as strings
// (LegacyConfig.StringBooleans).
func (t *token) stringBoolean(name string) bool {
	return t.boolean(name) || name != "" && t.claims.strIs(name, "true")
}

// numericDate returns a NumericDate claim (seconds since the epoch).
func (t *token) numericDate(name string) (time.Time, bool, error) {
	if !t.claims.has(name) {
		return time.Time{}, false, nil
	}
	n, ok := t.claims.number(name)
	if !ok {
		return time.Time{}, false, fmt.Errorf("%w: %s is not a number", ErrInvalid, name)
	}
	f, err := float(n)
	if err != nil || f < 0 || f > 1<<40 {
		return time.Time{}, false, fmt.Errorf("%w: %s out of range", ErrInvalid, name)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true, nil
}

// audience reports whether want is in the aud claim (a string or a list).
func (t *token) audience(want string) bool {
	return t.claims.strIs("aud", want) || t.claims.inArray("aud", want)
}

// checkTimes applies exp (required), nbf and iat with leeway.
func (t *token) checkTimes(now time.Time, leeway time.Duration) (iat, exp time.Time, err error) {
	exp, ok, err := t.numericDate("exp")
	if err != nil {
		return iat, exp, err
	}
	if !ok {
		return iat, exp, fmt.Errorf("%w: no exp claim", ErrInvalid)
	}
	if !now.Before(exp.Add(leeway)) {
		return iat, exp, fmt.Errorf("%w: exp passed", ErrExpired)
	}
	if nbf, ok, err := t.numericDate("nbf"); err != nil {
		return iat, exp, err
	} else if ok && now.Add(leeway).Before(nbf) {
		return iat, exp, fmt.Errorf("%w: not valid yet (nbf)", ErrExpired)
	}
	iat, ok, err = t.numericDate("iat")
	if err != nil {
		return iat, exp, err
	}
	if ok && now.Add(leeway).Before(iat) {
		return iat, exp, fmt.Errorf("%w: issued in the future (iat)", ErrInvalid)
	}
	return iat, exp, nil
}

// truncate keeps attacker-controlled strings short in error messages.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
