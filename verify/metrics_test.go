package verify_test

import (
	"github.com/authgate/authgate/internal/configtest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

func TestVerifyMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	v, err := verify.New(configtest.Fill(verify.Config{Legacy: legacyConfig()}, verify.DefaultConfig()), zaptest.NewLogger(t),
		prometheus.WrapRegistererWithPrefix("authgate_", reg),
		verify.WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}

	valid := hs256(t, claimsWith())
	for _, tok := range []string{
		valid,
		valid,
		hs256(t, claimsWith("sub", "bob")),
		hs256(t, claimsWith("exp", testNow.Add(-time.Hour).Unix())),
		verifytest.HMAC(t, jose.HS256, []byte(otherSecret), claimsWith(), nil),
		hs256(t, claimsWith("aud", "billing")),
		"not-a-token",
		"",
		hs256(t, claimsWith("iss", "https://attacker.example")),
	} {
		_, _ = v.Verify(t.Context(), tok)
	}

	// Every series exists from the start, so "none" and "firebase" are
	// reported at 0 before any such token was seen. Only cache misses are
	// verifications: the repeated valid token counts once, and the empty
	// token is refused before it is parsed.
	const want = `
# HELP authgate_verify_total Token verifications (cache misses) by provider and result.
# TYPE authgate_verify_total counter
authgate_verify_total{provider="firebase",result="error"} 0
authgate_verify_total{provider="firebase",result="expired"} 0
authgate_verify_total{provider="firebase",result="invalid"} 0
authgate_verify_total{provider="firebase",result="keys_unavailable"} 0
authgate_verify_total{provider="firebase",result="malformed"} 0
authgate_verify_total{provider="firebase",result="ok"} 0
authgate_verify_total{provider="firebase",result="unknown_issuer"} 0
authgate_verify_total{provider="legacy",result="error"} 0
authgate_verify_total{provider="legacy",result="expired"} 1
authgate_verify_total{provider="legacy",result="invalid"} 2
authgate_verify_total{provider="legacy",result="keys_unavailable"} 0
authgate_verify_total{provider="legacy",result="malformed"} 0
authgate_verify_total{provider="legacy",result="ok"} 2
authgate_verify_total{provider="legacy",result="unknown_issuer"} 0
authgate_verify_total{provider="none",result="error"} 0
authgate_verify_total{provider="none",result="expired"} 0
authgate_verify_total{provider="none",result="invalid"} 0
authgate_verify_total{provider="none",result="keys_unavailable"} 0
authgate_verify_total{provider="none",result="malformed"} 1
authgate_verify_total{provider="none",result="ok"} 0
authgate_verify_total{provider="none",result="unknown_issuer"} 1
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(want), "authgate_verify_total"); err != nil {
		t.Errorf("verify_total after 9 verifications: %v", err)
	}

	// Only tokens that reached an issuer (and missed the cache) are timed;
	// with the fixed clock every one took 0s.
	const wantDuration = `
# HELP authgate_verify_duration_seconds Time spent verifying a token that was not cached, by provider.
# TYPE authgate_verify_duration_seconds histogram
authgate_verify_duration_seconds_bucket{provider="firebase",le="5e-05"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="0.0001"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="0.00025"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="0.0005"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="0.001"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="0.0025"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="0.005"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="0.01"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="0.05"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="0.25"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="1"} 0
authgate_verify_duration_seconds_bucket{provider="firebase",le="+Inf"} 0
authgate_verify_duration_seconds_sum{provider="firebase"} 0
authgate_verify_duration_seconds_count{provider="firebase"} 0
authgate_verify_duration_seconds_bucket{provider="legacy",le="5e-05"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="0.0001"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="0.00025"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="0.0005"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="0.001"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="0.0025"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="0.005"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="0.01"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="0.05"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="0.25"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="1"} 5
authgate_verify_duration_seconds_bucket{provider="legacy",le="+Inf"} 5
authgate_verify_duration_seconds_sum{provider="legacy"} 0
authgate_verify_duration_seconds_count{provider="legacy"} 5
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(wantDuration), "authgate_verify_duration_seconds"); err != nil {
		t.Errorf("verify_duration_seconds after 9 verifications: %v", err)
	}
}

func TestNewRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	newWith := func() error {
		_, err := verify.New(configtest.Fill(verify.Config{Legacy: legacyConfig()}, verify.DefaultConfig()), zaptest.NewLogger(t), reg)
		return err
	}

	if err := newWith(); err != nil {
		t.Fatalf("first New() error = %v, want nil", err)
	}
	if err := newWith(); err == nil {
		t.Errorf("second New() on the same registry error = nil, want a registration error")
	}
}
