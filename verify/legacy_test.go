package verify_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

const (
	// testIssuer is the iss that verifytest.Claims writes.
	testIssuer = "https://auth.example.test"
	// oldSecret is the previous signing key, still accepted while a rotation
	// is in progress.
	oldSecret = "authgate-old-secret-abcdefghijklmnopqrstuvwxyz"
	// otherSecret is a key authgate was never given: anything it signed is
	// a forgery.
	otherSecret = "someone-elses-secret-0123456789abcdefghijklmn"
	// longSecret is long enough for HS512 (RFC 7518 §3.2: 64 bytes).
	longSecret = "authgate-long-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
)

// testNow is the fixed clock every test verifies against.
var testNow = time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC)

// legacyConfig is the legacy issuer the table tests run against: HS256 only,
// issuer and audience required, default leeway (30s), default claim names.
func legacyConfig() verify.LegacyConfig {
	return configtest.Fill(verify.LegacyConfig{
		Enabled:  true,
		Issuer:   testIssuer,
		Audience: "platform",
		Secrets:  []secret.Secret{verifytest.Secret},
	}, verify.DefaultLegacyConfig())
}

// newVerifier builds a Verifier for cfg with the clock fixed at testNow and
// no metrics registry.
func newVerifier(tb testing.TB, cfg verify.LegacyConfig) *verify.Verifier {
	tb.Helper()
	v, err := verify.New(configtest.Fill(verify.Config{Legacy: cfg}, verify.DefaultConfig()), zaptest.NewLogger(tb), nil,
		verify.WithClock(func() time.Time { return testNow }))
	if err != nil {
		tb.Fatalf("New(%v) = %v, want nil error", cfg, err)
	}
	return v
}

// deleteClaim, as a value in claimsWith, removes the claim.
type deleteClaim struct{}

// claimsWith returns verifytest.Claims for alice at testNow with kv (name,
// value pairs) applied on top.
func claimsWith(kv ...any) map[string]any {
	c := verifytest.Claims("alice", testNow)
	for i := 0; i < len(kv); i += 2 {
		name := kv[i].(string)
		if _, ok := kv[i+1].(deleteClaim); ok {
			delete(c, name)
			continue
		}
		c[name] = kv[i+1]
	}
	return c
}

// hs256 signs claims with the test secret.
func hs256(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return verifytest.HMAC(tb, jose.HS256, []byte(verifytest.Secret), claims, nil)
}

// withPayload replaces the payload of tok with claims, keeping the header and
// the signature: what an attacker does to a token they hold.
func withPayload(tb testing.TB, tok string, claims map[string]any) string {
	tb.Helper()
	p, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return withRawPayload(tok, base64.RawURLEncoding.EncodeToString(p))
}

// withRawPayload replaces the encoded payload segment of tok with p.
func withRawPayload(tok, p string) string {
	parts := strings.Split(tok, ".")
	return parts[0] + "." + p + "." + parts[2]
}

// b64 encodes s as a JWS segment.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// legacyCase is one token and what verifying it against legacyConfig must
// give. The cases are shared with FuzzLegacyVerify as its seed corpus.
type legacyCase struct {
	name        string
	giveToken   string
	wantErr     error
	wantSubject string
}

