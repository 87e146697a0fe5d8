package verify_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/authgate/authgate/verify"
)

// TestWithClaimsKeepsOnlyNamedClaims: an identity keeps only the claims
// that route requirements read, and nothing the verifier itself needs is
// lost with the rest (the session start of a revocation check).
func TestWithClaimsKeepsOnlyNamedClaims(t *testing.T) {
	fx := newFirebaseFixture(t)
	tok := fx.id.Sign(t, firebaseClaims("plan", "pro", "tier", json.Number("3")), nil)
	tests := []struct {
		name string
		keep []string
		want map[string]any
	}{
		{name: "named claims", keep: []string{"plan", "absent"}, want: map[string]any{"plan": "pro"}},
		{name: "none named", keep: nil, want: nil},
		{name: "none present", keep: []string{"absent"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := fx.newVerifier(t, fx.config(), verify.WithClaims(tt.keep))
			id, err := v.Verify(t.Context(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if len(id.Claims) != len(tt.want) {
				t.Fatalf("Claims = %v, want %v", id.Claims, tt.want)
			}
			for k, w := range tt.want {
				if id.Claims[k] != w {
					t.Errorf("Claims[%s] = %v, want %v", k, id.Claims[k], w)
				}
			}
			start, err := id.SessionStart()
			if err != nil || !start.Equal(id.AuthTime) || start.IsZero() {
				t.Errorf("SessionStart = %v, %v; want the token's auth_time %v", start, err, id.AuthTime)
			}
			if id.Subject != testUID || id.Email == "" {
				t.Errorf("identity fields lost with the claims: %+v", id)
			}
		})
	}
	// Without the option every claim is kept, as before.
	id, err := fx.newVerifier(t, fx.config()).Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Claims["plan"] != "pro" || id.Claims["sub"] != testUID {
		t.Errorf("without WithClaims, Claims = %v; want every claim", id.Claims)
	}
}

// claimTypeCase is one claim, often written with a type its issuer never
// uses, and what verifying the token must give: an error, or the value of
// the identity field the claim feeds.
type claimTypeCase struct {
	name      string
	giveClaim string
	giveValue any
	wantErr   error
	// wantField is the identity field the claim feeds, and wantValue its
	// value, checked when wantErr is nil.
	wantField string
	wantValue string
}

// identityField reads the identity field named by a claimTypeCase.
func identityField(tb testing.TB, id verify.Identity, field string) string {
	tb.Helper()
	switch field {
	case "Subject":
		return id.Subject
	case "Email":
		return id.Email
	case "EmailVerified":
		return fmt.Sprint(id.EmailVerified)
	case "Name":
		return id.Name
	case "Role":
		return id.Role
	}
	tb.Fatalf("unknown identity field %q", field)
	return ""
}

// TestVerifyLegacyClaimTypes checks every claim a legacy token is read
// for against the types it must not have (issue 12): a string field takes
// only a string (the user id an integer too), a date only a number, the
// email-verified flag only a JSON boolean. A claim of the wrong type
// either fails the token or reads as absent; it never takes the spelling
// of another type.
func TestVerifyLegacyClaimTypes(t *testing.T) {
	v := newVerifier(t, legacyConfig())
	exp := json.Number(fmt.Sprint(testNow.Add(time.Hour).Unix()))
	iat := json.Number(fmt.Sprint(testNow.Unix()))

	tests := []claimTypeCase{
		{name: "sub string", giveClaim: "sub", giveValue: "alice", wantField: "Subject", wantValue: "alice"},
		{name: "sub integer", giveClaim: "sub", giveValue: json.Number("42"), wantField: "Subject", wantValue: "42"},
		{name: "sub fraction", giveClaim: "sub", giveValue: json.Number("4.2"), wantErr: verify.ErrInvalid},
		{name: "sub exponent", giveClaim: "sub", giveValue: json.Number("4e2"), wantErr: verify.ErrInvalid},
		{name: "sub negative", giveClaim: "sub", giveValue: json.Number("-42"), wantErr: verify.ErrInvalid},
		{name: "sub boolean", giveClaim: "sub", giveValue: true, wantErr: verify.ErrInvalid},
		{name: "sub list", giveClaim: "sub", giveValue: []any{"alice"}, wantErr: verify.ErrInvalid},
		{name: "sub object", giveClaim: "sub", giveValue: map[string]any{"id": "alice"}, wantErr: verify.ErrInvalid},
		{name: "sub null", giveClaim: "sub", giveValue: nil, wantErr: verify.ErrInvalid},
		{name: "email number", giveClaim: "email", giveValue: json.Number("42"), wantField: "Email", wantValue: ""},
		{name: "email list", giveClaim: "email", giveValue: []any{"alice@example.test"}, wantField: "Email", wantValue: ""},
		{name: "email boolean", giveClaim: "email", giveValue: true, wantField: "Email", wantValue: ""},
		{name: "email_verified string true", giveClaim: "email_verified", giveValue: "true", wantField: "EmailVerified", wantValue: "false"},
		{name: "email_verified number 1", giveClaim: "email_verified", giveValue: json.Number("1"), wantField: "EmailVerified", wantValue: "false"},
		{name: "email_verified list", giveClaim: "email_verified", giveValue: []any{true}, wantField: "EmailVerified", wantValue: "false"},
		{name: "user_type string", giveClaim: "user_type", giveValue: "admin", wantField: "Role", wantValue: "admin"},
		{name: "user_type list", giveClaim: "user_type", giveValue: []any{"admin"}, wantField: "Role", wantValue: ""},
		{name: "user_type number", giveClaim: "user_type", giveValue: json.Number("1"), wantField: "Role", wantValue: ""},
		{name: "user_type boolean", giveClaim: "user_type", giveValue: true, wantField: "Role", wantValue: ""},
		{name: "user_type object", giveClaim: "user_type", giveValue: map[string]any{"role": "admin"}, wantField: "Role", wantValue: ""},
		{name: "username number", giveClaim: "username", giveValue: json.Number("7"), wantField: "Name", wantValue: ""},
		{name: "username list", giveClaim: "username", giveValue: []any{"alice"}, wantField: "Name", wantValue: ""},
		{name: "exp string", giveClaim: "exp", giveValue: exp.String(), wantErr: verify.ErrInvalid},
		{name: "exp list", giveClaim: "exp", giveValue: []any{exp}, wantErr: verify.ErrInvalid},
		{name: "exp boolean", giveClaim: "exp", giveValue: true, wantErr: verify.ErrInvalid},
		{name: "exp null", giveClaim: "exp", giveValue: nil, wantErr: verify.ErrInvalid},
		{name: "iat string", giveClaim: "iat", giveValue: iat.String(), wantErr: verify.ErrInvalid},
		{name: "nbf string", giveClaim: "nbf", giveValue: iat.String(), wantErr: verify.ErrInvalid},
		{name: "aud list", giveClaim: "aud", giveValue: []any{"other", "platform"}, wantField: "Subject", wantValue: "alice"},
		{name: "aud number", giveClaim: "aud", giveValue: json.Number("1"), wantErr: verify.ErrInvalid},
		{name: "aud list of a list", giveClaim: "aud", giveValue: []any{[]any{"platform"}}, wantErr: verify.ErrInvalid},
		{name: "iss list", giveClaim: "iss", giveValue: []any{testIssuer}, wantErr: verify.ErrUnknownIssuer},
		{name: "iss number", giveClaim: "iss", giveValue: json.Number("1"), wantErr: verify.ErrUnknownIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), hs256(t, claimsWith(tt.giveClaim, tt.giveValue)))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify(%s: %#v) error = %v, want %v", tt.giveClaim, tt.giveValue, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if f := identityField(t, got, tt.wantField); f != tt.wantValue {
				t.Errorf("Verify(%s: %#v).%s = %q, want %q", tt.giveClaim, tt.giveValue, tt.wantField, f, tt.wantValue)
			}
		})
	}
}

