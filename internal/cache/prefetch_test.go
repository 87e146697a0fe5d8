package cache

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// newNamed builds a cache of strings called name on rdb.
func newNamed(t testing.TB, name string, rdb *Redis, clk *fakeClock) *Cache[string] {
	t.Helper()
	c, err := New[string](DefaultConfig(), name, rdb, JSON[string]{}, zaptest.NewLogger(t), nil, WithClock(clk.Now))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestGetOrLoadWithOneRoundTrip: a replica that has seen neither a token
// nor its user row reads both from Redis in one round trip, and the row
// is then served from its in-process tier without a load.
func TestGetOrLoadWithOneRoundTrip(t *testing.T) {
	cfg := testRedisConfig(t)
	clk := newFakeClock()
	first := openTestRedis(t, cfg)
	mustGetOrLoad(t, newNamed(t, "tokens", first, clk), "tok", (&counter{v: "identity", ttl: time.Minute}).load)
	mustGetOrLoad(t, newNamed(t, "users", first, clk), "uid:1", (&counter{v: "row", ttl: time.Minute}).load)

	rdb := openTestRedis(t, cfg)
	tokens, users := newNamed(t, "tokens", rdb, clk), newNamed(t, "users", rdb, clk)
	tokLoad, rowLoad := &counter{v: "loaded", ttl: time.Minute}, &counter{v: "loaded", ttl: time.Minute}
	calls := 0
	got, err := tokens.GetOrLoadWith(testContext(t), "tok", func() []*Prefetch {
		calls++
		return []*Prefetch{users.Prefetch("uid:1"), users.Prefetch("uid:absent")}
	}, tokLoad.load)
	if err != nil || got != "identity" {
		t.Fatalf("GetOrLoadWith = %q, %v; want the identity from Redis", got, err)
	}
	if trips := rdb.trips.Load(); trips != 1 {
		t.Errorf("round trips = %d, want 1 for the token and its user row", trips)
	}
	if row := mustGetOrLoad(t, users, "uid:1", rowLoad.load); row != "row" {
		t.Errorf("user row = %q, want the one from Redis", row)
	}
	if tokLoad.calls.Load() != 0 || rowLoad.calls.Load() != 0 || rdb.trips.Load() != 1 {
		t.Errorf("loads %d and %d, round trips %d; want 0, 0 and still 1", tokLoad.calls.Load(), rowLoad.calls.Load(), rdb.trips.Load())
	}
	// A hit in the in-process tier sends nothing and asks for nothing.
	if _, err := tokens.GetOrLoadWith(testContext(t), "tok", func() []*Prefetch { calls++; return nil }, tokLoad.load); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || rdb.trips.Load() != 1 {
		t.Errorf("after an in-process hit: also called %d times, %d round trips; want 1 and 1", calls, rdb.trips.Load())
	}
	// A key already in the in-process tier is not fetched again.
	if p := users.Prefetch("uid:1"); p != nil {
		t.Error("Prefetch of a key in the in-process tier is not nil")
	}
	if p := newLocal(t, DefaultConfig(), clk, nil).Prefetch("x"); p != nil {
		t.Error("Prefetch on a cache without Redis is not nil")
	}
}

// TestPrefetchDoesNotStoreAcrossAnInvalidation: a row read from Redis
// while an invalidation of the cache runs is not stored in the in-process
// tier after it, where it would outlive the invalidation. The message of
// another replica's invalidation arrives here between the lookup being
// prepared and its answer being stored; the Redis entry is left in place
// to stand for an answer Redis gave before that replica's DEL.
func TestPrefetchDoesNotStoreAcrossAnInvalidation(t *testing.T) {
	cfg := testRedisConfig(t)
	clk := newFakeClock()
	rdb := openTestRedis(t, cfg)
	mustGetOrLoad(t, newNamed(t, "users", openTestRedis(t, cfg), clk), "uid:1", (&counter{v: "old row", ttl: time.Minute}).load)
	users := newNamed(t, "users", rdb, clk)
	tokens := newNamed(t, "tokens", rdb, clk)
	_, err := tokens.GetOrLoadWith(testContext(t), "tok", func() []*Prefetch {
		p := users.Prefetch("uid:1")
		users.dropLocal([]string{"uid:1"})
		return []*Prefetch{p}
	}, (&counter{v: "identity", ttl: time.Minute}).load)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := users.getLocal("uid:1"); ok {
		t.Error("the row read across an invalidation was stored in the in-process tier")
	}
	// Without an invalidation in between, the same lookup is stored.
	_, err = tokens.GetOrLoadWith(testContext(t), "tok2", func() []*Prefetch {
		return []*Prefetch{users.Prefetch("uid:1")}
	}, (&counter{v: "identity", ttl: time.Minute}).load)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := users.getLocal("uid:1"); !ok {
		t.Error("a prefetched row was not stored in the in-process tier")
	}
}
