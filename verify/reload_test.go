package verify_test

import (
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/internal/secret"
	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

// legacyWith is the legacy test issuer with secrets, as a whole
// configuration.
func legacyWith(secrets ...string) verify.Config {
	l := legacyConfig()
	l.Secrets = nil
	for _, s := range secrets {
		l.Secrets = append(l.Secrets, secret.Secret(s))
	}
	return configtest.Fill(verify.Config{Legacy: l}, verify.DefaultConfig())
}

// TestReloadRetiresCachedTokens rotates the HMAC secret of replica a,
// which shares Redis with replica b: a token signed with the retired
// secret, cached in a's in-process tier and (by b) in Redis, is refused by
// a at once, while b, still on the old configuration, keeps sharing with
// itself.
func TestReloadRetiresCachedTokens(t *testing.T) {
	rcfg, _ := testRedisConfig(t)
	clock := func() time.Time { return testNow }
	a, regA := newReplica(t, legacyWith(verifytest.Secret), clock, rcfg)
	b, _ := newReplica(t, legacyWith(verifytest.Secret), clock, rcfg)
	oldTok := verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), claimsWith(), nil)
	newTok := verifytest.HMAC(t, jose.HS256, []byte(otherSecret), claimsWith("sub", "bob"), nil)
	for name, v := range map[string]*verify.Verifier{"a": a, "b": b} {
		if _, err := v.Verify(t.Context(), oldTok); err != nil {
			t.Fatalf("%s.Verify(old-secret token) before the reload error = %v", name, err)
		}
	}

	g, err := a.Prepare(legacyWith(otherSecret), nil)
	if err != nil {
		t.Fatalf("Prepare() error = %v", err)
	}
	if _, err := a.Verify(t.Context(), oldTok); err != nil {
		t.Errorf("a.Verify(old-secret token) after Prepare, before Use, error = %v, want nil: Prepare changes nothing", err)
	}
	a.Use(g)
	if _, err := a.Verify(t.Context(), oldTok); !errors.Is(err, verify.ErrInvalid) {
		t.Errorf("a.Verify(old-secret token) after Use error = %v, want %v", err, verify.ErrInvalid)
	}
	if _, err := a.Verify(t.Context(), newTok); err != nil {
		t.Errorf("a.Verify(new-secret token) after Use error = %v", err)
	}
	if _, err := b.Verify(t.Context(), oldTok); err != nil {
		t.Errorf("b.Verify(old-secret token) error = %v, want nil: b still has the old secret", err)
	}
	// a verified the old token twice: once under each configuration,
	// never answered from the other's cache entries.
	if got := verifications(t, regA, "legacy", "invalid"); got != 1 {
		t.Errorf("a: verify_total{legacy,invalid} = %v, want 1", got)
	}
}

// TestReloadSameConfigShares checks that replicas whose configurations are
// the same share cached tokens through Redis, also after one reloaded it.
func TestReloadSameConfigShares(t *testing.T) {
	rcfg, _ := testRedisConfig(t)
	clock := func() time.Time { return testNow }
	a, _ := newReplica(t, legacyWith(otherSecret), clock, rcfg)
	b, regB := newReplica(t, legacyWith(verifytest.Secret), clock, rcfg)
	g, err := b.Prepare(legacyWith(otherSecret), nil)
	if err != nil {
		t.Fatalf("Prepare() error = %v", err)
	}
	b.Use(g)
	tok := verifytest.HMAC(t, jose.HS256, []byte(otherSecret), claimsWith(), nil)
	if _, err := a.Verify(t.Context(), tok); err != nil {
		t.Fatalf("a.Verify() error = %v", err)
	}
	if _, err := b.Verify(t.Context(), tok); err != nil {
		t.Fatalf("b.Verify() error = %v", err)
	}
	if got := sumVerifications(t, regB); got != 0 {
		t.Errorf("b: verify_total = %v, want 0 (a's verification, through Redis)", got)
	}
}

// TestReloadInFlightGeneration checks that a generation taken before a
// reload keeps verifying under its own configuration.
func TestReloadInFlightGeneration(t *testing.T) {
	v := newVerifier(t, legacyWith(verifytest.Secret).Legacy)
	before := v.Current()
	g, err := v.Prepare(legacyWith(otherSecret), nil)
	if err != nil {
		t.Fatalf("Prepare() error = %v", err)
	}
	v.Use(g)
	tok := verifytest.HMAC(t, jose.HS256, []byte(verifytest.Secret), claimsWith(), nil)
	if _, err := before.Verify(t.Context(), tok); err != nil {
		t.Errorf("Verify() under the earlier generation error = %v", err)
	}
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, verify.ErrInvalid) {
		t.Errorf("Verify() under the new generation error = %v, want %v", err, verify.ErrInvalid)
	}
}

func TestPrepareInvalidChangesNothing(t *testing.T) {
	v := newVerifier(t, legacyWith(verifytest.Secret).Legacy)
	before := v.Current()
	bad := legacyWith(verifytest.Secret)
	bad.Legacy.SecretFiles = []string{t.TempDir() + "/missing"}
	if _, err := v.Prepare(bad, nil); err == nil {
		t.Fatal("Prepare(missing secret file) error = nil")
	}
	if v.Current() != before {
		t.Error("Current() changed after a failed Prepare")
	}
}
