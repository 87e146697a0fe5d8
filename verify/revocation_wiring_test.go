package verify

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify/verifytest"
)

// emulatorToken is an unsigned Firebase token as the Auth Emulator issues
// them, for project demo-authgate.
func emulatorToken(t *testing.T, uid string, now time.Time) string {
	t.Helper()
	return verifytest.Unsigned(t, map[string]any{"alg": "none", "typ": "JWT"}, map[string]any{
		"iss": "https://securetoken.google.com/demo-authgate", "aud": "demo-authgate",
		"sub": uid, "email": uid + "@example.test", "email_verified": true,
		"iat": now.Add(-time.Minute).Unix(), "auth_time": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}, "")
}

// Revocation is checked on every Verify, after the token cache: a token
// verified (and cached) before its user was disabled or revoked is refused
// as soon as the user's record is read again.
func TestVerifierChecksRevocationAfterTheCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	records := &fakeRecords{states: map[string]UserState{"u1": {}}}
	cfg := DefaultConfig()
	cfg.Firebase.Enabled, cfg.Firebase.ProjectID, cfg.Firebase.Emulator = true, "demo-authgate", true
	cfg.Firebase.Revocation.Enabled = true
	v, err := New(cfg, zaptest.NewLogger(t), nil, WithClock(clock), WithUserRecords(records))
	if err != nil {
		t.Fatal(err)
	}
	tok := emulatorToken(t, "u1", now)

	steps := []struct {
		name    string
		give    UserState
		wantErr error
	}{
		{name: "active user", give: UserState{}},
		{name: "disabled", give: UserState{Disabled: true}, wantErr: ErrUserDisabled},
		{name: "tokens revoked after sign-in", give: UserState{TokensValidAfter: now}, wantErr: ErrRevoked},
		{name: "revoked before sign-in", give: UserState{TokensValidAfter: now.Add(-time.Hour)}},
	}
	for _, st := range steps {
		records.set("u1", st.give)
		if err := v.ForgetUser(t.Context(), "u1"); err != nil {
			t.Fatal(err)
		}
		id, err := v.Verify(t.Context(), tok)
		if st.wantErr == nil && err != nil {
			t.Errorf("%s: Verify = %v, want ok", st.name, err)
		}
		if st.wantErr != nil && !errors.Is(err, st.wantErr) {
			t.Errorf("%s: Verify = %v, want %v", st.name, err, st.wantErr)
		}
		if err == nil && id.FirebaseUID != "u1" {
			t.Errorf("%s: FirebaseUID = %q, want u1", st.name, id.FirebaseUID)
		}
	}
	if got := records.calls.Load(); got != int64(len(steps)) {
		t.Errorf("Admin calls = %d, want %d (one per forgotten record)", got, len(steps))
	}
}

func TestVerifierRevocationNeedsRecords(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Firebase.Enabled, cfg.Firebase.ProjectID = true, "demo-authgate"
	cfg.Firebase.Revocation.Enabled = true
	if _, err := New(cfg, zaptest.NewLogger(t), nil); err == nil {
		t.Fatal("New with revocation on and no UserRecords = nil error, want one")
	}
}
