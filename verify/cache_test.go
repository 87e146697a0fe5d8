package verify_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/configtest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/cache/cachetest"
	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

// newMetered builds a Verifier for cfg on clock with its own registry.
func newMetered(tb testing.TB, cfg verify.Config, clock func() time.Time, opts ...verify.Option) (*verify.Verifier, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	v, err := verify.New(cfg, zaptest.NewLogger(tb), reg, append([]verify.Option{verify.WithClock(clock)}, opts...)...)
	if err != nil {
		tb.Fatalf("New() error = %v", err)
	}
	tb.Cleanup(func() { v.Close() })
	return v, reg
}

// verifications returns verify_total{provider, result}: tokens that were
// verified, not answered from a cache.
func verifications(tb testing.TB, reg *prometheus.Registry, provider, result string) float64 {
	tb.Helper()
	return counterValue(tb, reg, "verify_total", "provider", provider, "result", result)
}

// cacheRequests returns cache_requests_total{cache, tier, result}.
func cacheRequests(tb testing.TB, reg *prometheus.Registry, name, tier, result string) float64 {
	tb.Helper()
	return counterValue(tb, reg, "cache_requests_total", "cache", name, "tier", tier, "result", result)
}

func TestVerifyCacheHit(t *testing.T) {
	fx := newFirebaseFixture(t)
	v, reg := newMetered(t, fx.config(), fx.clock.Now)
	tok := fx.id.Sign(t, firebaseClaims(), nil)

	first, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("first Verify() error = %v", err)
	}
	second, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("second Verify() error = %v", err)
	}
	assertIdentity(t, second, first)

	// One verification; the second call is a hit in the in-process tier.
	// The negative cache is asked only by the first, which the token
	// cache lacked, and misses: a hit does not pay for it.
	if got := verifications(t, reg, "firebase", "ok"); got != 1 {
		t.Errorf("verify_total{firebase,ok} = %v, want 1", got)
	}
	const want = `
# HELP cache_requests_total Cache lookups by cache, tier (local, redis) and result (hit, miss, error, skipped). Redis errors include failed writes; skipped counts lookups not sent to Redis during a failure back-off.
# TYPE cache_requests_total counter
cache_requests_total{cache="tokens",result="hit",tier="local"} 1
cache_requests_total{cache="tokens",result="miss",tier="local"} 1
cache_requests_total{cache="tokens_negative",result="hit",tier="local"} 0
cache_requests_total{cache="tokens_negative",result="miss",tier="local"} 1
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(want), "cache_requests_total"); err != nil {
		t.Errorf("cache_requests_total after two Verify calls: %v", err)
	}
	if got := fx.ids.Requests(); got != 1 {
		t.Errorf("key fetches = %d, want 1", got)
	}
}

// TestVerifyCacheEntryEndsAtExp checks that a cached verification lives
// min(cache.ttl, exp-now): a token is refused once it expires, even though
// cache.ttl is longer.
func TestVerifyCacheEntryEndsAtExp(t *testing.T) {
	fx := newFirebaseFixture(t)
	cfg := fx.config()
	cfg.Cache.TTL = 10 * time.Minute
	cfg.Firebase.Leeway = time.Second
	v, reg := newMetered(t, cfg, fx.clock.Now)
	tok := fx.id.Sign(t, firebaseClaims("exp", testNow.Add(2*time.Minute).Unix()), nil)

	steps := []struct {
		name        string
		giveAdvance time.Duration
		wantErr     error
		wantOK      float64 // verify_total{firebase,ok}
		wantExpired float64 // verify_total{firebase,expired}
	}{
		{name: "first", wantOK: 1},
		{name: "cached until exp", giveAdvance: 2*time.Minute - time.Second, wantOK: 1},
		{name: "past exp and leeway", giveAdvance: 2 * time.Second, wantErr: verify.ErrExpired, wantOK: 1, wantExpired: 1},
		{name: "refused again from the negative cache", giveAdvance: time.Second, wantErr: verify.ErrExpired, wantOK: 1, wantExpired: 1},
		{name: "still refused after cache.ttl", giveAdvance: 10 * time.Minute, wantErr: verify.ErrExpired, wantOK: 1, wantExpired: 2},
	}

	for i, s := range steps {
		fx.clock.Advance(s.giveAdvance)
		_, err := v.Verify(t.Context(), tok)
		if !errors.Is(err, s.wantErr) {
			t.Errorf("step %d (%s): Verify() error = %v, want %v", i, s.name, err, s.wantErr)
		}
		if got := verifications(t, reg, "firebase", "ok"); got != s.wantOK {
			t.Errorf("step %d (%s): verify_total{firebase,ok} = %v, want %v", i, s.name, got, s.wantOK)
		}
		if got := verifications(t, reg, "firebase", "expired"); got != s.wantExpired {
			t.Errorf("step %d (%s): verify_total{firebase,expired} = %v, want %v", i, s.name, got, s.wantExpired)
		}
	}
}

// TestVerifyCacheTTL checks the other side of the minimum: a token valid
// for an hour is verified again after cache.ttl.
func TestVerifyCacheTTL(t *testing.T) {
	fx := newFirebaseFixture(t)
	cfg := fx.config()
	cfg.Cache.TTL = time.Minute
	v, reg := newMetered(t, cfg, fx.clock.Now)
	tok := fx.id.Sign(t, firebaseClaims(), nil)

	steps := []struct {
		name        string
		giveAdvance time.Duration
		wantOK      float64
	}{
		{name: "first", wantOK: 1},
		{name: "within cache.ttl", giveAdvance: 59 * time.Second, wantOK: 1},
		{name: "past cache.ttl", giveAdvance: 2 * time.Second, wantOK: 2},
		{name: "cached again", giveAdvance: 30 * time.Second, wantOK: 2},
	}

	for i, s := range steps {
		fx.clock.Advance(s.giveAdvance)
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Errorf("step %d (%s): Verify() error = %v", i, s.name, err)
		}
		if got := verifications(t, reg, "firebase", "ok"); got != s.wantOK {
			t.Errorf("step %d (%s): verify_total{firebase,ok} = %v, want %v", i, s.name, got, s.wantOK)
		}
	}
}

func TestVerifyCacheOff(t *testing.T) {
	fx := newFirebaseFixture(t)
	cfg := fx.config()
	cfg.Cache.TTL = -1
	v, reg := newMetered(t, cfg, fx.clock.Now)
	tok := fx.id.Sign(t, firebaseClaims(), nil)
	forged := fx.other.WithID(fx.id.ID).Sign(t, firebaseClaims(), nil)

	for range 3 {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("Verify() error = %v", err)
		}
		if _, err := v.Verify(t.Context(), forged); !errors.Is(err, verify.ErrInvalid) {
			t.Fatalf("Verify(forged) error = %v, want %v", err, verify.ErrInvalid)
		}
	}
	if ok, invalid := verifications(t, reg, "firebase", "ok"), verifications(t, reg, "firebase", "invalid"); ok != 3 || invalid != 3 {
		t.Errorf("verify_total{firebase} ok = %v, invalid = %v, want 3 and 3 (no cache, no negative cache)", ok, invalid)
	}
}

// TestVerifyNegativeCache checks that a refused token is answered from the
// in-process negative cache for negative_ttl.
func TestVerifyNegativeCache(t *testing.T) {
	fx := newFirebaseFixture(t)
	secs := func(d time.Duration) int64 { return testNow.Add(d).Unix() }

	tests := []struct {
		name         string
		giveNegTTL   time.Duration
		giveToken    string
		wantErr      error
		wantProvider string
		wantCounts   [3]float64 // verifications after the 1st call, the 2nd, and the 3rd 6s later
	}{
		{name: "forged", giveNegTTL: 5 * time.Second, giveToken: fx.other.WithID(fx.id.ID).Sign(t, firebaseClaims(), nil), wantErr: verify.ErrInvalid, wantProvider: "firebase", wantCounts: [3]float64{1, 1, 2}},
		{name: "expired", giveNegTTL: 5 * time.Second, giveToken: fx.id.Sign(t, firebaseClaims("exp", secs(-time.Hour)), nil), wantErr: verify.ErrExpired, wantProvider: "firebase", wantCounts: [3]float64{1, 1, 2}},
		{name: "wrong audience", giveNegTTL: 5 * time.Second, giveToken: fx.id.Sign(t, firebaseClaims("aud", "other-project"), nil), wantErr: verify.ErrInvalid, wantProvider: "firebase", wantCounts: [3]float64{1, 1, 2}},
		{name: "malformed", giveNegTTL: 5 * time.Second, giveToken: "not-a-token", wantErr: verify.ErrMalformed, wantProvider: "none", wantCounts: [3]float64{1, 1, 2}},
		{name: "unknown issuer", giveNegTTL: 5 * time.Second, giveToken: fx.id.Sign(t, firebaseClaims("iss", "https://attacker.example"), nil), wantErr: verify.ErrUnknownIssuer, wantProvider: "none", wantCounts: [3]float64{1, 1, 2}},
		{name: "forged, negative_ttl 0 turns it off", giveNegTTL: 0, giveToken: fx.other.WithID(fx.id.ID).Sign(t, firebaseClaims(), nil), wantErr: verify.ErrInvalid, wantProvider: "firebase", wantCounts: [3]float64{1, 2, 3}},
		{name: "forged, negative cache off", giveNegTTL: -1, giveToken: fx.other.WithID(fx.id.ID).Sign(t, firebaseClaims(), nil), wantErr: verify.ErrInvalid, wantProvider: "firebase", wantCounts: [3]float64{1, 2, 3}},
		{name: "forged, negative_ttl 1m", giveNegTTL: time.Minute, giveToken: fx.other.WithID(fx.id.ID).Sign(t, firebaseClaims(), nil), wantErr: verify.ErrInvalid, wantProvider: "firebase", wantCounts: [3]float64{1, 1, 1}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fx.config()
			cfg.Cache.NegativeTTL = tt.giveNegTTL
			clock := verifytest.NewClock(testNow)
			v, reg := newMetered(t, cfg, clock.Now)
			result := verify.Reason(tt.wantErr)

			for i, advance := range []time.Duration{0, 4 * time.Second, 2 * time.Second} {
				clock.Advance(advance)
				if _, err := v.Verify(t.Context(), tt.giveToken); !errors.Is(err, tt.wantErr) {
					t.Errorf("Verify() #%d error = %v, want %v", i+1, err, tt.wantErr)
				}
				if got := verifications(t, reg, tt.wantProvider, result); got != tt.wantCounts[i] {
					t.Errorf("after Verify() #%d: verify_total{%s,%s} = %v, want %v", i+1, tt.wantProvider, result, got, tt.wantCounts[i])
				}
			}
		})
	}
}

// TestVerifyUnknownKidNotNegativelyCached checks that a token refused for
// naming a kid the key set does not have yet is not remembered as bad:
// once the refresh interval allows, the rotated keys are fetched and the
// same token succeeds, even with a negative_ttl far longer than that.
func TestVerifyUnknownKidNotNegativelyCached(t *testing.T) {
	k1, k2, other := firebaseKeys(t)
	k1, k2, other = k1.WithID("k1"), k2.WithID("k2"), other.WithID("k1")

	tests := []struct {
		name         string
		giveConfig   func(url string) verify.Config
		giveClaims   map[string]any
		wantProvider string
	}{
		{
			name: "Firebase ID token",
			giveConfig: func(url string) verify.Config {
				return configtest.Fill(verify.Config{Firebase: configtest.Fill(verify.FirebaseConfig{Enabled: true, ProjectID: testProject,
					Keys: configtest.Fill(verify.KeySetConfig{URL: url, MinRefreshInterval: 30 * time.Second}, verify.DefaultKeySetConfig())}, verify.DefaultFirebaseConfig())}, verify.DefaultConfig())
			},
			giveClaims:   firebaseClaims(),
			wantProvider: "firebase",
		},
		{
			name: "legacy JWKS",
			giveConfig: func(url string) verify.Config {
				c := publicKeyLegacy([]string{"RS256"}, nil, url)
				c.JWKS.MinRefreshInterval = 30 * time.Second
				return configtest.Fill(verify.Config{Legacy: c}, verify.DefaultConfig())
			},
			giveClaims:   claimsWith(),
			wantProvider: "legacy",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := verifytest.NewKeyServer(t)
			srv.ServeJWKS(t, k1)
			cfg := tt.giveConfig(srv.URL)
			cfg.Cache.NegativeTTL = time.Hour
			clock := verifytest.NewClock(testNow)
			v, reg := newMetered(t, cfg, clock.Now)
			tok1, tok2 := k1.Sign(t, tt.giveClaims, nil), k2.Sign(t, tt.giveClaims, nil)
			forged := other.Sign(t, tt.giveClaims, nil)

			if _, err := v.Verify(t.Context(), tok1); err != nil {
				t.Fatalf("Verify(k1 token) error = %v", err)
			}
			if _, err := v.Verify(t.Context(), forged); !errors.Is(err, verify.ErrInvalid) {
				t.Fatalf("Verify(forged) error = %v, want %v", err, verify.ErrInvalid)
			}
			srv.ServeJWKS(t, k1, k2)
			if _, err := v.Verify(t.Context(), tok2); !errors.Is(err, verify.ErrInvalid) {
				t.Fatalf("Verify(k2 token) within the refresh interval error = %v, want %v", err, verify.ErrInvalid)
			}

			clock.Advance(31 * time.Second)
			if _, err := v.Verify(t.Context(), tok2); err != nil {
				t.Errorf("Verify(k2 token) past the refresh interval error = %v, want nil (not negatively cached)", err)
			}
			if _, err := v.Verify(t.Context(), forged); !errors.Is(err, verify.ErrInvalid) {
				t.Errorf("Verify(forged) again error = %v, want %v", err, verify.ErrInvalid)
			}
			// Both refusals of tok2 and the first of forged were
			// verifications; the second refusal of forged came from the
			// negative cache.
			if got := verifications(t, reg, tt.wantProvider, "invalid"); got != 2 {
				t.Errorf("verify_total{%s,invalid} = %v, want 2", tt.wantProvider, got)
			}
			if got := srv.Requests(); got != 2 {
				t.Errorf("key fetches = %d, want 2", got)
			}
		})
	}
}

// testRedisConfig is the Redis at TEST_REDIS_URL under the test's own key
// prefix, and a client to inspect it (cachetest.Redis).
func testRedisConfig(tb testing.TB) (cache.RedisConfig, *redis.Client) {
	tb.Helper()
	return cachetest.Redis(tb, "verify")
}

// redisKeys returns the keys under prefix.
func redisKeys(tb testing.TB, client *redis.Client, prefix string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var keys []string
	iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		tb.Errorf("scan %s*: %v", prefix, err)
	}
	return keys
}

// newReplica builds a Verifier for cfg sharing verified tokens through the
// Redis of rcfg, with its own connection, registry and in-process tier, as
// one replica of authgate.
func newReplica(tb testing.TB, cfg verify.Config, clock func() time.Time, rcfg cache.RedisConfig) (*verify.Verifier, *prometheus.Registry) {
	tb.Helper()
	rdb, err := cache.OpenRedis(rcfg, zaptest.NewLogger(tb))
	if err != nil {
		tb.Fatalf("OpenRedis() error = %v", err)
	}
	tb.Cleanup(func() { rdb.Close() })
	return newMetered(tb, cfg, clock, verify.WithCache(configtest.Fill(cache.Config{Redis: rcfg}, cache.DefaultConfig()), rdb))
}

// sumVerifications is verify_total over every provider and result.
func sumVerifications(tb testing.TB, reg *prometheus.Registry) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() == "verify_total" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func TestVerifyCacheRedisSharedBetweenReplicas(t *testing.T) {
	rcfg, client := testRedisConfig(t)
	fx := newFirebaseFixture(t)
	a, regA := newReplica(t, fx.config(), fx.clock.Now, rcfg)
	b, regB := newReplica(t, fx.config(), fx.clock.Now, rcfg)
	tok := fx.id.Sign(t, firebaseClaims(), nil)

	idA, err := a.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("a.Verify() error = %v", err)
	}
	idB, err := b.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("b.Verify() error = %v", err)
	}
	assertIdentity(t, idB, idA)

	if got := verifications(t, regA, "firebase", "ok"); got != 1 {
		t.Errorf("a: verify_total{firebase,ok} = %v, want 1", got)
	}
	if got := sumVerifications(t, regB); got != 0 {
		t.Errorf("b: verify_total = %v in all, want 0 (a's verification, through Redis)", got)
	}
	if got := cacheRequests(t, regB, "tokens", "redis", "hit"); got != 1 {
		t.Errorf("b: cache_requests_total{tokens,redis,hit} = %v, want 1", got)
	}
	if got := fx.ids.Requests(); got != 1 {
		t.Errorf("key fetches = %d, want 1 (b never needed keys)", got)
	}

	// b's next lookup stays in-process.
	if _, err := b.Verify(t.Context(), tok); err != nil {
		t.Fatalf("b.Verify() again error = %v", err)
	}
	if hit, redisHit := cacheRequests(t, regB, "tokens", "local", "hit"), cacheRequests(t, regB, "tokens", "redis", "hit"); hit != 1 || redisHit != 1 {
		t.Errorf("b: local hits = %v, redis hits = %v, want 1 and 1", hit, redisHit)
	}

	// The Redis key is the configuration's namespace, then the SHA-256 of
	// the token (base64url); neither key nor value holds the token or any
	// of its parts.
	sum := sha256.Sum256([]byte(tok))
	digest := base64.RawURLEncoding.EncodeToString(sum[:])
	keys := redisKeys(t, client, rcfg.KeyPrefix)
	wantKey := rcfg.KeyPrefix + "tokens:<16 hex digits>." + digest
	if len(keys) != 1 || !regexp.MustCompile(`^`+regexp.QuoteMeta(rcfg.KeyPrefix+"tokens:")+`[0-9a-f]{16}\.`+regexp.QuoteMeta(digest)+`$`).MatchString(keys[0]) {
		t.Fatalf("redis keys = %q, want [%q]", keys, wantKey)
	}
	wantKey = keys[0]
	val, err := client.Get(t.Context(), wantKey).Result()
	if err != nil {
		t.Fatalf("GET %s: %v", wantKey, err)
	}
	for _, part := range append([]string{tok}, strings.Split(tok, ".")...) {
		if strings.Contains(keys[0], part) || strings.Contains(val, part) {
			t.Errorf("redis entry %s = %s, contains a part of the token", keys[0], val)
		}
	}
	if ttl, err := client.PTTL(t.Context(), wantKey).Result(); err != nil || ttl <= 0 || ttl > 5*time.Minute {
		t.Errorf("PTTL %s = %v, %v; want in (0, 5m], the default cache.ttl", wantKey, ttl, err)
	}
}

// TestVerifyCacheRedisEntryPastExp checks that a replica does not accept
// a Redis entry for a token that has expired by its own clock, though the
// entry is still in Redis.
func TestVerifyCacheRedisEntryPastExp(t *testing.T) {
	rcfg, _ := testRedisConfig(t)
	fx := newFirebaseFixture(t)
	a, _ := newReplica(t, fx.config(), fx.clock.Now, rcfg)
	b, regB := newReplica(t, fx.config(), fx.clock.Now, rcfg)
	tok := fx.id.Sign(t, firebaseClaims("exp", testNow.Add(2*time.Minute).Unix()), nil)

	if _, err := a.Verify(t.Context(), tok); err != nil {
		t.Fatalf("a.Verify() error = %v", err)
	}
	fx.clock.Advance(3 * time.Minute)
	// Twice: the entry is now in b's in-process tier too, which a hit
	// asks first, and the second refusal comes from the negative cache
	// rather than from verifying the token again.
	for i := range 2 {
		if _, err := b.Verify(t.Context(), tok); !errors.Is(err, verify.ErrExpired) {
			t.Errorf("b.Verify() #%d past exp error = %v, want %v", i+1, err, verify.ErrExpired)
		}
	}
	if got := cacheRequests(t, regB, "tokens", "redis", "hit"); got != 1 {
		t.Errorf("b: cache_requests_total{tokens,redis,hit} = %v, want 1", got)
	}
	if got := verifications(t, regB, "firebase", "expired"); got != 1 {
		t.Errorf("b: verify_total{firebase,expired} = %v, want 1", got)
	}
}

// TestVerifyCacheRedisNegativeStaysLocal checks that refusals are cached
// in-process only: nothing about a forged token is written to Redis.
func TestVerifyCacheRedisNegativeStaysLocal(t *testing.T) {
	rcfg, client := testRedisConfig(t)
	fx := newFirebaseFixture(t)
	a, regA := newReplica(t, fx.config(), fx.clock.Now, rcfg)
	b, regB := newReplica(t, fx.config(), fx.clock.Now, rcfg)
	forged := fx.other.WithID(fx.id.ID).Sign(t, firebaseClaims(), nil)

	for i := range 2 {
		if _, err := a.Verify(t.Context(), forged); !errors.Is(err, verify.ErrInvalid) {
			t.Errorf("a.Verify(forged) #%d error = %v, want %v", i+1, err, verify.ErrInvalid)
		}
	}
	if got := verifications(t, regA, "firebase", "invalid"); got != 1 {
		t.Errorf("a: verify_total{firebase,invalid} = %v, want 1 (second from the negative cache)", got)
	}
	if keys := redisKeys(t, client, rcfg.KeyPrefix); len(keys) != 0 {
		t.Errorf("redis keys after a forged token = %q, want none", keys)
	}

	if _, err := b.Verify(t.Context(), forged); !errors.Is(err, verify.ErrInvalid) {
		t.Errorf("b.Verify(forged) error = %v, want %v", err, verify.ErrInvalid)
	}
	if got := verifications(t, regB, "firebase", "invalid"); got != 1 {
		t.Errorf("b: verify_total{firebase,invalid} = %v, want 1 (found out for itself)", got)
	}
	if got := cacheRequests(t, regB, "tokens", "redis", "miss"); got != 1 {
		t.Errorf("b: cache_requests_total{tokens,redis,miss} = %v, want 1", got)
	}
}
