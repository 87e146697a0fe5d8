package federation

import (
	"fmt"
	"strconv"
	"sync/atomic"
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

// BenchmarkTouch is the last-login bookkeeping EnsureUser adds to a
// request whose cached row's last_login is older than last_login_interval:
// here 100 000 users whose writes this replica has scheduled already, the
// common case until their rows are reloaded.
func BenchmarkTouch(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	users := make([]User, 100_000)
	for i := range users {
		users[i] = User{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i)}
		f.s.touch(users[i])
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			f.s.touch(users[i%len(users)])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				f.s.touch(users[i%len(users)])
				i++
			}
		})
	})
	// One user's requests on every core: the readers of one shard.
	b.Run("one_user_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				f.s.touch(users[0])
			}
		})
	})
}