func legacyCases(tb testing.TB) []legacyCase {
	tb.Helper()
	valid := hs256(tb, claimsWith())
	hdr := func(extra map[string]any) string {
		return verifytest.HMAC(tb, jose.HS256, []byte(verifytest.Secret), claimsWith(), extra)
	}
	unsigned := func(h map[string]any, sig string) string {
		return verifytest.Unsigned(tb, h, claimsWith(), sig)
	}
	fakeSig := b64("not a signature at all, just 32b")
	secs := func(d time.Duration) int64 { return testNow.Add(d).Unix() }
	huge := hs256(tb, claimsWith("pad", strings.Repeat("x", verify.MaxTokenBytes)))

	return []legacyCase{
		{name: "valid", giveToken: valid, wantSubject: "alice"},

		// Signatures and headers.
		{name: "signed with another key", giveToken: verifytest.HMAC(tb, jose.HS256, []byte(otherSecret), claimsWith(), nil), wantErr: verify.ErrInvalid},
		{name: "payload changed after signing", giveToken: withPayload(tb, valid, claimsWith("sub", "admin", "user_type", "admin")), wantErr: verify.ErrInvalid},
		{name: "signature of another token", giveToken: withPayload(tb, hs256(tb, claimsWith("sub", "bob")), claimsWith()), wantErr: verify.ErrInvalid},
		{name: "signature stripped", giveToken: strings.TrimRight(valid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"), wantErr: verify.ErrInvalid},
		{name: "signature truncated", giveToken: valid[:len(valid)-4], wantErr: verify.ErrInvalid},
		{name: "alg none, empty signature", giveToken: unsigned(map[string]any{"alg": "none", "typ": "JWT"}, ""), wantErr: verify.ErrInvalid},
		{name: "alg none, some signature", giveToken: unsigned(map[string]any{"alg": "none", "typ": "JWT"}, fakeSig), wantErr: verify.ErrInvalid},
		{name: "alg None", giveToken: unsigned(map[string]any{"alg": "None", "typ": "JWT"}, ""), wantErr: verify.ErrInvalid},
		{name: "alg NONE", giveToken: unsigned(map[string]any{"alg": "NONE"}, fakeSig), wantErr: verify.ErrInvalid},
		{name: "alg missing", giveToken: unsigned(map[string]any{"typ": "JWT"}, fakeSig), wantErr: verify.ErrInvalid},
		{name: "alg lowercase hs256", giveToken: unsigned(map[string]any{"alg": "hs256"}, fakeSig), wantErr: verify.ErrInvalid},
		{name: "alg RS256 on an HMAC issuer", giveToken: unsigned(map[string]any{"alg": "RS256", "typ": "JWT"}, fakeSig), wantErr: verify.ErrInvalid},
		{name: "alg ES256 on an HMAC issuer", giveToken: unsigned(map[string]any{"alg": "ES256", "typ": "JWT"}, fakeSig), wantErr: verify.ErrInvalid},
		{name: "embedded jwk", giveToken: hdr(map[string]any{"jwk": map[string]any{"kty": "oct", "k": b64(otherSecret)}}), wantErr: verify.ErrInvalid},
		{name: "jku", giveToken: hdr(map[string]any{"jku": "https://attacker.example/jwks.json"}), wantErr: verify.ErrInvalid},
		{name: "x5u", giveToken: hdr(map[string]any{"x5u": "https://attacker.example/cert.pem"}), wantErr: verify.ErrInvalid},
		{name: "x5c", giveToken: hdr(map[string]any{"x5c": []string{"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"}}), wantErr: verify.ErrInvalid},
		{name: "jwk null", giveToken: hdr(map[string]any{"jwk": nil}), wantErr: verify.ErrInvalid},
		{name: "crit", giveToken: hdr(map[string]any{"crit": []string{"exp"}, "exp": 0}), wantErr: verify.ErrInvalid},
		{name: "b64", giveToken: hdr(map[string]any{"b64": true}), wantErr: verify.ErrInvalid},

		// Lifetime; default leeway is 30s.
		{name: "expired", giveToken: hs256(tb, claimsWith("exp", secs(-31*time.Second))), wantErr: verify.ErrExpired},
		{name: "expired long ago", giveToken: hs256(tb, claimsWith("iat", secs(-48*time.Hour), "exp", secs(-24*time.Hour))), wantErr: verify.ErrExpired},
		{name: "expired at the end of the leeway", giveToken: hs256(tb, claimsWith("exp", secs(-30*time.Second))), wantErr: verify.ErrExpired},
		{name: "expired within leeway", giveToken: hs256(tb, claimsWith("exp", secs(-29*time.Second))), wantSubject: "alice"},
		{name: "exp with fraction", giveToken: hs256(tb, claimsWith("exp", json.Number(fmt.Sprintf("%d.5", secs(time.Minute))))), wantSubject: "alice"},
		{name: "nbf in the future", giveToken: hs256(tb, claimsWith("nbf", secs(31*time.Second))), wantErr: verify.ErrExpired},
		{name: "nbf within leeway", giveToken: hs256(tb, claimsWith("nbf", secs(29*time.Second))), wantSubject: "alice"},
		{name: "nbf passed", giveToken: hs256(tb, claimsWith("nbf", secs(-time.Minute))), wantSubject: "alice"},
		{name: "nbf as a string", giveToken: hs256(tb, claimsWith("nbf", "0")), wantErr: verify.ErrInvalid},
		{name: "iat in the future", giveToken: hs256(tb, claimsWith("iat", secs(31*time.Second))), wantErr: verify.ErrInvalid},
		{name: "iat within leeway", giveToken: hs256(tb, claimsWith("iat", secs(29*time.Second))), wantSubject: "alice"},
		{name: "iat missing", giveToken: hs256(tb, claimsWith("iat", deleteClaim{})), wantSubject: "alice"},
		{name: "iat as a string", giveToken: hs256(tb, claimsWith("iat", fmt.Sprint(secs(0)))), wantErr: verify.ErrInvalid},
		{name: "exp missing", giveToken: hs256(tb, claimsWith("exp", deleteClaim{})), wantErr: verify.ErrInvalid},
		{name: "exp as a string", giveToken: hs256(tb, claimsWith("exp", fmt.Sprint(secs(time.Hour)))), wantErr: verify.ErrInvalid},
		{name: "exp null", giveToken: hs256(tb, claimsWith("exp", nil)), wantErr: verify.ErrInvalid},
		{name: "exp negative", giveToken: hs256(tb, claimsWith("exp", -1)), wantErr: verify.ErrInvalid},
		{name: "exp beyond range", giveToken: hs256(tb, claimsWith("exp", json.Number("1e300"))), wantErr: verify.ErrInvalid},
		{name: "exp overflows float64", giveToken: hs256(tb, claimsWith("exp", json.Number("1e400"))), wantErr: verify.ErrInvalid},

		// Audience and issuer.
		{name: "audience list containing ours", giveToken: hs256(tb, claimsWith("aud", []string{"billing", "platform"})), wantSubject: "alice"},
		{name: "audience wrong", giveToken: hs256(tb, claimsWith("aud", "billing")), wantErr: verify.ErrInvalid},
		{name: "audience list without ours", giveToken: hs256(tb, claimsWith("aud", []string{"billing", "Platform"})), wantErr: verify.ErrInvalid},
		{name: "audience empty list", giveToken: hs256(tb, claimsWith("aud", []string{})), wantErr: verify.ErrInvalid},
		{name: "audience missing", giveToken: hs256(tb, claimsWith("aud", deleteClaim{})), wantErr: verify.ErrInvalid},
		{name: "audience not a string", giveToken: hs256(tb, claimsWith("aud", 1)), wantErr: verify.ErrInvalid},
		{name: "issuer wrong", giveToken: hs256(tb, claimsWith("iss", "https://attacker.example")), wantErr: verify.ErrUnknownIssuer},
		{name: "issuer differs in case", giveToken: hs256(tb, claimsWith("iss", "https://AUTH.example.test")), wantErr: verify.ErrUnknownIssuer},
		{name: "issuer missing", giveToken: hs256(tb, claimsWith("iss", deleteClaim{})), wantErr: verify.ErrUnknownIssuer},
		{name: "issuer not a string", giveToken: hs256(tb, claimsWith("iss", []string{testIssuer})), wantErr: verify.ErrUnknownIssuer},

		// Subject.
		{name: "subject missing", giveToken: hs256(tb, claimsWith("sub", deleteClaim{})), wantErr: verify.ErrInvalid},
		{name: "subject empty", giveToken: hs256(tb, claimsWith("sub", "")), wantErr: verify.ErrInvalid},
		{name: "subject not a string", giveToken: hs256(tb, claimsWith("sub", true)), wantErr: verify.ErrInvalid},
		{name: "subject numeric", giveToken: hs256(tb, claimsWith("sub", json.Number("12345678901234567890"))), wantSubject: "12345678901234567890"},

		// Shape.
		{name: "empty", giveToken: "", wantErr: verify.ErrMalformed},
		{name: "no dot", giveToken: "eyJhbGciOiJIUzI1NiJ9", wantErr: verify.ErrMalformed},
		{name: "one dot", giveToken: strings.Join(strings.Split(valid, ".")[:2], "."), wantErr: verify.ErrMalformed},
		{name: "four parts", giveToken: valid + "." + fakeSig, wantErr: verify.ErrMalformed},
		{name: "dots only", giveToken: "..", wantErr: verify.ErrMalformed},
		{name: "empty header", giveToken: valid[strings.IndexByte(valid, '.'):], wantErr: verify.ErrMalformed},
		{name: "empty payload", giveToken: withRawPayload(valid, ""), wantErr: verify.ErrMalformed},
		{name: "header bad base64", giveToken: "eyJhbGciOiJIUzI1NiJ9!" + valid[strings.IndexByte(valid, '.'):], wantErr: verify.ErrMalformed},
		{name: "header padded base64", giveToken: "eyJhbGciOiJIUzI1NiJ9=" + valid[strings.IndexByte(valid, '.'):], wantErr: verify.ErrMalformed},
		{name: "header not json", giveToken: b64("HS256") + valid[strings.IndexByte(valid, '.'):], wantErr: verify.ErrMalformed},
		{name: "header json array", giveToken: b64(`["HS256"]`) + valid[strings.IndexByte(valid, '.'):], wantErr: verify.ErrMalformed},
		{name: "payload bad base64", giveToken: withRawPayload(valid, "e30*"), wantErr: verify.ErrMalformed},
		{name: "payload standard base64", giveToken: withRawPayload(valid, base64.StdEncoding.EncodeToString([]byte(`{"sub":"bob"}`))), wantErr: verify.ErrMalformed},
		{name: "payload not json", giveToken: withRawPayload(valid, b64("sub=alice")), wantErr: verify.ErrMalformed},
		{name: "payload json array", giveToken: withRawPayload(valid, b64(`[{"sub":"alice"}]`)), wantErr: verify.ErrMalformed},
		{name: "payload json string", giveToken: withRawPayload(valid, b64(`"alice"`)), wantErr: verify.ErrMalformed},
		{name: "payload json null", giveToken: withRawPayload(valid, b64(`null`)), wantErr: verify.ErrMalformed},
		{name: "payload truncated json", giveToken: withRawPayload(valid, b64(`{"sub":"alice"`)), wantErr: verify.ErrMalformed},
		{name: "payload trailing data", giveToken: withRawPayload(valid, b64(`{"sub":"alice"}{"sub":"admin"}`)), wantErr: verify.ErrMalformed},
		{name: "signature with non-zero trailing bits", giveToken: valid[:len(valid)-1] + string(rune(valid[len(valid)-1]+1)), wantErr: verify.ErrMalformed},
		{name: "line feed in signature", giveToken: valid[:len(valid)-5] + "\n" + valid[len(valid)-5:], wantErr: verify.ErrMalformed},
		{name: "carriage returns in signature", giveToken: valid[:len(valid)-9] + "\r\r\r" + valid[len(valid)-9:], wantErr: verify.ErrMalformed},
		{name: "line feed in payload", giveToken: valid[:strings.IndexByte(valid, '.')+5] + "\n" + valid[strings.IndexByte(valid, '.')+5:], wantErr: verify.ErrMalformed},
		{name: "payload with non-zero trailing bits", giveToken: withRawPayload(valid, b64(`{"a":1}`)[:9]+"R"), wantErr: verify.ErrMalformed},
		{name: "larger than MaxTokenBytes", giveToken: huge, wantErr: verify.ErrMalformed},
		{name: "100000 dots", giveToken: strings.Repeat(".", 100000), wantErr: verify.ErrMalformed},
		{name: "1 MiB of base64", giveToken: strings.Repeat("A", 1<<20), wantErr: verify.ErrMalformed},
		{name: "bearer prefix left on", giveToken: "Bearer " + valid, wantErr: verify.ErrMalformed},
	}
}

func TestVerifyLegacy(t *testing.T) {
	v := newVerifier(t, legacyConfig())

	for _, tt := range legacyCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), tt.giveToken)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if gotReason, wantReason := verify.Reason(err), verify.Reason(tt.wantErr); gotReason != wantReason {
				t.Errorf("Reason(%v) = %q, want %q", err, gotReason, wantReason)
			}
			if got.Subject != tt.wantSubject {
				t.Errorf("Verify().Subject = %q, want %q", got.Subject, tt.wantSubject)
			}
		})
	}
}

