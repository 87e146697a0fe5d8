// Package verifytest mints tokens for tests of authgate and of code built on
// it, and serves the keys that verify them from a local key endpoint. It is
// for tests only: nothing in the binary imports it.
package verifytest

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Secret is a 32-byte HMAC key suitable for tests.
const Secret = "authgate-test-secret-0123456789abcdef"

// Claims returns a fresh claim set for a legacy token of subject sub that
// expires in an hour from now.
func Claims(sub string, now time.Time) map[string]any {
	return map[string]any{
		"sub":            sub,
		"iss":            "https://auth.example.test",
		"aud":            "platform",
		"email":          sub + "@example.test",
		"email_verified": true,
		"username":       sub,
		"user_type":      "user",
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
	}
}

// HMAC signs claims with key using alg (HS256, HS384 or HS512). Extra header
// fields in hdr are added to the protected header.
func HMAC(tb testing.TB, alg jose.SignatureAlgorithm, key []byte, claims map[string]any, hdr map[string]any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range hdr {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatalf("new signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatalf("marshal claims: %v", err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return tok
}

// Unsigned builds a token with the given header and claims and an arbitrary
// signature segment sig (which may be empty), for forgery cases such as
// alg "none".
func Unsigned(tb testing.TB, hdr, claims map[string]any, sig string) string {
	tb.Helper()
	h, err := json.Marshal(hdr)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "." + sig
}

// FirebaseClaims returns the claims of a Firebase ID token of project for
// user uid, as Firebase Authentication writes them for an email and
// password sign-in at now, with the custom claim user_type set to "user".
// It expires in an hour.
func FirebaseClaims(project, uid string, now time.Time) map[string]any {
	return map[string]any{
		"iss":            "https://securetoken.google.com/" + project,
		"aud":            project,
		"auth_time":      now.Add(-time.Minute).Unix(),
		"user_id":        uid,
		"sub":            uid,
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
		"email":          uid + "@example.test",
		"email_verified": true,
		"name":           "Test User " + uid,
		"user_type":      "user",
		"firebase": map[string]any{
			"identities":       map[string]any{"email": []string{uid + "@example.test"}},
			"sign_in_provider": "password",
		},
	}
}
