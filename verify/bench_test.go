package verify_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/cache"
	"github.com/authgate/authgate/internal/configtest"
	"github.com/authgate/authgate/verify"
	"github.com/authgate/authgate/verify/verifytest"
)

// BenchmarkVerifyLegacyRejected measures refusals, which an attacker can
// send as fast as they like.
func BenchmarkVerifyLegacyRejected(b *testing.B) {
	v := newVerifier(b, legacyConfig())
	valid := hs256(b, claimsWith())
	benchmarks := []struct {
		name      string
		giveToken string
	}{
		{name: "forged", giveToken: withPayload(b, valid, claimsWith("sub", "admin"))},
		{name: "malformed", giveToken: "not-a-token"},
		{name: "oversized", giveToken: string(make([]byte, verify.MaxTokenBytes+1))},
	}
	for _, bb := range benchmarks {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(b.Context(), bb.giveToken); err == nil {
					b.Fatal("Verify() error = nil, want an error")
				}
			}
		})
	}
}

// BenchmarkVerify measures one Verify call per case: full verifications
// with the cache off, and cache hits in each tier.
func BenchmarkVerify(b *testing.B) {
	b.Run("firebase/uncached", func(b *testing.B) {
		fx := newFirebaseFixture(b)
		cfg := fx.config()
		cfg.Cache.TTL = -1
		v, err := verify.New(cfg, zap.NewNop(), nil, verify.WithClock(fx.clock.Now))
		if err != nil {
			b.Fatal(err)
		}
		benchVerify(b, v, fx.id.Sign(b, firebaseClaims(), nil))
	})
	// As the server runs when no route requires a claim: WithClaims keeps
	// none of them in the identity.
	b.Run("firebase/uncached_trimmed", func(b *testing.B) {
		fx := newFirebaseFixture(b)
		cfg := fx.config()
		cfg.Cache.TTL = -1
		v, err := verify.New(cfg, zap.NewNop(), nil, verify.WithClock(fx.clock.Now), verify.WithClaims(nil))
		if err != nil {
			b.Fatal(err)
		}
		benchVerify(b, v, fx.id.Sign(b, firebaseClaims(), nil))
	})
	// The token's RS256 signature checked with crypto/rsa alone (no header,
	// claims, key lookup or cache): the bench's rs256 floor. The verifier
	// checks with the key's modulus prepared once (rsakey.go), so
	// uncached_trimmed runs below this.
	b.Run("firebase/rsa_only", func(b *testing.B) {
		fx := newFirebaseFixture(b)
		tok := fx.id.Sign(b, firebaseClaims(), nil)
		dot := strings.LastIndexByte(tok, '.')
		pub := &fx.id.Private.(*rsa.PrivateKey).PublicKey
		b.ReportAllocs()
		for b.Loop() {
			sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
			if err != nil {
				b.Fatal(err)
			}
			sum := sha256.Sum256([]byte(tok[:dot]))
			if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("legacy_hs256/uncached", func(b *testing.B) {
		v, err := verify.New(configtest.Fill(verify.Config{Legacy: legacyConfig(), Cache: verify.CacheConfig{TTL: -1}}, verify.DefaultConfig()), zap.NewNop(), nil, verify.WithClock(fixedClock))
		if err != nil {
			b.Fatal(err)
		}
		benchVerify(b, v, hs256(b, claimsWith()))
	})
	b.Run("hit/local", func(b *testing.B) {
		v := newVerifier(b, legacyConfig())
		benchVerify(b, v, hs256(b, claimsWith()))
	})
	b.Run("hit/redis", func(b *testing.B) {
		benchVerifyRedisHit(b)
	})
}

// benchVerify times Verify of tok, which must succeed; the first call,
// which fills the caches, is not timed.
func benchVerify(b *testing.B, v *verify.Verifier, tok string) {
	b.Helper()
	if _, err := v.Verify(b.Context(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

// benchVerifyRedisHit measures a miss in the in-process tier answered by
// Redis. LocalMaxTTL of 1ns lets the in-process tier keep a Redis hit for
// a nanosecond only, so every call takes the path of a replica that has
// not seen the token: the in-process miss, the shared load, the Redis GET
// and PTTL round trip, decoding, and the (at once stale) in-process copy.
// This needs the real clock: a fake one that stands still would keep the
// copy forever.
func benchVerifyRedisHit(b *testing.B) {
	rcfg, _ := testRedisConfig(b)
	rdb, err := cache.OpenRedis(rcfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	v, err := verify.New(configtest.Fill(verify.Config{Legacy: legacyConfig()}, verify.DefaultConfig()), zap.NewNop(), reg,
		verify.WithCache(configtest.Fill(cache.Config{LocalMaxTTL: time.Nanosecond, Redis: rcfg}, cache.DefaultConfig()), rdb))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { v.Close() })

	benchVerify(b, v, hs256(b, verifytest.Claims("alice", time.Now())))

	if n := verifications(b, reg, "legacy", "ok"); n != 1 {
		b.Errorf("verify_total{legacy,ok} = %v, want 1: every call after the first must be a cache hit", n)
	}
	if hits, local := cacheRequests(b, reg, "tokens", "redis", "hit"), cacheRequests(b, reg, "tokens", "local", "hit"); hits < float64(b.N) || local != 0 {
		b.Errorf("redis hits = %v, local hits = %v; want at least %d and 0", hits, local, b.N)
	}
}

// BenchmarkVerifyParallel is Verify under contention: every goroutine
// verifies the same hot token.
func BenchmarkVerifyParallel(b *testing.B) {
	b.Run("hit/local", func(b *testing.B) {
		v := newVerifier(b, legacyConfig())
		tok := hs256(b, claimsWith())
		if _, err := v.Verify(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
		ctx := b.Context()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