// TestVerifyLegacyErrorIdentity checks that a refused token yields no
// identity at all, so a caller that forgets the error still has nothing.
func TestVerifyLegacyErrorIdentity(t *testing.T) {
	v := newVerifier(t, legacyConfig())

	for _, tt := range legacyCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), tt.giveToken)
			if gotZero, wantZero := reflect.ValueOf(got).IsZero(), err != nil; gotZero != wantZero {
				t.Errorf("Verify() = %+v, %v; identity zero = %t, want %t", got, err, gotZero, wantZero)
			}
		})
	}
}

func TestVerifyLegacyIdentity(t *testing.T) {
	iat := testNow.Add(-time.Minute)
	exp := testNow.Add(time.Hour)

	tests := []struct {
		name           string
		giveClaimNames verify.ClaimNames
		giveClaims     map[string]any
		want           verify.Identity
	}{
		{
			name:           "default claim names",
			giveClaimNames: verify.DefaultLegacyConfig().Claims,
			giveClaims: map[string]any{
				"iss": testIssuer, "aud": "platform", "iat": iat.Unix(), "exp": exp.Unix(),
				"sub": "alice", "email": "alice@example.test", "email_verified": true,
				"username": "Alice", "user_type": "admin",
			},
			want: verify.Identity{
				Provider: verify.ProviderLegacy, Issuer: testIssuer, Subject: "alice",
				Email: "alice@example.test", EmailVerified: true, Name: "Alice", Role: "admin",
				IssuedAt: iat, ExpiresAt: exp,
				Claims: map[string]any{
					"iss": testIssuer, "aud": "platform",
					"iat": json.Number(fmt.Sprint(iat.Unix())), "exp": json.Number(fmt.Sprint(exp.Unix())),
					"sub": "alice", "email": "alice@example.test", "email_verified": true,
					"username": "Alice", "user_type": "admin",
				},
			},
		},
		{
			name: "configured claim names and a numeric user id",
			giveClaimNames: verify.ClaimNames{
				UserID: "user_id", Email: "mail", EmailVerified: "mail_verified", Role: "role", Name: "display_name",
			},
			giveClaims: map[string]any{
				"iss": testIssuer, "aud": []string{"platform"}, "iat": iat.Unix(), "exp": exp.Unix(),
				// sub, email and the rest are decoys: the configured names win.
				"sub": "decoy", "email": "decoy@example.test", "email_verified": false, "username": "decoy", "user_type": "admin",
				"user_id":       json.Number("12345678901234567890"),
				"mail":          "bob@example.test",
				"mail_verified": true,
				"role":          "user",
				"display_name":  "Bob",
				"balance":       json.Number("1.10"),
				"groups":        []string{"a", "b"},
			},
			want: verify.Identity{
				Provider: verify.ProviderLegacy, Issuer: testIssuer, Subject: "12345678901234567890",
				Email: "bob@example.test", EmailVerified: true, Name: "Bob", Role: "user",
				IssuedAt: iat, ExpiresAt: exp,
				Claims: map[string]any{
					"iss": testIssuer, "aud": []any{"platform"},
					"iat": json.Number(fmt.Sprint(iat.Unix())), "exp": json.Number(fmt.Sprint(exp.Unix())),
					"sub": "decoy", "email": "decoy@example.test", "email_verified": false, "username": "decoy", "user_type": "admin",
					"user_id":       json.Number("12345678901234567890"),
					"mail":          "bob@example.test",
					"mail_verified": true,
					"role":          "user",
					"display_name":  "Bob",
					"balance":       json.Number("1.10"),
					"groups":        []any{"a", "b"},
				},
			},
		},
		{
			name:           "optional claims absent",
			giveClaimNames: verify.DefaultLegacyConfig().Claims,
			giveClaims: map[string]any{
				"iss": testIssuer, "aud": "platform", "exp": exp.Unix(), "sub": json.Number("42"),
			},
			want: verify.Identity{
				Provider: verify.ProviderLegacy, Issuer: testIssuer, Subject: "42", ExpiresAt: exp,
				Claims: map[string]any{
					"iss": testIssuer, "aud": "platform", "exp": json.Number(fmt.Sprint(exp.Unix())), "sub": json.Number("42"),
				},
			},
		},
		{
			// A claim name set to "" is not read, even from a token that
			// has a claim named "".
			name:           "claim names set to \"\": not read",
			giveClaimNames: verify.ClaimNames{UserID: "sub"},
			giveClaims: map[string]any{
				"iss": testIssuer, "aud": "platform", "exp": exp.Unix(), "sub": "42", "": "admin",
				"email": "bob@example.test", "email_verified": true, "user_type": "admin", "username": "bob",
			},
			want: verify.Identity{
				Provider: verify.ProviderLegacy, Issuer: testIssuer, Subject: "42", ExpiresAt: exp,
				Claims: map[string]any{
					"iss": testIssuer, "aud": "platform", "exp": json.Number(fmt.Sprint(exp.Unix())), "sub": "42", "": "admin",
					"email": "bob@example.test", "email_verified": true, "user_type": "admin", "username": "bob",
				},
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := legacyConfig()
			cfg.Claims = tt.giveClaimNames
			v := newVerifier(t, cfg)

			got, err := v.Verify(t.Context(), hs256(t, tt.giveClaims))
			if err != nil {
				t.Fatalf("Verify() error = %v, want nil", err)
			}
			assertIdentity(t, got, tt.want)
		})
	}
}