// TestVerifyFirebaseClaimTypes is TestVerifyLegacyClaimTypes for Firebase
// tokens, whose issuer always writes sub and aud as strings and
// email_verified as a JSON boolean: anything else fails the token or reads
// as absent (issue 12).
func TestVerifyFirebaseClaimTypes(t *testing.T) {
	fx := newFirebaseFixture(t)
	v := fx.newVerifier(t, fx.config())
	exp := fmt.Sprint(testNow.Add(time.Hour).Unix())
	past := fmt.Sprint(testNow.Add(-time.Minute).Unix())

	tests := []claimTypeCase{
		{name: "email_verified true", giveClaim: "email_verified", giveValue: true, wantField: "EmailVerified", wantValue: "true"},
		{name: "email_verified string true", giveClaim: "email_verified", giveValue: "true", wantField: "EmailVerified", wantValue: "false"},
		{name: "email_verified string TRUE", giveClaim: "email_verified", giveValue: "TRUE", wantField: "EmailVerified", wantValue: "false"},
		{name: "email_verified number 1", giveClaim: "email_verified", giveValue: json.Number("1"), wantField: "EmailVerified", wantValue: "false"},
		{name: "email_verified list", giveClaim: "email_verified", giveValue: []any{true}, wantField: "EmailVerified", wantValue: "false"},
		{name: "email_verified object", giveClaim: "email_verified", giveValue: map[string]any{"value": true}, wantField: "EmailVerified", wantValue: "false"},
		{name: "email_verified null", giveClaim: "email_verified", giveValue: nil, wantField: "EmailVerified", wantValue: "false"},
		{name: "email number", giveClaim: "email", giveValue: json.Number("42"), wantField: "Email", wantValue: ""},
		{name: "email list", giveClaim: "email", giveValue: []any{"a@example.test"}, wantField: "Email", wantValue: ""},
		{name: "user_type list", giveClaim: "user_type", giveValue: []any{"admin"}, wantField: "Role", wantValue: ""},
		{name: "user_type number", giveClaim: "user_type", giveValue: json.Number("1"), wantField: "Role", wantValue: ""},
		{name: "name number", giveClaim: "name", giveValue: json.Number("7"), wantField: "Name", wantValue: ""},
		{name: "name list", giveClaim: "name", giveValue: []any{"Alice"}, wantField: "Name", wantValue: ""},
		{name: "sub number", giveClaim: "sub", giveValue: json.Number("42"), wantErr: verify.ErrInvalid},
		{name: "sub list", giveClaim: "sub", giveValue: []any{testUID}, wantErr: verify.ErrInvalid},
		{name: "sub boolean", giveClaim: "sub", giveValue: true, wantErr: verify.ErrInvalid},
		{name: "aud list", giveClaim: "aud", giveValue: []any{testProject}, wantErr: verify.ErrInvalid},
		{name: "aud number", giveClaim: "aud", giveValue: json.Number("1"), wantErr: verify.ErrInvalid},
		{name: "exp string", giveClaim: "exp", giveValue: exp, wantErr: verify.ErrInvalid},
		{name: "iat string", giveClaim: "iat", giveValue: past, wantErr: verify.ErrInvalid},
		{name: "iat null", giveClaim: "iat", giveValue: nil, wantErr: verify.ErrInvalid},
		{name: "auth_time string", giveClaim: "auth_time", giveValue: past, wantErr: verify.ErrInvalid},
		{name: "auth_time list", giveClaim: "auth_time", giveValue: []any{json.Number(past)}, wantErr: verify.ErrInvalid},
		{name: "iss list", giveClaim: "iss", giveValue: []any{firebaseIssuer}, wantErr: verify.ErrUnknownIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), fx.id.Sign(t, firebaseClaims(tt.giveClaim, tt.giveValue), nil))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify(%s: %#v) error = %v, want %v", tt.giveClaim, tt.giveValue, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if f := identityField(t, got, tt.wantField); f != tt.wantValue {
				t.Errorf("Verify(%s: %#v).%s = %q, want %q", tt.giveClaim, tt.giveValue, tt.wantField, f, tt.wantValue)
			}
		})
	}
}

