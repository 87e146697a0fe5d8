package cache

import (
	"context"
	"sync"
	"testing"
	"time"
)

// runRedis runs the Run of each cache's Redis until the test ends, and
// waits until each cache has seen its subscription confirmed (which
// empties its in-process tier).
func runRedis(t *testing.T, caches ...*Cache[string]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	started := map[*Redis]bool{}
	for _, c := range caches {
		c.SetLocal("probe", "", time.Hour)
		if started[c.rdb] {
			continue
		}
		started[c.rdb] = true
		wg.Go(func() {
			if err := c.rdb.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	for _, c := range caches {
		eventually(t, "subscribed", func() bool { return !hasLocal(c, "probe") })
	}
}

// eventually polls cond for up to 3s: invalidation messages are
// asynchronous, but a replica must hear of one at once (milliseconds; the
// bound is for a loaded CI machine, where a first subscription once took
// over a second).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 3s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasLocal(c *Cache[string], key string) bool {
	_, ok := c.getLocal(key)
	return ok
}

func TestRedisInvalidateReachesOtherReplicas(t *testing.T) {
	cfg := testRedisConfig(t)
	clk := newFakeClock()
	ra, rb := openTestRedis(t, cfg), openTestRedis(t, cfg)
	a, b := newShared(t, ra, clk), newShared(t, rb, clk)
	runRedis(t, a, b)
	ctx := testContext(t)
	l := &counter{v: "v1", ttl: time.Minute}
	mustGetOrLoad(t, a, "k", l.load)
	mustGetOrLoad(t, b, "k", l.load)
	mustGetOrLoad(t, b, "untouched", l.load)

	if err := a.Invalidate(ctx, "k"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	eventually(t, "b drops k after a's Invalidate", func() bool { return !hasLocal(b, "k") })
	if !hasLocal(b, "untouched") {
		t.Error("b dropped a key nobody invalidated")
	}
	l.v = "v2"
	if got := mustGetOrLoad(t, b, "k", l.load); got != "v2" {
		t.Errorf("b.GetOrLoad after a's Invalidate = %q, want %q", got, "v2")
	}

	// Set: b drops its copy and reads a's value from Redis.
	if err := a.Set(ctx, "k", "v3", time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
	eventually(t, "b drops k after a's Set", func() bool { return !hasLocal(b, "k") })
	if got := mustGetOrLoad(t, b, "k", l.load); got != "v3" {
		t.Errorf("b.GetOrLoad after a's Set = %q, want %q (from Redis)", got, "v3")
	}
	if got, ok := a.Get(ctx, "k"); !ok || got != "v3" {
		t.Errorf("a.Get after its own Set = %q, %v, want %q", got, ok, "v3")
	}
}

// Two caches of one name on one Redis (as two Verifiers in one process)
// are two in-process tiers: each hears the other's invalidations.
func TestRedisInvalidateSameProcess(t *testing.T) {
	rdb := testRedis(t)
	clk := newFakeClock()
	a, b := newShared(t, rdb, clk), newShared(t, rdb, clk)
	other, err := New[string](DefaultConfig(), "other", rdb, JSON[string]{}, nil, nil, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	runRedis(t, a, b, other)
	ctx := testContext(t)
	l := &counter{v: "v1", ttl: time.Minute}
	for _, c := range []*Cache[string]{a, b, other} {
		mustGetOrLoad(t, c, "k", l.load)
	}
	if err := a.Invalidate(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b drops k", func() bool { return !hasLocal(b, "k") })
	if !hasLocal(other, "k") {
		t.Error("a cache of another name dropped k")
	}
}

// After a broken subscription a replica cannot know what it missed, so it
// empties its in-process tier once it is subscribed again.
func TestRedisResubscribeEmptiesLocalTier(t *testing.T) {
	cfg := testRedisConfig(t)
	cfg.FailureBackoff = 10 * time.Millisecond
	cfg.FailureBackoffMax = 10 * time.Millisecond
	direct := openTestRedis(t, cfg)
	proxied := cfg
	fp := newFaultProxy(t, cfg.Addrs[0])
	proxied.Addrs = []string{fp.ln.Addr().String()}
	rb := openTestRedis(t, proxied)
	clk := newFakeClock()
	a, b := newShared(t, direct, clk), newShared(t, rb, clk)
	runRedis(t, b)
	ctx := testContext(t)
	l := &counter{v: "v1", ttl: time.Minute}
	mustGetOrLoad(t, b, "k", l.load)

	fp.setDown(true)
	eventually(t, "b's subscription ends", func() bool {
		n, err := direct.client.PubSubNumSub(ctx, direct.channel).Result()
		return err == nil && n[direct.channel] == 0
	})
	if err := a.Invalidate(ctx, "k"); err != nil { // b misses this
		t.Fatal(err)
	}
	if !hasLocal(b, "k") {
		t.Fatal("b dropped k while cut off")
	}
	fp.setDown(false)
	eventually(t, "b empties its tier once resubscribed", func() bool { return !hasLocal(b, "k") })
}

// Without Run nothing is received, and Invalidate and Set still work.
func TestRedisRunNil(t *testing.T) {
	var r *Redis
	if err := r.Run(t.Context()); err != nil {
		t.Errorf("nil Redis Run = %v, want nil", err)
	}
}