// assertIdentity compares identities, times by instant.
func assertIdentity(t *testing.T, got, want verify.Identity) {
	t.Helper()
	if !got.IssuedAt.Equal(want.IssuedAt) {
		t.Errorf("IssuedAt = %v, want %v", got.IssuedAt, want.IssuedAt)
	}
	if !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, want.ExpiresAt)
	}
	if !got.AuthTime.Equal(want.AuthTime) {
		t.Errorf("AuthTime = %v, want %v", got.AuthTime, want.AuthTime)
	}
	got.IssuedAt, got.ExpiresAt, got.AuthTime = time.Time{}, time.Time{}, time.Time{}
	want.IssuedAt, want.ExpiresAt, want.AuthTime = time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Verify() = %+v,\nwant %+v", got, want)
	}
}

// TestVerifyLegacyEmailVerified checks that only a JSON true verifies an
// email, unless the issuer is configured with string_booleans; then the
// string "true" does too, and nothing else.
func TestVerifyLegacyEmailVerified(t *testing.T) {
	tests := []struct {
		name               string
		giveStringBooleans bool
		give               any
		want               bool
	}{
		{name: "true", give: true, want: true},
		{name: "false", give: false, want: false},
		{name: "string true", give: "true", want: false},
		{name: "string false", give: "false", want: false},
		{name: "number 1", give: 1, want: false},
		{name: "list of true", give: []any{true}, want: false},
		{name: "object", give: map[string]any{"value": true}, want: false},
		{name: "null", give: nil, want: false},
		{name: "missing", give: deleteClaim{}, want: false},
		{name: "string_booleans: true", giveStringBooleans: true, give: true, want: true},
		{name: "string_booleans: string true", giveStringBooleans: true, give: "true", want: true},
		{name: "string_booleans: string false", giveStringBooleans: true, give: "false", want: false},
		{name: "string_booleans: string True", giveStringBooleans: true, give: "True", want: false},
		{name: "string_booleans: string yes", giveStringBooleans: true, give: "yes", want: false},
		{name: "string_booleans: string 1", giveStringBooleans: true, give: "1", want: false},
		{name: "string_booleans: number 1", giveStringBooleans: true, give: 1, want: false},
		{name: "string_booleans: list of string true", giveStringBooleans: true, give: []any{"true"}, want: false},
		{name: "string_booleans: missing", giveStringBooleans: true, give: deleteClaim{}, want: false},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := legacyConfig()
			cfg.StringBooleans = tt.giveStringBooleans
			v := newVerifier(t, cfg)
			got, err := v.Verify(t.Context(), hs256(t, claimsWith("email_verified", tt.give)))
			if err != nil {
				t.Fatalf("Verify() error = %v, want nil", err)
			}
			if got.EmailVerified != tt.want {
				t.Errorf("Verify().EmailVerified = %t, want %t", got.EmailVerified, tt.want)
			}
		})
	}
}

