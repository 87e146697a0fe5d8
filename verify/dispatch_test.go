package verify_test

import (
	"errors"
	"github.com/authgate/authgate/internal/configtest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/internal/configerr"
	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

// TestVerifyDispatch checks that one Verifier with the legacy issuer
// (HS256), Firebase ID tokens and session cookies sends each token to the
// issuer its iss names, and that issuer's rules alone decide.
func TestVerifyDispatch(t *testing.T) {
	fx := newFirebaseFixture(t)
	cfg := fx.config()
	cfg.Legacy = legacyConfig()
	cfg.Cache.TTL = -1 // every token counted by the issuer that verified it
	reg := prometheus.NewRegistry()
	v, err := verify.New(cfg, zaptest.NewLogger(t), reg, verify.WithClock(fx.clock.Now))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	hsWithKid := func(claims map[string]any) string {
		return verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), claims, map[string]any{"kid": fx.id.ID})
	}

	tests := []struct {
		name         string
		giveToken    string
		wantErr      error
		wantProvider string // the verify_total label the token is counted under
		wantIssuer   string
	}{
		{name: "legacy token", giveToken: hs256(t, claimsWith()), wantProvider: "legacy", wantIssuer: testIssuer},
		{name: "Firebase ID token", giveToken: fx.id.Sign(t, firebaseClaims(), nil), wantProvider: "firebase", wantIssuer: firebaseIssuer},
		{name: "Firebase session cookie", giveToken: fx.session.Sign(t, sessionClaims(), nil), wantProvider: "firebase", wantIssuer: sessionIssuer},

		// A token is judged by the issuer it names, never by its shape.
		{name: "Firebase-shaped token with the legacy iss", giveToken: fx.id.Sign(t, firebaseClaims("iss", testIssuer), nil), wantErr: verify.ErrInvalid, wantProvider: "legacy"},
		{name: "Firebase-shaped token with the legacy iss and aud", giveToken: fx.id.Sign(t, firebaseClaims("iss", testIssuer, "aud", "platform"), nil), wantErr: verify.ErrInvalid, wantProvider: "legacy"},
		{name: "legacy HS256 token claiming the Firebase iss", giveToken: hs256(t, claimsWith("iss", firebaseIssuer)), wantErr: verify.ErrInvalid, wantProvider: "firebase"},
		{name: "legacy HS256 token with every Firebase claim and kid", giveToken: hsWithKid(firebaseClaims()), wantErr: verify.ErrInvalid, wantProvider: "firebase"},
		{name: "legacy HS256 token claiming the session iss", giveToken: hsWithKid(sessionClaims()), wantErr: verify.ErrInvalid, wantProvider: "firebase"},
		{name: "HS256 with the Firebase public key as secret", giveToken: verifytest.HMAC(t, jose.HS256, fx.id.PublicKeyPEM(t), firebaseClaims(), map[string]any{"kid": fx.id.ID}), wantErr: verify.ErrInvalid, wantProvider: "firebase"},
		{name: "Firebase ID token with the session key", giveToken: fx.session.Sign(t, firebaseClaims(), nil), wantErr: verify.ErrInvalid, wantProvider: "firebase"},

		// Nobody's token.
		{name: "unknown iss", giveToken: hs256(t, claimsWith("iss", "https://attacker.example")), wantErr: verify.ErrUnknownIssuer, wantProvider: "none"},
		{name: "no iss", giveToken: hs256(t, claimsWith("iss", deleteClaim{})), wantErr: verify.ErrUnknownIssuer, wantProvider: "none"},
		{name: "another Firebase project", giveToken: fx.id.Sign(t, firebaseClaims("iss", "https://securetoken.google.com/other-project", "aud", "other-project"), nil), wantErr: verify.ErrUnknownIssuer, wantProvider: "none"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantResult := verify.Reason(tt.wantErr)
			before := counterValue(t, reg, "verify_total", "provider", tt.wantProvider, "result", wantResult)

			got, err := v.Verify(t.Context(), tt.giveToken)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if got.Issuer != tt.wantIssuer {
				t.Errorf("Verify().Issuer = %q, want %q", got.Issuer, tt.wantIssuer)
			}
			after := counterValue(t, reg, "verify_total", "provider", tt.wantProvider, "result", wantResult)
			if after-before != 1 {
				t.Errorf("verify_total{provider=%q,result=%q} went from %v to %v, want one more", tt.wantProvider, wantResult, before, after)
			}
		})
	}
}

func TestConfigValidateIssuers(t *testing.T) {
	withLegacyIssuer := func(iss string) verify.Config {
		cfg := configtest.Fill(verify.Config{Firebase: configtest.Fill(verify.FirebaseConfig{
			Enabled:        true,
			ProjectID:      testProject,
			Keys:           configtest.Fill(verify.KeySetConfig{URL: "https://keys.example.test/x509"}, verify.DefaultKeySetConfig()),
			SessionCookies: verify.SessionCookieConfig{Enabled: true, Keys: configtest.Fill(verify.KeySetConfig{URL: "https://keys.example.test/session"}, verify.DefaultKeySetConfig())},
		}, verify.DefaultFirebaseConfig())}, verify.DefaultConfig())
		cfg.Legacy = legacyConfig()
		cfg.Legacy.Issuer = iss
		return cfg
	}

	tests := []struct {
		name     string
		give     verify.Config
		wantErrs []string
	}{
		{name: "distinct issuers", give: withLegacyIssuer(testIssuer)},
		{name: "legacy issuer is the Firebase ID-token issuer", give: withLegacyIssuer(firebaseIssuer), wantErrs: []string{
			"legacy.issuer: must differ from the Firebase issuers",
		}},
		{name: "legacy issuer is the session-cookie issuer", give: withLegacyIssuer(sessionIssuer), wantErrs: []string{
			"legacy.issuer: must differ from the Firebase issuers",
		}},
		{name: "legacy issuer is another project's", give: withLegacyIssuer("https://securetoken.google.com/other-project")},
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
			_, err := verify.New(tt.give, zaptest.NewLogger(t), nil)
			if gotErr, wantErr := err != nil, len(tt.wantErrs) > 0; gotErr != wantErr {
				t.Errorf("New() error = %v, want error %t", err, wantErr)
			}
		})
	}
}

// counterValue returns the value of the counter name with the given label
// pairs in reg, or 0 if there is no such series.
func counterValue(tb testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
