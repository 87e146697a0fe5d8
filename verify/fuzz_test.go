package verify_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
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

// FuzzFirebaseVerify feeds the Firebase verifier (ID tokens and session
// cookies) mutations of the Firebase table tokens. It must never panic and
// never accept a token that is not byte for byte one of the validly signed
// seeds: the fuzzer cannot compute an RS256 signature. The signing keys are
// fixed (testdata) rather than generated, because fuzz workers are separate
// processes that build the seeds again and must sign them identically, and
// a committed crasher must reproduce.
func FuzzFirebaseVerify(f *testing.F) {
	id := verifytest.ParseKey(f, "id-key-1", jose.RS256, readTestdata(f, "fuzz_firebase_id_key.pem"))
	session := verifytest.ParseKey(f, "session-key-1", jose.RS256, readTestdata(f, "fuzz_firebase_session_key.pem"))
	fx := newFirebaseFixtureWith(f, id, session, verifytest.RSAKey(f, "other-key"), (*verifytest.KeyServer).ServeX509)
	// No test logger: the verifier logs key fetches from inside the fuzz
	// target, where f must not be used.
	v, err := verify.New(fx.config(), zap.NewNop(), nil, verify.WithClock(fx.clock.Now))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { v.Close() })
	signed := make(map[string]bool)
	for _, tt := range firebaseCases(f, fx) {
		f.Add(tt.giveToken)
		if tt.wantErr == nil {
			signed[tt.giveToken] = true
		}
	}

	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(t.Context(), tok)
		if err == nil && !signed[tok] {
			t.Fatalf("Verify(%q) = %+v, nil; want an error for a token the test keys did not sign", tok, id)
		}
		if err != nil && !reflect.ValueOf(id).IsZero() {
			t.Errorf("Verify(%q) = %+v, %v; want a zero identity with an error", tok, id, err)
		}
		if err != nil && !isSentinel(err) {
			t.Errorf("Verify(%q) error = %v, want one of the sentinel errors", tok, err)
		}
	})
}

// readTestdata returns the content of testdata/name.
func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