func TestVerifyLegacyAlgorithms(t *testing.T) {
	tests := []struct {
		name           string
		giveAlgorithms []string
		giveAlg        jose.SignatureAlgorithm
		wantErr        error
	}{
		{name: "default allows HS256", giveAlgorithms: verify.DefaultLegacyConfig().Algorithms, giveAlg: jose.HS256},
		{name: "default refuses HS384", giveAlgorithms: verify.DefaultLegacyConfig().Algorithms, giveAlg: jose.HS384, wantErr: verify.ErrInvalid},
		{name: "default refuses HS512", giveAlgorithms: verify.DefaultLegacyConfig().Algorithms, giveAlg: jose.HS512, wantErr: verify.ErrInvalid},
		{name: "HS256 only refuses HS384", giveAlgorithms: []string{"HS256"}, giveAlg: jose.HS384, wantErr: verify.ErrInvalid},
		{name: "HS384 allowed", giveAlgorithms: []string{"HS256", "HS384"}, giveAlg: jose.HS384},
		{name: "HS512 allowed", giveAlgorithms: []string{"HS256", "HS512"}, giveAlg: jose.HS512},
		{name: "HS512 not in HS256+HS384", giveAlgorithms: []string{"HS256", "HS384"}, giveAlg: jose.HS512, wantErr: verify.ErrInvalid},
		{name: "HS256 not in HS384+HS512", giveAlgorithms: []string{"HS384", "HS512"}, giveAlg: jose.HS256, wantErr: verify.ErrInvalid},
		{name: "all three, HS512", giveAlgorithms: []string{"HS512", "HS384", "HS256"}, giveAlg: jose.HS512},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := legacyConfig()
			cfg.Algorithms = tt.giveAlgorithms
			cfg.Secrets = []secret.Secret{longSecret}
			v := newVerifier(t, cfg)
			tok := verifytest.HMAC(t, tt.giveAlg, []byte(longSecret), claimsWith(), nil)

			_, err := v.Verify(t.Context(), tok)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify(%s token) error = %v, want %v", tt.giveAlg, err, tt.wantErr)
			}
		})
	}
}

func TestVerifyLegacySecretRotation(t *testing.T) {
	cfg := legacyConfig()
	cfg.Secrets = []secret.Secret{verifytest.Secret, oldSecret}
	v := newVerifier(t, cfg)

	tests := []struct {
		name       string
		giveSecret string
		wantErr    error
	}{
		{name: "new secret", giveSecret: verifytest.Secret},
		{name: "old secret", giveSecret: oldSecret},
		{name: "unknown secret", giveSecret: otherSecret, wantErr: verify.ErrInvalid},
		{name: "new secret with a byte appended", giveSecret: verifytest.Secret + "x", wantErr: verify.ErrInvalid},
		{name: "both secrets concatenated", giveSecret: verifytest.Secret + oldSecret, wantErr: verify.ErrInvalid},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := verifytest.HMAC(t, jose.HS256, []byte(tt.giveSecret), claimsWith(), nil)
			_, err := v.Verify(t.Context(), tok)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyLegacyIssuer(t *testing.T) {
	tests := []struct {
		name        string
		giveIssuer  string
		giveClaims  map[string]any
		wantErr     error
		wantIssuer  string
		wantSubject string
	}{
		{name: "configured issuer", giveIssuer: testIssuer, giveClaims: claimsWith(), wantIssuer: testIssuer, wantSubject: "alice"},
		{name: "configured issuer, token without iss", giveIssuer: testIssuer, giveClaims: claimsWith("iss", deleteClaim{}), wantErr: verify.ErrUnknownIssuer},
		{name: "configured issuer, token with empty iss", giveIssuer: testIssuer, giveClaims: claimsWith("iss", ""), wantErr: verify.ErrUnknownIssuer},
		{name: "configured issuer, other iss", giveIssuer: testIssuer, giveClaims: claimsWith("iss", "https://firebase.example"), wantErr: verify.ErrUnknownIssuer},
		{name: "no issuer, token without iss", giveClaims: claimsWith("iss", deleteClaim{}), wantSubject: "alice"},
		{name: "no issuer, token with empty iss", giveClaims: claimsWith("iss", ""), wantSubject: "alice"},
		{name: "no issuer, token with iss", giveClaims: claimsWith(), wantErr: verify.ErrUnknownIssuer},
		{name: "no issuer, token with null iss", giveClaims: claimsWith("iss", nil), wantErr: verify.ErrUnknownIssuer},
		{name: "no issuer, token with numeric iss", giveClaims: claimsWith("iss", 0), wantErr: verify.ErrUnknownIssuer},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := legacyConfig()
			cfg.Issuer = tt.giveIssuer
			v := newVerifier(t, cfg)

			got, err := v.Verify(t.Context(), hs256(t, tt.giveClaims))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if got.Issuer != tt.wantIssuer {
				t.Errorf("Verify().Issuer = %q, want %q", got.Issuer, tt.wantIssuer)
			}
			if got.Subject != tt.wantSubject {
				t.Errorf("Verify().Subject = %q, want %q", got.Subject, tt.wantSubject)
			}
		})
	}
}

