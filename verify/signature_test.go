package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authgate/authgate/verify/verifytest"
)

// TestVerifyAnyMatchesGoJose checks the signature check against go-jose's,
// which it replaced, as an oracle: for every algorithm, every key type and
// a set of tampered tokens, both must give the same answer, and the valid
// tokens must verify (so that the comparison is not vacuous).
func TestVerifyAnyMatchesGoJose(t *testing.T) {
	claims := verifytest.Claims("alice", time.Now())
	rsaKey := verifytest.RSAKey(t, "rsa")
	ec256 := verifytest.ECKey(t, "ec256")
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384 := &verifytest.Key{ID: "ec384", Alg: jose.ES384, Private: p384}
	ed := verifytest.Ed25519Key(t, "ed")
	secret := []byte(verifytest.Secret + verifytest.Secret) // 64+ bytes: every HS size
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	type signed struct {
		alg jose.SignatureAlgorithm
		tok string
	}
	var toks []signed
	for _, alg := range []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512} {
		toks = append(toks, signed{alg, verifytest.HMAC(t, alg, secret, claims, nil)})
	}
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512} {
		toks = append(toks, signed{alg, rsaKey.SignAlg(t, alg, claims, nil)})
	}
	// A correct HS256 MAC under a 31-byte secret: RFC 7518 refuses the key
	// however right the MAC (go-jose will not even sign with it).
	short := verifytest.HMAC(t, jose.HS256, secret, claims, nil)
	short = short[:strings.LastIndexByte(short, '.')]
	mac := hmac.New(sha256.New, secret[:31])
	mac.Write([]byte(short))
	toks = append(toks, signed{jose.HS256, short + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))})
	toks = append(toks, signed{jose.ES256, ec256.Sign(t, claims, nil)}, signed{jose.ES384, ec384.Sign(t, claims, nil)}, signed{jose.EdDSA, ed.Sign(t, claims, nil)})

	keys := []any{
		secret, secret[:31], // the second is shorter than any hash: never a valid HMAC key
		rsaKey.Public(), &otherRSA.PublicKey, ec256.Public(), ec384.Public(), ed.Public(),
	}
	algs := []jose.SignatureAlgorithm{
		jose.HS256, jose.HS384, jose.HS512, jose.RS256, jose.RS384, jose.RS512,
		jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	}
	tamper := func(tok string) []string {
		h, rest, _ := strings.Cut(tok, ".")
		p, s, _ := strings.Cut(rest, ".")
		flip := func(seg string) string {
			b := []byte(seg)
			if b[len(b)/2] == 'A' {
				b[len(b)/2] = 'B'
			} else {
				b[len(b)/2] = 'A'
			}
			return string(b)
		}
		return []string{
			tok,
			h + "." + flip(p) + "." + s,
			h + "." + p + "." + flip(s),
			h + "." + p + "." + s[:len(s)-4],
		}
	}

	valid := 0
	for _, st := range toks {
		for _, raw := range tamper(st.tok) {
			tk, err := parse(raw)
			if err != nil {
				continue // a truncation that no longer decodes
			}
			for _, alg := range algs {
				for _, key := range keys {
					got := tk.verifyAny(alg, []any{key}) == nil
					want := false
					if jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{alg}); err == nil {
						_, err := jws.Verify(key)
						want = err == nil
					}
					if got != want {
						t.Errorf("%s token checked as %s with %T: verifyAny says %v, go-jose %v", st.alg, alg, key, got, want)
					}
					if got {
						valid++
					}
				}
			}
		}
	}
	// Each untampered token verifies under its own algorithm and key, but
	// the one with the short secret.
	if valid != len(toks)-1 {
		t.Errorf("%d (token, algorithm, key) triples verified, want exactly the %d untampered tokens", valid, len(toks)-1)
	}
}

// TestHMACKeyMatchesSecret checks the legacy verifier's HMAC keys, which
// reuse their keyed MACs, against the plain secret (checked against
// go-jose above): the same answer for every HMAC algorithm, secret
// length and tampering, also when a MAC is reused, and the valid tokens
// verify.
func TestHMACKeyMatchesSecret(t *testing.T) {
	claims := verifytest.Claims("alice", time.Now())
	secret := []byte(verifytest.Secret + verifytest.Secret) // 64+ bytes: every HS size
	secrets := [][]byte{secret, secret[:48], secret[:31]}   // the last is too short for any
	keys := make([]*hmacKey, len(secrets))
	for i, s := range secrets {
		keys[i] = &hmacKey{secret: s}
	}
	// What go-jose signs: no secret shorter than the hash.
	var toks []string
	for _, st := range []struct {
		alg jose.SignatureAlgorithm
		key []byte
	}{{jose.HS256, secrets[0]}, {jose.HS256, secrets[1]}, {jose.HS384, secrets[0]}, {jose.HS384, secrets[1]}, {jose.HS512, secrets[0]}} {
		tok := verifytest.HMAC(t, st.alg, st.key, claims, nil)
		toks = append(toks, tok, tok[:len(tok)-2]+"AA", strings.Replace(tok, ".", ".e30", 1))
	}
	valid := 0
	for range 3 { // the later rounds reuse the MACs
		for j, raw := range toks {
			tk, err := parse(raw)
			if err != nil {
				continue
			}
			for _, alg := range []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512, jose.RS256} {
				for i, k := range keys {
					got := tk.verifyAny(alg, []any{k}) == nil
					want := tk.verifyAny(alg, []any{secrets[i]}) == nil
					if got != want {
						t.Errorf("toks[%d] checked as %s with a %d-byte secret: hmacKey says %v, the secret %v", j, alg, len(secrets[i]), got, want)
					}
					if got {
						valid++
					}
				}
			}
		}
	}
	// Each untampered token verifies under its own algorithm with its own
	// secret, in each round.
	if want := 3 * 5; valid != want {
		t.Errorf("%d (token, algorithm, key) triples verified, want %d", valid, want)
	}
}
