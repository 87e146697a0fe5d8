package cache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// stringBinary keeps strings in the arena as their bytes.
type stringBinary struct{}

func (stringBinary) Append(b []byte, v string) ([]byte, bool) { return append(b, v...), true }
func (stringBinary) Read(b []byte) (string, error)            { return string(b), nil }

// newBench builds a cache whose entries go to the arena too, as the
// production caches' do.
func newBench(b *testing.B, rdb *Redis) *Cache[string] {
	b.Helper()
	c, err := New[string](DefaultConfig(), "bench", rdb, JSON[string]{}, zap.NewNop(), prometheus.NewRegistry(), WithBinary[string](stringBinary{}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func BenchmarkGetOrLoad(b *testing.B) {
	const key = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	token := "header.payload.signature"
	run := func(b *testing.B, c *Cache[string], ttl time.Duration, before func()) {
		ctx := b.Context()
		b.ReportAllocs()
		for b.Loop() {
			before()
			// A closure over the token, as verify will pass: if it
			// escaped, every call would allocate it.
			v, err := c.GetOrLoad(ctx, key, func(ctx context.Context) (string, time.Duration, error) {
				return token, ttl, nil
			})
			if err != nil || v != token {
				b.Fatalf("GetOrLoad = %q, %v", v, err)
			}
		}
	}
	warm := func(b *testing.B, c *Cache[string]) {
		if err := c.Set(b.Context(), key, token, time.Hour); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("hit/local", func(b *testing.B) {
		c := newBench(b, nil)
		warm(b, c)
		run(b, c, time.Hour, func() {})
	})
	// In the arena, not the hot level: a user seen before but not
	// lately, in a tier holding more users than its hot level.
	b.Run("hit/arena", func(b *testing.B) {
		c := newBench(b, nil)
		warm(b, c)
		run(b, c, time.Hour, func() { c.local.store.Invalidate(c.local.hash(c.space, key)) })
	})
	b.Run("hit/redis", func(b *testing.B) {
		c := newBench(b, testRedis(b))
		warm(b, c)
		run(b, c, time.Hour, func() { c.invalidateLocal([]string{key}) })
	})
	b.Run("miss", func(b *testing.B) {
		run(b, newBench(b, nil), 0, func() {})
	})
	b.Run("miss/redis", func(b *testing.B) {
		run(b, newBench(b, testRedis(b)), 0, func() {})
	})
	// A new key each time, stored: what a new token costs the cache in
	// fa-cold. The keys come round again only after the store has
	// evicted them (a 1 MiB budget holds a few thousand).
	b.Run("miss/fill", func(b *testing.B) {
		cfg := DefaultConfig()
		cfg.LocalMaxBytes = minLocalMaxBytes
		c, err := New[string](cfg, "bench", nil, JSON[string]{}, zap.NewNop(), prometheus.NewRegistry(), WithBinary[string](stringBinary{}))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		keys := make([]string, 1<<16)
		for i := range keys {
			keys[i] = fmt.Sprintf("%064x", i)
		}
		ctx := b.Context()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := keys[i%len(keys)]
			i++
			if _, err := c.GetOrLoad(ctx, k, func(ctx context.Context) (string, time.Duration, error) {
				return token, time.Hour, nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hit/local/parallel", func(b *testing.B) {
		c := newBench(b, nil)
		warm(b, c)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				v, err := c.GetOrLoad(ctx, key, func(ctx context.Context) (string, time.Duration, error) {
					return token, time.Hour, nil
				})
				if err != nil || v != token {
					b.Errorf("GetOrLoad = %q, %v", v, err)
					return
				}
			}
		})
	})
}
