package verify_test

import (
	"github.com/authgate/authgate/internal/configtest"
	"reflect"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/verify"
)

// TestUserPrefetchNamesTheTokensUser: on a miss in the in-process tier the
// verifier asks for the user-row lookup of the token's (unverified)
// provider and subject, once, and never on an in-process hit; a token no
// issuer owns asks for nothing.
func TestUserPrefetchNamesTheTokensUser(t *testing.T) {
	rcfg, _ := testRedisConfig(t)
	rdb, err := cache.OpenRedis(rcfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	fx := newFirebaseFixture(t)
	cfg := fx.config()
	cfg.Legacy = legacyConfig()
	cfg.Legacy.Claims.UserID = "uid"
	var mu sync.Mutex
	var asked []verify.Identity
	v := fx.newVerifier(t, cfg, verify.WithCache(configtest.Fill(cache.Config{Redis: rcfg}, cache.DefaultConfig()), rdb), verify.WithUserPrefetch(func(id verify.Identity) *cache.Prefetch {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, id)
		return nil
	}))
	fbTok := fx.id.Sign(t, firebaseClaims(), nil)
	legacyTok := hs256(t, claimsWith("uid", "7f9c2ba4-e88f-4f4e-9a6c-5b3c1d2e4f60"))
	for _, tok := range []string{fbTok, fbTok, legacyTok, "not.a.token"} {
		_, _ = v.Verify(t.Context(), tok)
	}
	want := []verify.Identity{
		{Provider: verify.ProviderFirebase, Subject: testUID, FirebaseUID: testUID},
		{Provider: verify.ProviderLegacy, Subject: "7f9c2ba4-e88f-4f4e-9a6c-5b3c1d2e4f60"},
	}
	if len(asked) != len(want) {
		t.Fatalf("prefetch asked for %+v, want %+v", asked, want)
	}
	for i := range want {
		if !reflect.DeepEqual(asked[i], want[i]) {
			t.Errorf("prefetch #%d for %+v, want %+v", i, asked[i], want[i])
		}
	}
}
