package verify

import (
	"context"
	"errors"
	"github.com/authgate/authgate/internal/configtest"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/cache/cachetest"
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

// A logout on one replica reaches the others at once: ReloadUser shares
// the new record through Redis and tells every replica to drop its
// in-process copy, and no other replica calls the Admin API for it.
func TestVerifierReloadUserAcrossReplicas(t *testing.T) {
	rcfg := revocationRedis(t)
	now := time.Now()
	records := &fakeRecords{states: map[string]UserState{"u1": {}}}
	cfg := DefaultConfig()
	cfg.Firebase.Enabled, cfg.Firebase.ProjectID, cfg.Firebase.Emulator = true, "demo-authgate", true
	cfg.Firebase.Revocation.Enabled = true
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	replica := func() *Verifier {
		rdb, err := cache.OpenRedis(rcfg, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		v, err := New(cfg, zaptest.NewLogger(t), nil, WithCache(configtest.Fill(cache.Config{}, cache.DefaultConfig()), rdb), WithUserRecords(records))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = rdb.Run(ctx) })
		t.Cleanup(func() {
			v.Close()
			rdb.Close()
		})
		return v
	}
	a, b := replica(), replica()
	tok := emulatorToken(t, "u1", now)
	// Until both subscriptions are up (which empties the in-process
	// tiers), keep verifying: then both hold the user's record.
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, v := range []*Verifier{a, b} {
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("Verify before the logout = %v, want ok", err)
			}
		}
		if subscribed(t, rcfg) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replicas did not subscribe within 5s")
		}
	}
	for _, v := range []*Verifier{a, b} {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("Verify before the logout = %v, want ok", err)
		}
	}
	calls := records.calls.Load()

	records.set("u1", UserState{TokensValidAfter: now})
	if err := a.ReloadUser(t.Context(), "u1"); err != nil {
		t.Fatalf("ReloadUser: %v", err)
	}
	if _, err := a.Verify(t.Context(), tok); !errors.Is(err, ErrRevoked) {
		t.Errorf("Verify on the replica that reloaded = %v, want ErrRevoked", err)
	}
	revokedWithin(t, b, tok, time.Second, "Verify on the other replica", "reload")
	if got := records.calls.Load() - calls; got != 1 {
		t.Errorf("Admin API calls for the logout = %d, want 1 (the reload; the other replica reads Redis)", got)
	}
}

// revocationRedis is the Redis at TEST_REDIS_URL under the test's own key
// prefix (cachetest.Redis).
func revocationRedis(t *testing.T) cache.RedisConfig {
	t.Helper()
	cfg, _ := cachetest.Redis(t, "verify")
	return cfg
}

// subscribed is the number of subscribers to the invalidation channel of
// the key prefix in cfg.
func subscribed(t *testing.T, cfg cache.RedisConfig) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: cfg.Addrs[0], DB: cfg.DB, Username: cfg.Username, Password: cfg.Password.Value()})
	defer c.Close()
	ch := cfg.KeyPrefix + "invalidate"
	n, err := c.PubSubNumSub(t.Context(), ch).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n[ch]
}

// TestLogoutReach states what a logout (ReloadUser) reaches, with a short
// revocation.cache_ttl: at once, every replica that shares Redis; a replica
// without a working Redis keeps its copy of the user's record, and accepts
// the user's older tokens, until that copy is cache_ttl old, and not
// longer. The last replica's clock is injected, so no test waits for a TTL.
func TestLogoutReach(t *testing.T) {
	rcfg := revocationRedis(t)
	const ttl = 2 * time.Second
	now := time.Now()
	records := &fakeRecords{states: map[string]UserState{"u1": {}}}
	cfg := DefaultConfig()
	cfg.Firebase.Enabled, cfg.Firebase.ProjectID, cfg.Firebase.Emulator = true, "demo-authgate", true
	cfg.Firebase.Revocation.Enabled, cfg.Firebase.Revocation.CacheTTL = true, ttl
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	replica := func(rcfg cache.RedisConfig, opts ...Option) *Verifier {
		rdb, err := cache.OpenRedis(rcfg, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		v, err := New(cfg, zaptest.NewLogger(t), nil, append(opts, WithCache(cache.DefaultConfig(), rdb), WithUserRecords(records))...)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = rdb.Run(ctx) })
		t.Cleanup(func() {
			v.Close()
			rdb.Close()
		})
		return v
	}
	// c's Redis is a closed port: it serves from its in-process tier.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()
	dead := rcfg
	dead.Addrs = []string{deadAddr}
	clock := verifytest.NewClock(now)
	a, b, c := replica(rcfg), replica(rcfg), replica(dead, WithClock(clock.Now))
	tok := emulatorToken(t, "u1", now)
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, v := range []*Verifier{a, b, c} {
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("Verify before the logout = %v, want ok", err)
			}
		}
		if subscribed(t, rcfg) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replicas did not subscribe within 5s")
		}
	}
	for _, v := range []*Verifier{a, b, c} {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("Verify before the logout = %v, want ok", err)
		}
	}
	loggedOut := clock.Now()

	records.set("u1", UserState{TokensValidAfter: now})
	if err := a.ReloadUser(t.Context(), "u1"); err != nil {
		t.Fatalf("ReloadUser: %v", err)
	}
	// Sharing Redis: at once (the invalidation message takes a moment).
	if _, err := a.Verify(t.Context(), tok); !errors.Is(err, ErrRevoked) {
		t.Errorf("Verify on the replica that logged out = %v, want ErrRevoked", err)
	}
	revokedWithin(t, b, tok, time.Second, "Verify on a replica sharing Redis", "logout")
	// Without a working Redis: until its copy is cache_ttl old.
	if _, err := c.Verify(t.Context(), tok); err != nil {
		t.Errorf("Verify on the replica without Redis right after the logout = %v, want ok (its copy is fresh)", err)
	}
	clock.Advance(ttl - time.Millisecond)
	if _, err := c.Verify(t.Context(), tok); err != nil {
		t.Errorf("Verify on the replica without Redis %s after its copy = %v, want ok", clock.Now().Sub(loggedOut), err)
	}
	clock.Advance(time.Millisecond)
	if _, err := c.Verify(t.Context(), tok); !errors.Is(err, ErrRevoked) {
		t.Errorf("Verify on the replica without Redis cache_ttl (%s) after its copy = %v, want ErrRevoked", ttl, err)
	}
}

// revokedWithin waits up to d for v to refuse tok as revoked: a logout
// reaches other replicas through an asynchronous invalidation message.
func revokedWithin(t *testing.T, v *Verifier, tok string, d time.Duration, who, after string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := v.Verify(t.Context(), tok)
		if errors.Is(err, ErrRevoked) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v %s after the %s, want ErrRevoked", who, err, d, after)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