func TestVerifyLegacyLeeway(t *testing.T) {
	tests := []struct {
		name       string
		giveLeeway time.Duration
		giveExp    time.Duration
		wantErr    error
	}{
		{name: "default 30s, 20s late", giveLeeway: verify.DefaultLegacyConfig().Leeway, giveExp: -20 * time.Second},
		{name: "default 30s, 40s late", giveLeeway: verify.DefaultLegacyConfig().Leeway, giveExp: -40 * time.Second, wantErr: verify.ErrExpired},
		{name: "0s, exp now", giveLeeway: 0, giveExp: 0, wantErr: verify.ErrExpired},
		{name: "0s, 1s early", giveLeeway: 0, giveExp: time.Second},
		{name: "0s, 20s late", giveLeeway: 0, giveExp: -20 * time.Second, wantErr: verify.ErrExpired},
		{name: "5s, 4s late", giveLeeway: 5 * time.Second, giveExp: -4 * time.Second},
		{name: "5s, 6s late", giveLeeway: 5 * time.Second, giveExp: -6 * time.Second, wantErr: verify.ErrExpired},
		{name: "10m, 9m late", giveLeeway: 10 * time.Minute, giveExp: -9 * time.Minute},
		{name: "10m, 11m late", giveLeeway: 10 * time.Minute, giveExp: -11 * time.Minute, wantErr: verify.ErrExpired},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := legacyConfig()
			cfg.Leeway = tt.giveLeeway
			v := newVerifier(t, cfg)

			_, err := v.Verify(t.Context(), hs256(t, claimsWith("exp", testNow.Add(tt.giveExp).Unix())))
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestVerifyLegacyClock checks that the injected clock, not the wall clock,
// decides expiry: one token is valid before its exp and expired after.
func TestVerifyLegacyClock(t *testing.T) {
	tok := hs256(t, claimsWith()) // exp is testNow + 1h

	tests := []struct {
		name    string
		giveNow time.Time
		wantErr error
	}{
		{name: "at issue", giveNow: testNow},
		{name: "59m later", giveNow: testNow.Add(59 * time.Minute)},
		{name: "2h later", giveNow: testNow.Add(2 * time.Hour), wantErr: verify.ErrExpired},
		{name: "a year later", giveNow: testNow.AddDate(1, 0, 0), wantErr: verify.ErrExpired},
		{name: "before issue beyond leeway", giveNow: testNow.Add(-time.Minute), wantErr: verify.ErrInvalid},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := verify.New(configtest.Fill(verify.Config{Legacy: legacyConfig()}, verify.DefaultConfig()), zaptest.NewLogger(t), nil,
				verify.WithClock(func() time.Time { return tt.giveNow }))
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			_, err = v.Verify(t.Context(), tok)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() at %v error = %v, want %v", tt.giveNow, err, tt.wantErr)
			}
		})
	}
}

// TestVerifyLegacySizeLimit checks both sides of MaxTokenBytes with tokens
// that are otherwise valid, so only the size decides.
func TestVerifyLegacySizeLimit(t *testing.T) {
	v := newVerifier(t, legacyConfig())

	var under, over string
	for n := verify.MaxTokenBytes*3/4 - 512; over == ""; n++ {
		tok := hs256(t, claimsWith("pad", strings.Repeat("x", n)))
		if len(tok) <= verify.MaxTokenBytes {
			under = tok
			continue
		}
		over = tok
	}

	tests := []struct {
		name      string
		giveToken string
		wantErr   error
	}{
		{name: fmt.Sprintf("%d bytes", len(under)), giveToken: under},
		{name: fmt.Sprintf("%d bytes", len(over)), giveToken: over, wantErr: verify.ErrMalformed},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), tt.giveToken)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestVerifyLegacyErrorsOmitToken checks that error messages, which end up in
