package federation

import (
	"strconv"
	"testing"
)

// BenchmarkEnsureUser measures get-or-create against the PostgreSQL at
// TEST_DATABASE_URL (and the Redis at TEST_REDIS_URL, if set, as the
// shared cache tier).
func BenchmarkEnsureUser(b *testing.B) {
	b.Run("existing/cache_hit", func(b *testing.B) {
		f := newFixture(b, fixtureOpts{})
		id := firebaseID("uid-bench", "bench@example.com", true)
		if _, err := f.s.EnsureUser(b.Context(), id); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.s.EnsureUser(b.Context(), id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("existing/cache_hit_parallel", func(b *testing.B) {
		f := newFixture(b, fixtureOpts{})
		id := firebaseID("uid-bench", "bench@example.com", true)
		if _, err := f.s.EnsureUser(b.Context(), id); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := f.s.EnsureUser(b.Context(), id); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("existing/db", func(b *testing.B) {
		f := newFixture(b, fixtureOpts{config: func(c *Config) { c.CacheTTL = -1 }})
		id := firebaseID("uid-bench", "bench@example.com", true)
		if _, err := f.s.EnsureUser(b.Context(), id); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.s.EnsureUser(b.Context(), id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("new", func(b *testing.B) {
		f := newFixture(b, fixtureOpts{})
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			i++
			uid := "uid-new-" + strconv.Itoa(i)
			if _, err := f.s.EnsureUser(b.Context(), firebaseID(uid, uid+"@example.com", true)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
