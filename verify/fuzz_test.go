package verify_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/authgate/authgate/verify"
)

// FuzzLegacyVerify feeds the legacy verifier mutations of the table tokens.
// It must never panic, and it must never accept a token that the test
// secret did not sign: the fuzzer cannot compute an HMAC, so every accepted
// token has to be byte for byte one of the validly signed seeds. A token
// that differs from them only in its encoding (a non-canonical base64
// signature, say) fails too, because it would be a second cache key and a
// second spelling of a token that was never issued.
func FuzzLegacyVerify(f *testing.F) {
	v := newVerifier(f, legacyConfig())
	signed := make(map[string]bool)
	for _, tt := range legacyCases(f) {
		f.Add(tt.giveToken)
		if tt.wantErr == nil {
			signed[tt.giveToken] = true
		}
	}

	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(t.Context(), tok)
		if err == nil && !signed[tok] {
			t.Fatalf("Verify(%q) = %+v, nil; want an error for a token the test secret did not sign", tok, id)
		}
		if err != nil && !reflect.ValueOf(id).IsZero() {
			t.Errorf("Verify(%q) = %+v, %v; want a zero identity with an error", tok, id, err)
		}
		if err != nil && !isSentinel(err) {
			t.Errorf("Verify(%q) error = %v, want one of the sentinel errors", tok, err)
		}
	})
}

// isSentinel reports whether err wraps one of the errors a legacy token can
// be refused with.
func isSentinel(err error) bool {
	for _, s := range []error{verify.ErrMalformed, verify.ErrInvalid, verify.ErrExpired, verify.ErrUnknownIssuer} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