// logs, do not repeat the token or its claims.
func TestVerifyLegacyErrorsOmitToken(t *testing.T) {
	v := newVerifier(t, legacyConfig())
	secretClaims := claimsWith("email", "carol-private@example.test", "exp", testNow.Add(-time.Hour).Unix())

	tests := []struct {
		name      string
		giveToken string
	}{
		{name: "expired", giveToken: hs256(t, secretClaims)},
		{name: "forged", giveToken: verifytest.HMAC(t, jose.HS256, []byte(otherSecret), claimsWith("email", "carol-private@example.test"), nil)},
		{name: "wrong audience", giveToken: hs256(t, claimsWith("email", "carol-private@example.test", "aud", "billing"))},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), tt.giveToken)
			if err == nil {
				t.Fatal("Verify() error = nil, want an error")
			}
			for _, leak := range []string{tt.giveToken, strings.Split(tt.giveToken, ".")[1], "carol-private@example.test"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("Verify() error = %q, contains %q", err, leak)
				}
			}
		})
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		name string
		give error
		want string
	}{
		{name: "nil", give: nil, want: "ok"},
		{name: "malformed", give: verify.ErrMalformed, want: "malformed"},
		{name: "unknown issuer", give: verify.ErrUnknownIssuer, want: "unknown_issuer"},
		{name: "invalid", give: verify.ErrInvalid, want: "invalid"},
		{name: "expired", give: verify.ErrExpired, want: "expired"},
		{name: "not responsible", give: verify.ErrNotResponsible, want: "invalid"},
		{name: "keys unavailable", give: verify.ErrKeysUnavailable, want: "keys_unavailable"},
		{name: "wrapped expired", give: fmt.Errorf("verify legacy token: %w", verify.ErrExpired), want: "expired"},
		{name: "joined", give: errors.Join(errors.New("x"), verify.ErrInvalid), want: "invalid"},
		{name: "canceled", give: fmt.Errorf("verify: %w", context.Canceled), want: "canceled"},
		{name: "deadline", give: context.DeadlineExceeded, want: "canceled"},
		{name: "other", give: errors.New("boom"), want: "error"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := verify.Reason(tt.give); got != tt.want {
				t.Errorf("Reason(%v) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	writeFile := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodFile := writeFile("good", verifytest.Secret+"\n")
	shortFile := writeFile("short", "short\n")
	emptyFile := writeFile("empty", "\n")
	missingFile := filepath.Join(dir, "missing")

	legacy := func(edit func(c *verify.LegacyConfig)) verify.Config {
		c := legacyConfig()
		edit(&c)
		return configtest.Fill(verify.Config{Legacy: c}, verify.DefaultConfig())
	}

	tests := []struct {
		name     string
		give     verify.Config
		wantErrs []string // substrings of each reported problem, in order
	}{
		{name: "valid", give: legacy(func(c *verify.LegacyConfig) {})},
		{name: "valid with every option", give: legacy(func(c *verify.LegacyConfig) {
			c.Leeway = 10 * time.Minute
			c.Algorithms = []string{"HS256", "HS384", "HS512"}
			c.Secrets = []secret.Secret{longSecret}
			c.SecretFiles = nil
			c.Claims = verify.ClaimNames{UserID: "uid"}
		})},
		{name: "secret from a file only", give: legacy(func(c *verify.LegacyConfig) {
			c.Secrets = nil
			c.SecretFiles = []string{goodFile}
		})},
		{name: "nothing enabled", give: configtest.Fill(verify.Config{}, verify.DefaultConfig()), wantErrs: []string{
			"no issuer is enabled",
		}},
		{name: "disabled legacy is not validated", give: configtest.Fill(verify.Config{Legacy: configtest.Fill(verify.LegacyConfig{Secrets: []secret.Secret{"x"}}, verify.DefaultLegacyConfig())}, verify.DefaultConfig()), wantErrs: []string{
			"no issuer is enabled",
		}},
		{name: "secret too short", give: legacy(func(c *verify.LegacyConfig) { c.Secrets = []secret.Secret{"short"} }), wantErrs: []string{
			"legacy.secrets[0]: 5 bytes is too short",
		}},
		{name: "second secret too short", give: legacy(func(c *verify.LegacyConfig) { c.Secrets = []secret.Secret{verifytest.Secret, "short"} }), wantErrs: []string{
			"legacy.secrets[1]: 5 bytes is too short",
		}},
		{name: "short secret after an empty one", give: legacy(func(c *verify.LegacyConfig) { c.Secrets = []secret.Secret{"", "short"} }), wantErrs: []string{
			"legacy.secrets[1]: 5 bytes is too short",
		}},
		{name: "secret file too short", give: legacy(func(c *verify.LegacyConfig) {
			c.Secrets = nil
			c.SecretFiles = []string{goodFile, shortFile}
		}), wantErrs: []string{
			"legacy.secret_files[1]: 5 bytes is too short",
		}},
		{name: "secret too short for HS384", give: legacy(func(c *verify.LegacyConfig) {
			c.Algorithms = []string{"HS384"}
			c.Secrets = []secret.Secret{secret.Secret(strings.Repeat("k", 47))}
		}), wantErrs: []string{
			"legacy.secrets[0]: 47 bytes is too short",
		}},
		{name: "secret too short for HS512", give: legacy(func(c *verify.LegacyConfig) {
			c.Algorithms = []string{"HS256", "HS512"}
			c.Secrets = []secret.Secret{secret.Secret(strings.Repeat("k", 63))}
		}), wantErrs: []string{
			"legacy.secrets[0]: 63 bytes is too short",
		}},
		{name: "secret long enough for HS512", give: legacy(func(c *verify.LegacyConfig) {
			c.Algorithms = []string{"HS512"}
			c.Secrets = []secret.Secret{secret.Secret(strings.Repeat("k", 64))}
		})},
		{name: "unsupported algorithms", give: legacy(func(c *verify.LegacyConfig) { c.Algorithms = []string{"XS256", "HS256", "none", "hs256"} }), wantErrs: []string{
			`legacy.algorithms[0]: "XS256" is not supported`,
			`legacy.algorithms[2]: "none" is not supported`,
			`legacy.algorithms[3]: "hs256" is not supported`,
		}},
		{name: "public-key algorithm without keys", give: legacy(func(c *verify.LegacyConfig) { c.Algorithms = []string{"HS256", "RS256"} }), wantErrs: []string{
			"legacy.public_key_files: a public-key algorithm is allowed but neither public_key_files nor jwks.url is set",
		}},
		{name: "secrets without an HMAC algorithm", give: legacy(func(c *verify.LegacyConfig) {
			c.Algorithms = []string{"RS256"}
			c.JWKS.URL = "https://keys.example.test/jwks"
		}), wantErrs: []string{
			"legacy.secrets: set, but algorithms allows no HMAC algorithm",
		}},
		{name: "no secret", give: legacy(func(c *verify.LegacyConfig) { c.Secrets = nil }), wantErrs: []string{
			"legacy.secrets: an HMAC algorithm is allowed but no secret is set",
		}},
		{name: "only empty secrets", give: legacy(func(c *verify.LegacyConfig) { c.Secrets = []secret.Secret{"", ""} }), wantErrs: []string{
			"legacy.secrets: an HMAC algorithm is allowed but no secret is set",
		}},
		{name: "unreadable secret file", give: legacy(func(c *verify.LegacyConfig) { c.SecretFiles = []string{missingFile} }), wantErrs: []string{
			fmt.Sprintf("legacy.secret_files[0]: open %s: no such file", missingFile),
		}},
		{name: "secret file is a directory", give: legacy(func(c *verify.LegacyConfig) { c.SecretFiles = []string{goodFile, dir} }), wantErrs: []string{
			fmt.Sprintf("legacy.secret_files[1]: read %s: is a directory", dir),
		}},
		{name: "empty secret file", give: legacy(func(c *verify.LegacyConfig) { c.SecretFiles = []string{emptyFile} }), wantErrs: []string{
			fmt.Sprintf("legacy.secret_files[0]: %s is empty", emptyFile),
		}},
		{name: "negative leeway", give: legacy(func(c *verify.LegacyConfig) { c.Leeway = -time.Second }), wantErrs: []string{
			"legacy.leeway: ",
		}},
		{name: "leeway too long", give: legacy(func(c *verify.LegacyConfig) { c.Leeway = 10*time.Minute + time.Second }), wantErrs: []string{
			"legacy.leeway: ",
		}},
		{name: "every problem at once", give: legacy(func(c *verify.LegacyConfig) {
			c.Leeway = time.Hour
			c.Algorithms = []string{"XS256", "HS256", "ES256"}
			c.Secrets = []secret.Secret{"short"}
			c.SecretFiles = []string{missingFile, emptyFile}
		}), wantErrs: []string{
			"legacy.leeway: ",
			`legacy.algorithms[0]: "XS256" is not supported`,
			fmt.Sprintf("legacy.secret_files[0]: open %s: no such file", missingFile),
			fmt.Sprintf("legacy.secret_files[1]: %s is empty", emptyFile),
			"legacy.secrets[0]: 5 bytes is too short",
			"legacy.public_key_files: a public-key algorithm is allowed",
		}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := configerr.List(tt.give.Validate())
			if len(got) != len(tt.wantErrs) {
				t.Fatalf("Validate() = %q, want %d problems: %q", got, len(tt.wantErrs), tt.wantErrs)
			}
			for i := range got {
				if !strings.Contains(got[i].Error(), tt.wantErrs[i]) {
					t.Errorf("Validate() problem %d = %q, want it to contain %q", i, got[i], tt.wantErrs[i])
				}
			}
		})
	}
}

// TestConfigValidateHidesSecrets checks that a problem with a secret names
// the key, never the secret.
func TestConfigValidateHidesSecrets(t *testing.T) {
	const short = "hunter2-short"
	cfg := legacyConfig()
	cfg.Secrets = []secret.Secret{verifytest.Secret, short}

	err := configtest.Fill(verify.Config{Legacy: cfg}, verify.DefaultConfig()).Validate()
	if err == nil || strings.Contains(err.Error(), short) || strings.Contains(err.Error(), verifytest.Secret) {
		t.Errorf("Validate() = %v, want an error that does not contain a secret", err)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	cfg := legacyConfig()
	cfg.Secrets = []secret.Secret{"short"}

	v, err := verify.New(configtest.Fill(verify.Config{Legacy: cfg}, verify.DefaultConfig()), zaptest.NewLogger(t), nil)
	if err == nil || !strings.Contains(err.Error(), "legacy.secrets[0]") {
		t.Errorf("New() = %v, %v; want nil and a legacy.secrets[0] error", v, err)
	}
}

func TestVerifyLegacySecretFile(t *testing.T) {
	dir := t.TempDir()

	tests := []struct {
		name        string
		giveContent string
	}{
		{name: "trailing newline", giveContent: verifytest.Secret + "\n"},
		{name: "trailing CRLF", giveContent: verifytest.Secret + "\r\n"},
		{name: "no newline", giveContent: verifytest.Secret},
	}

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprint("secret", i))
			if err := os.WriteFile(path, []byte(tt.giveContent), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := legacyConfig()
			cfg.Secrets = nil
			cfg.SecretFiles = []string{path}
			v := newVerifier(t, cfg)

			got, err := v.Verify(t.Context(), hs256(t, claimsWith()))
			if err != nil {
				t.Fatalf("Verify() error = %v, want nil", err)
			}
			if got.Subject != "alice" {
				t.Errorf("Verify().Subject = %q, want %q", got.Subject, "alice")
			}
			forged := verifytest.HMAC(t, jose.HS256, []byte(tt.giveContent+"x"), claimsWith(), nil)
			if _, err := v.Verify(t.Context(), forged); !errors.Is(err, verify.ErrInvalid) {
				t.Errorf("Verify(forged) error = %v, want %v", err, verify.ErrInvalid)
			}
		})
	}
}