// TestIdentitiesOutliveLaterVerifications: the verifier reuses what it
// parses a token into, so an identity, its claims included, must owe
// nothing to that: identities verified earlier stay as they were while
// other tokens (longer, with more claims, forged) are verified, one after
// another and concurrently.
func TestIdentitiesOutliveLaterVerifications(t *testing.T) {
	fx := newFirebaseFixture(t)
	cfg := fx.config()
	cfg.Cache.TTL = -1 // every call parses
	v := fx.newVerifier(t, cfg)
	many := []any{"nested", map[string]any{"list": []any{"x", json.Number("1.5")}}}
	for i := range 20 {
		many = append(many, fmt.Sprintf("claim%d", i), fmt.Sprintf("value %d with some length to it", i))
	}
	// The longest first, and then two of one length and layout, so that
	// each overwrites the bytes of the one before.
	toks := []string{
		fx.id.Sign(t, firebaseClaims(append([]any{"sub", "bob", "user_id", "bob", "email", "bob@example.test"}, many...)...), nil),
		fx.id.Sign(t, firebaseClaims("sub", "alice", "user_id", "alice", "email", "alice@example.test", "plan", "pro"), nil),
		fx.id.Sign(t, firebaseClaims("sub", "carol", "user_id", "carol", "email", "carol@example.test", "plan", "max"), nil),
		fx.other.Sign(t, firebaseClaims("sub", "mallory"), nil),
	}
	snapshot := func(id verify.Identity) string { return fmt.Sprintf("%+v", id) }
	var first []string
	var ids []verify.Identity
	for _, tok := range toks {
		id, _ := v.Verify(t.Context(), tok)
		ids = append(ids, id)
		first = append(first, snapshot(id))
	}
	if ids[0].Subject != "bob" || ids[0].Claims["claim19"] != "value 19 with some length to it" || ids[1].Subject != "alice" || ids[2].Subject != "carol" || ids[3].Subject != "" {
		t.Fatalf("identities = %+v", ids)
	}
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 50 {
				id, err := v.Verify(t.Context(), toks[i%len(toks)])
				if got, want := snapshot(id), first[i%len(toks)]; got != want {
					t.Errorf("Verify(toks[%d]) = %s, %v; want %s", i%len(toks), got, err, want)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	for i, id := range ids {
		if got := snapshot(id); got != first[i] {
			t.Errorf("identity of toks[%d] changed after later verifications: %s, was %s", i, got, first[i])
		}
	}
}