func TestLegacyConfigStringRedactsSecrets(t *testing.T) {
	cfg := legacyConfig()
	cfg.Secrets = []secret.Secret{verifytest.Secret, oldSecret}
	cfg.SecretFiles = []string{"/run/secrets/legacy"}

	tests := []struct {
		name string
		give string
	}{
		{name: "%#v", give: fmt.Sprintf("%#v", cfg)},
		{name: "json", give: mustJSON(t, cfg)},
		{name: "%v", give: fmt.Sprintf("%v", cfg)},
		{name: "%+v", give: fmt.Sprintf("%+v", cfg)},
		{name: "nested %+v", give: fmt.Sprintf("%+v", configtest.Fill(verify.Config{Legacy: cfg}, verify.DefaultConfig()))},
		{name: "pointer %v", give: fmt.Sprintf("%v", &cfg)},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range []string{verifytest.Secret, oldSecret} {
				if strings.Contains(tt.give, s) {
					t.Errorf("%s = %q, contains a secret", tt.name, tt.give)
				}
			}
			for _, want := range []string{"[redacted]", testIssuer, "/run/secrets/legacy"} {
				if !strings.Contains(tt.give, want) {
					t.Errorf("%s = %q, want it to contain %q", tt.name, tt.give, want)
				}
			}
		})
	}
}

func TestVerifierCheck(t *testing.T) {
	v := newVerifier(t, legacyConfig())
	if err := v.Check(t.Context()); err != nil {
		t.Errorf("Check() = %v, want nil", err)
	}
}

// TestVerifyMaxTokenBytesConfig: verify.max_token_bytes lowers (or raises)
// the size bound, and out-of-range values are refused at start-up.
func TestVerifyMaxTokenBytesConfig(t *testing.T) {
	withMax := func(n int) *verify.Verifier {
		v, err := verify.New(configtest.Fill(verify.Config{Legacy: legacyConfig(), MaxTokenBytes: n}, verify.DefaultConfig()), zaptest.NewLogger(t), nil,
			verify.WithClock(func() time.Time { return testNow }))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := withMax(2048)
	small := hs256(t, claimsWith("pad", strings.Repeat("x", 100)))
	big := hs256(t, claimsWith("pad", strings.Repeat("x", 2048)))
	if _, err := v.Verify(t.Context(), small); err != nil {
		t.Errorf("%d-byte token: %v, want accepted", len(small), err)
	}
	if _, err := v.Verify(t.Context(), big); !errors.Is(err, verify.ErrMalformed) {
		t.Errorf("%d-byte token with max_token_bytes 2048: %v, want ErrMalformed", len(big), err)
	}
	if _, err := withMax(16<<10).Verify(t.Context(), hs256(t, claimsWith("pad", strings.Repeat("x", 10<<10)))); err != nil {
		t.Errorf("10 KiB token with max_token_bytes 16 KiB: %v, want accepted", err)
	}
	for _, n := range []int{-1, 100, 1 << 20} {
		err := configtest.Fill(verify.Config{Legacy: legacyConfig(), MaxTokenBytes: n}, verify.DefaultConfig()).Validate()
		if err == nil || !strings.Contains(err.Error(), "max_token_bytes") {
			t.Errorf("Validate with max_token_bytes %d = %v, want an error naming the key", n, err)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
